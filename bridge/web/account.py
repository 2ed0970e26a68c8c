"""The signed-in user's own account: their open sessions, with a way to end all the others
(ASVS 3.3.4), and a password change (which ends the others too, ASVS 3.3.3)."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select, update
from werkzeug.wrappers import Response

from bridge import audit
from bridge.errors import UsageError
from bridge.store.models import User, WebSession, utcnow
from bridge.users import set_password, verify_password
from bridge.web.auth import login_required
from bridge.web.extensions import store

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.get("")
@login_required
def account() -> str:
    with store().session() as s:
        open_sessions = list(
            s.scalars(
                select(WebSession)
                .where(
                    WebSession.user_id == g.user.id,
                    WebSession.ended_at.is_(None),
                    WebSession.expires_at > utcnow(),
                )
                .order_by(WebSession.id.desc())
            )
        )
    return render_template("account.html", open_sessions=open_sessions)


@bp.post("/sessions/end-others")
@login_required
def end_other_sessions() -> Response:
    with store().session() as s:
        ended = s.execute(
            update(WebSession)
            .where(
                WebSession.user_id == g.user.id,
                WebSession.ended_at.is_(None),
                WebSession.id != g.web_session_id,
            )
            .values(ended_at=utcnow(), end_reason="ended_by_user")
        )
        count = int(ended.rowcount or 0)  # type: ignore[attr-defined]
        audit.record(s, g.user.email, "user.sessions_end", "user", g.user.id, sessions_ended=count)
    flash(f"Signed out {count} other session(s).", "success")
    return redirect(url_for("account.account"))


@bp.post("/password")
@login_required
def change_password() -> Response | tuple[str, int]:
    current = request.form.get("current_password", "")
    new = request.form.get("new_password", "")
    method = current_app.config["PASSWORD_HASH_METHOD"]
    try:
        with store().session() as s:
            user = s.get(User, g.user.id)
            if user is None or not verify_password(user, current, method):
                raise UsageError("the current password is not right", fields=["current_password"])
            if new != request.form.get("confirm_password", ""):
                raise UsageError("the new passwords differ", fields=["new_password"])
            ended = set_password(
                s, user, new, actor=user.email, hash_method=method, keep_session_id=g.web_session_id
            )
    except UsageError as exc:
        return render_template("account.html", error=exc.message, open_sessions=[]), 400
    flash(f"Your password is changed; {ended} other session(s) ended.", "success")
    return redirect(url_for("account.account"))
