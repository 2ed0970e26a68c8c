"""Sign-in and sign-out, the signed-in user on `g.user`, roles, idle timeout, login throttling.

Throttling has two locks: per account (`LOGIN_MAX_FAILURES` failures in a row lock it for
`LOGIN_LOCKOUT_SECONDS`, stored on the user) and per client address (`LOGIN_IP_MAX_FAILURES`
failures within `LOGIN_IP_WINDOW_SECONDS`, counted from the audit log, so every gunicorn worker
sees the same count and the attempts stay auditable).
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar, cast

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from bridge import audit
from bridge.store.models import AuditLog, User, utcnow
from bridge.users import verify_password
from bridge.web.extensions import store
from bridge.web.security import is_local_path

bp = Blueprint("auth", __name__, url_prefix="/auth")

F = TypeVar("F", bound=Callable[..., Any])


def init_app(app: Flask) -> None:
    app.before_request(load_signed_in_user)


def load_signed_in_user() -> Response | None:
    """Put the signed-in user on `g.user`; end sessions idle longer than the timeout."""
    g.user = None
    if request.path.startswith(("/api/", "/static/")) or request.path in (
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        return None
    uid = session.get("uid")
    if uid is None:
        return None
    now = time.time()
    seen = float(session.get("seen", 0))
    if now - seen > current_app.config["IDLE_TIMEOUT_SECONDS"]:
        session.clear()
        flash("You were signed out after a period of inactivity. Please sign in again.", "info")
        return None
    with store().session() as s:
        user = s.get(User, uid)
        if user is None or not user.active:
            session.clear()
            return None
        s.expunge(user)
    g.user = user
    session["seen"] = now
    return None


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.user is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return cast(F, wrapped)


def role_required(role: str) -> Callable[[F], F]:
    """Admins may do everything reviewers may; `role_required("admin")` is admin-only."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        @login_required
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if role == "admin" and g.user.role != "admin":
                return render_template(
                    "error.html",
                    status=403,
                    title="Admins only",
                    message="This page or action needs the admin role. Ask an admin.",
                ), 403
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorator


def _client_ip() -> str:
    return request.remote_addr or "unknown"


def _ip_failures(s: Any, ip: str) -> int:
    since = utcnow() - timedelta(seconds=current_app.config["LOGIN_IP_WINDOW_SECONDS"])
    return int(
        s.scalar(
            select(func.count(AuditLog.id)).where(
                AuditLog.action == "login.failed",
                AuditLog.object_type == "client_ip",
                AuditLog.object_id == ip,
                AuditLog.at >= since,
            )
        )
        or 0
    )


def _safe_next(target: str | None) -> str:
    # Only local paths: never redirect to another site after sign-in.
    return target if target and is_local_path(target) else url_for("index")


@bp.route("/login", methods=("GET", "POST"))
def login() -> Any:
    if request.method == "GET":
        return render_template("login.html", email="", next=request.args.get("next", ""))
    email = request.form.get("email", "").strip().lower()
    password = request.form.get("password", "")
    next_url = request.form.get("next", "")
    ip = _client_ip()
    cfg = current_app.config
    error: str | None = None
    status = 200
    with store().session() as s:
        if _ip_failures(s, ip) >= cfg["LOGIN_IP_MAX_FAILURES"]:
            minutes = cfg["LOGIN_IP_WINDOW_SECONDS"] // 60
            error = (
                "Too many failed sign-ins from your network address. Sign-in from this "
                f"address is paused for up to {minutes} minutes."
            )
            status = 429
        else:
            user = s.scalar(select(User).where(User.email == email))
            now = utcnow()
            if user is not None and user.locked_until is not None and user.locked_until > now:
                until = user.locked_until.strftime("%H:%M UTC")
                error = (
                    f"This account is locked after {cfg['LOGIN_MAX_FAILURES']} failed sign-ins. "
                    f"Try again after {until}, or ask an admin to unlock it."
                )
                status = 429
            elif verify_password(user, password) and user is not None and user.active:
                user.failed_logins = 0
                user.locked_until = None
                user.last_login_at = now
                audit.record(s, user.email, "login", "user", user.id, ip=ip)
                # A new session at sign-in: nothing from before survives, new nonce and token.
                session.clear()
                session["uid"] = user.id
                session["sid"] = secrets.token_urlsafe(24)
                session["seen"] = time.time()
                session["csrf"] = secrets.token_urlsafe(32)
                return redirect(_safe_next(next_url))
            else:
                audit.record(s, email or "(blank)", "login.failed", "client_ip", ip, email=email)
                if user is not None:
                    user.failed_logins += 1
                    if user.failed_logins >= cfg["LOGIN_MAX_FAILURES"]:
                        user.locked_until = now + timedelta(seconds=cfg["LOGIN_LOCKOUT_SECONDS"])
                        user.failed_logins = 0
                        audit.record(s, "system", "user.locked", "user", user.id, ip=ip)
                error = "That email and password do not match an active account."
                status = 401
    return render_template("login.html", email=email, next=next_url, error=error), status


@bp.route("/logout", methods=("POST",))
def logout() -> Response:
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
