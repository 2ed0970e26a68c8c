"""Sign-in and sign-out, the signed-in user on `g.user`, roles, sessions, sign-in throttling.

Sessions are kept on the server (`bridge.web.sessions`): the cookie holds a random session id,
the store its hash; idle timeout and absolute lifetime are checked on every request. Sign-in
is throttled by `bridge.throttle` (a growing delay per account and per address, or per device
for a browser that signed in to the account before). Every refusal says the same thing whether
the account exists or not, and an unknown account costs the same password-hash work.
"""

from __future__ import annotations

import functools
import math
import secrets
from collections.abc import Callable
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
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from werkzeug.wrappers import Response

from bridge import audit, throttle
from bridge.store.models import User, utcnow
from bridge.users import verify_password
from bridge.web import sessions
from bridge.web.extensions import store
from bridge.web.security import is_local_path

bp = Blueprint("auth", __name__, url_prefix="/auth")

F = TypeVar("F", bound=Callable[..., Any])

DEVICE_COOKIE = "sfbridge_device"
MAX_EMAIL_LENGTH = 255  # the users.email column
UNKNOWN_ACCOUNT = "(unknown account)"  # what the audit log says instead of an unknown email
NOT_SIGNED_IN = {
    "idle": "You were signed out after a period of inactivity. Please sign in again.",
    "expired": "Your session reached its maximum length. Please sign in again.",
    "ended": "Your session was ended. Please sign in again.",
    "inactive_user": "Your session was ended. Please sign in again.",
}


def init_app(app: Flask) -> None:
    app.before_request(load_signed_in_user)


def lifetime() -> sessions.Lifetime:
    cfg = current_app.config
    return sessions.Lifetime(cfg["IDLE_TIMEOUT_SECONDS"], cfg["SESSION_MAX_SECONDS"])


def load_signed_in_user() -> Response | None:
    """Put the signed-in user on `g.user` (and the session's row id on `g.web_session_id`)."""
    g.user = None
    g.web_session_id = None
    if request.path.startswith(("/api/", "/static/")) or request.path in (
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        return None
    session_id = session.get("sid")
    if not session_id:
        return None
    with store().session() as s:
        found = sessions.resume(s, str(session_id), lifetime(), utcnow())
        if isinstance(found, str):
            session.clear()
            if found in NOT_SIGNED_IN:
                flash(NOT_SIGNED_IN[found], "info")
            return None
        web_session, user = found
        s.expunge(user)
    g.user = user
    g.web_session_id = web_session.id
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


def client_address() -> str:
    return throttle.normal_address(request.remote_addr or "")


def _could_be_an_account(email: str) -> bool:
    # Longer than the column, or with a control character (PostgreSQL refuses NUL): no account
    # has it, so it is not looked up — but it is still hashed and refused like any other.
    return len(email) <= MAX_EMAIL_LENGTH and not any(ord(ch) < 32 for ch in email)


def policies() -> tuple[throttle.Policy, throttle.Policy]:
    """(per account or device, per address)."""
    cfg = current_app.config

    def policy(free: int) -> throttle.Policy:
        return throttle.Policy(
            free,
            cfg["LOGIN_FIRST_DELAY_SECONDS"],
            cfg["LOGIN_MAX_DELAY_SECONDS"],
            cfg["LOGIN_FORGET_SECONDS"],
        )

    return policy(cfg["LOGIN_FREE_ATTEMPTS"]), policy(cfg["LOGIN_ADDRESS_FREE_ATTEMPTS"])


def _devices() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt="sfbridge-device")


def _device_of(account: str) -> str | None:
    """The device id of this browser's device cookie when it was issued for `account`."""
    cookie = request.cookies.get(DEVICE_COOKIE)
    if not cookie:
        return None
    max_age = current_app.config["DEVICE_COOKIE_DAYS"] * 86400
    try:
        data = _devices().loads(cookie, max_age=max_age)
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("account") != account:
        return None
    device = data.get("device")
    return device if isinstance(device, str) else None


def _wait_words(seconds: float) -> str:
    if seconds < 90:
        return f"{math.ceil(seconds)} seconds"
    return f"{math.ceil(seconds / 60)} minutes"


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
    address = client_address()
    account = throttle.account_key(email)
    device = _device_of(account)
    per_account, per_address = policies()
    keys = (
        [(throttle.device_key(device), per_account)]
        if device
        else [(throttle.address_key(address), per_address), (account, per_account)]
    )
    now = utcnow()
    for key, policy in keys:
        with store().session() as s:  # committed before the password is checked
            wait = throttle.take_attempt(s, key, policy, now)
        if wait:
            error = f"Too many failed sign-ins. Wait {_wait_words(wait)} and try again."
            return (
                render_template("login.html", email=email, next=next_url, error=error),
                429,
                {"Retry-After": str(math.ceil(wait))},
            )

    with store().session() as s:
        user = (
            s.scalar(select(User).where(User.email == email))
            if _could_be_an_account(email)
            else None
        )
        method = current_app.config["PASSWORD_HASH_METHOD"]
        signed_in = verify_password(user, password, method) and user is not None and user.active
        if not signed_in or user is None:
            # Never the typed text of an unknown account: it may be a password.
            actor = user.email if user else UNKNOWN_ACCOUNT
            detail = {"email": user.email, "active": user.active} if user else {}
            audit.record(s, actor, "login.failed", "client_ip", address, **detail)
            error = "That email and password do not match an active account."
            return render_template("login.html", email=email, next=next_url, error=error), 401
        user.last_login_at = now
        for key, policy in keys:
            if key.startswith(throttle.ADDRESS):
                throttle.give_back(s, key, policy)
            else:
                throttle.clear(s, key)
        throttle.forget_old(s, per_account, now)
        audit.record(s, user.email, "login", "user", user.id, ip=address)
        session_id = sessions.begin(s, user, address, lifetime(), now)
    # A new session at sign-in: nothing from before survives, a new id and CSRF token.
    session.clear()
    session["sid"] = session_id
    session["csrf"] = secrets.token_urlsafe(32)
    resp = redirect(_safe_next(next_url))
    # A new device id at every sign-in (OWASP's device cookies): a copied cookie goes stale.
    cookie = _devices().dumps({"account": account, "device": secrets.token_urlsafe(16)})
    resp.set_cookie(
        DEVICE_COOKIE,
        cookie,
        max_age=current_app.config["DEVICE_COOKIE_DAYS"] * 86400,
        httponly=True,
        samesite="Lax",
        secure=current_app.session_interface.get_cookie_secure(current_app),
        path=url_for("auth.login"),
    )
    return resp


@bp.route("/logout", methods=("POST",))
def logout() -> Response:
    session_id = session.get("sid")
    if session_id:
        with store().session() as s:
            sessions.end_by_id(s, str(session_id), "signed_out", utcnow())
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
