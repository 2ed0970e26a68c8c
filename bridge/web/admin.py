"""Admin pages: reviewer/admin accounts and API tokens (a new token is shown once)."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from bridge import audit
from bridge.errors import UsageError
from bridge.store.models import ApiToken, User
from bridge.users import create_token, create_user, revoke_token
from bridge.vocabulary import ROLES, SCOPES
from bridge.web.auth import role_required
from bridge.web.extensions import store

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/users")
@role_required("admin")
def users() -> str:
    with store().session() as s:
        rows = list(s.scalars(select(User).order_by(User.email)))
    return render_template("users.html", rows=rows, roles=ROLES)


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


@bp.post("/users/<int:user_id>/unlock")
@role_required("admin")
def unlock_user(user_id: int) -> Response:
    with store().session() as s:
        user = s.get(User, user_id)
        if user is not None:
            user.locked_until = None
            user.failed_logins = 0
            audit.record(s, g.user.email, "user.unlock", "user", user.id)
            flash(f"Unlocked {user.email}.", "success")
    return redirect(url_for("admin.users"))


@bp.get("/tokens")
@role_required("admin")
def tokens() -> str:
    with store().session() as s:
        rows = s.execute(
            select(ApiToken, User.email)
            .join(User, User.id == ApiToken.user_id)
            .order_by(ApiToken.id.desc())
        ).all()
    return render_template("tokens.html", rows=rows, scopes=SCOPES, secret=None)


@bp.post("/tokens")
@role_required("admin")
def add_token() -> str | Response:
    scopes = request.form.getlist("scope")
    try:
        with store().session() as s:
            user = s.get(User, g.user.id)
            assert user is not None
            new = create_token(s, user, request.form.get("name", ""), scopes, actor=g.user.email)
            secret = new.secret
            rows = s.execute(
                select(ApiToken, User.email)
                .join(User, User.id == ApiToken.user_id)
                .order_by(ApiToken.id.desc())
            ).all()
    except UsageError as exc:
        flash(f"No token created: {exc.message}", "error")
        return redirect(url_for("admin.tokens"))
    # The secret is in this one response only; it is not stored.
    return render_template("tokens.html", rows=rows, scopes=SCOPES, secret=secret)


@bp.post("/tokens/<int:token_id>/revoke")
@role_required("admin")
def revoke(token_id: int) -> Response:
    try:
        with store().session() as s:
            token = revoke_token(s, token_id, actor=g.user.email)
            flash(f"Revoked token '{token.name}'.", "success")
    except UsageError as exc:
        flash(exc.message, "error")
    return redirect(url_for("admin.tokens"))
