"""The signed-in user's own account: change the password (the other sessions end, ASVS 3.3.1)."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from bridge.errors import UsageError
from bridge.store.models import User
from bridge.users import set_password, verify_password
from bridge.web.auth import login_required
from bridge.web.extensions import store

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.get("")
@login_required
def account() -> str:
    return render_template("account.html")


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
        return render_template("account.html", error=exc.message), 400
    flash(f"Your password is changed; {ended} other session(s) ended.", "success")
    return redirect(url_for("account.account"))
