"""Admin pages: accounts (add, deactivate, reactivate, role, password reset, end sessions, sign-in
delays) and API tokens (a new token is shown once, after a redirect; revoking asks first). Every
change is a POST with a CSRF token and is audited."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from bridge import audit, throttle
from bridge.errors import UsageError
from bridge.store.models import ApiToken, OrgConnection, User, WebSession, utcnow
from bridge.users import (
    create_token,
    create_user,
    end_sessions,
    revoke_token,
    set_active,
    set_password,
    set_role,
)
from bridge.vocabulary import ROLES, SCOPE_WORDS
from bridge.web.auth import role_required
from bridge.web.extensions import store
from bridge.writeback import users as user_mapping

bp = Blueprint("admin", __name__, url_prefix="/admin")

MAX_TOKEN_DAYS = 3650


@bp.get("/users")
@role_required("admin")
def users() -> str:
    now = utcnow()
    with store().session() as s:
        rows = list(s.scalars(select(User).order_by(User.email)))
        open_sessions = dict(
            s.execute(
                select(WebSession.user_id, func.count())
                .where(WebSession.ended_at.is_(None), WebSession.expires_at > now)
                .group_by(WebSession.user_id)
            ).all()
        )
        delays = {t.key: t.not_before for t in throttle.delayed(s, now)}
        org_names = dict(s.execute(select(OrgConnection.id, OrgConnection.name)).all())
        mappings = [(org_names.get(m.org_connection_id, "?"), m) for m in user_mapping.saved(s)]
    account_delay = {u.id: delays.get(throttle.account_key(u.email)) for u in rows}
    addresses = [
        (key.split(":", 1)[1], until)
        for key, until in delays.items()
        if key.startswith(throttle.ADDRESS + ":")
    ]
    return render_template(
        "users.html",
        rows=rows,
        roles=ROLES,
        open_sessions=open_sessions,
        account_delay=account_delay,
        addresses=addresses,
        mappings=mappings,
    )


@bp.post("/users")
@role_required("admin")
def add_user() -> Response:
    try:
        with store().session() as s:
            user = create_user(
                s,
                request.form.get("email", ""),
                request.form.get("password", ""),
                request.form.get("role", ""),
                name=request.form.get("name", ""),
                actor=g.user.email,
                hash_method=current_app.config["PASSWORD_HASH_METHOD"],
            )
            flash(f"Added {user.email} ({user.role}).", "success")
    except UsageError as exc:
        flash(f"Not added: {exc.message}", "error")
    return redirect(url_for("admin.users"))


def _change_user(user_id: int, change: Callable[[Session, User], str]) -> Response:
    """Apply `change(session, user)` (it returns what to tell the admin) and go back."""
    try:
        with store().session() as s:
            user = s.get(User, user_id)
            if user is None:
                raise UsageError(f"no user with id {user_id}")
            flash(change(s, user), "success")
    except UsageError as exc:
        flash(f"Not changed: {exc.message}", "error")
    return redirect(url_for("admin.users"))


@bp.post("/users/<int:user_id>/deactivate")
@role_required("admin")
def deactivate_user(user_id: int) -> Response:
    def change(s: Session, user: User) -> str:
        set_active(s, user, False, actor=g.user.email)
        return f"Deactivated {user.email}: signed out everywhere, its API tokens stop working."

    return _change_user(user_id, change)


@bp.post("/users/<int:user_id>/reactivate")
@role_required("admin")
def reactivate_user(user_id: int) -> Response:
    def change(s: Session, user: User) -> str:
        set_active(s, user, True, actor=g.user.email)
        return f"Reactivated {user.email}."

    return _change_user(user_id, change)


@bp.post("/users/<int:user_id>/role")
@role_required("admin")
def change_role(user_id: int) -> Response:
    def change(s: Session, user: User) -> str:
        set_role(s, user, request.form.get("role", ""), actor=g.user.email)
        return f"{user.email} is now {user.role}."

    return _change_user(user_id, change)


@bp.post("/users/<int:user_id>/password")
@role_required("admin")
def reset_password(user_id: int) -> Response:
    def change(s: Session, user: User) -> str:
        ended = set_password(
            s,
            user,
            request.form.get("password", ""),
            actor=g.user.email,
            hash_method=current_app.config["PASSWORD_HASH_METHOD"],
            # An admin resetting their own password stays signed in here, as on Your account.
            keep_session_id=g.web_session_id if user.id == g.user.id else None,
        )
        return f"Set a new password for {user.email}; {ended} session(s) ended."

    return _change_user(user_id, change)


@bp.post("/users/<int:user_id>/sessions/end")
@role_required("admin")
def end_user_sessions(user_id: int) -> Response:
    def change(s: Session, user: User) -> str:
        ended = end_sessions(s, user.id, "ended_by_admin")
        audit.record(s, g.user.email, "user.sessions_end", "user", user.id, sessions_ended=ended)
        return f"Ended {ended} session(s) of {user.email}."

    return _change_user(user_id, change)


@bp.post("/users/<int:user_id>/unlock")
@role_required("admin")
def unlock_user(user_id: int) -> Response:
    def change(s: Session, user: User) -> str:
        throttle.clear(s, throttle.account_key(user.email))
        audit.record(s, g.user.email, "user.unlock", "user", user.id)
        return f"Cleared the sign-in delay of {user.email}."

    return _change_user(user_id, change)


@bp.post("/addresses/clear")
@role_required("admin")
def clear_address() -> Response:
    address = throttle.normal_address(request.form.get("address", ""))
    if not request.form.get("address", "").strip():
        flash("Give the address to clear.", "error")
        return redirect(url_for("admin.users"))
    with store().session() as s:
        cleared = throttle.clear(s, throttle.address_key(address))
        audit.record(s, g.user.email, "address.clear", "client_ip", address, cleared=cleared)
    flash(
        f"Cleared the sign-in delay of {address}."
        if cleared
        else f"{address} had no failed sign-ins on record.",
        "success" if cleared else "info",
    )
    return redirect(url_for("admin.users"))


def _token_rows(s: Session) -> list[Any]:
    return list(
        s.execute(
            select(ApiToken, User.email)
            .join(User, User.id == ApiToken.user_id)
            .order_by(ApiToken.id.desc())
        ).all()
    )


@bp.get("/tokens")
@role_required("admin")
def tokens() -> str:
    with store().session() as s:
        rows = _token_rows(s)
    return render_template("tokens.html", rows=rows, scopes=SCOPE_WORDS, now=utcnow())


@bp.post("/tokens")
@role_required("admin")
def add_token() -> Response:
    """Post, then redirect: the new secret rides in a one-time flash (category `secret`), so a
    reload of the token page shows it no more and creates nothing."""
    scopes = request.form.getlist("scope")
    try:
        days_text = request.form.get("expires_days", "").strip()
        expires_at = None
        if days_text:
            days = int(days_text) if re.fullmatch(r"[0-9]{1,4}", days_text) else 0
            if not 1 <= days <= MAX_TOKEN_DAYS:
                raise UsageError(f"the expiry is a number of days from 1 to {MAX_TOKEN_DAYS}")
            expires_at = utcnow() + timedelta(days=days)
        with store().session() as s:
            user = s.get(User, g.user.id)
            assert user is not None
            new = create_token(
                s,
                user,
                request.form.get("name", ""),
                scopes,
                actor=g.user.email,
                expires_at=expires_at,
            )
            flash(new.secret, "secret")
            flash(f"Created token '{new.token.name}'.", "success")
    except UsageError as exc:
        flash(f"No token created: {exc.message}", "error")
    return redirect(url_for("admin.tokens"))


@bp.get("/tokens/<int:token_id>/revoke")
@role_required("admin")
def confirm_revoke(token_id: int) -> str:
    with store().session() as s:
        row = s.execute(
            select(ApiToken, User.email)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.id == token_id)
        ).first()
        if row is None:
            abort(404)
        return render_template("token_revoke.html", t=row[0], email=row[1], now=utcnow())


@bp.post("/tokens/<int:token_id>/revoke")
@role_required("admin")
def revoke(token_id: int) -> Response:
    if request.form.get("confirm") != "yes":
        return redirect(url_for("admin.confirm_revoke", token_id=token_id))
    try:
        with store().session() as s:
            token = revoke_token(s, token_id, actor=g.user.email)
            flash(f"Revoked token '{token.name}'.", "success")
    except UsageError as exc:
        flash(exc.message, "error")
    return redirect(url_for("admin.tokens"))
