"""Cookie flags, CSRF tokens and security headers for the browser side.

The session cookie is Flask's signed cookie: HttpOnly, SameSite=Lax, and Secure whenever the
request came over HTTPS (`TRUST_PROXY` honours X-Forwarded-Proto from a reverse proxy). It
carries only the random session id (the session itself is kept on the server, see
`bridge.web.sessions`) and the CSRF token. At sign-in it is cleared and gets a new id, so a
cookie planted before sign-in is worth nothing afterwards. The CSRF token is a per-session
random value checked on every non-API POST; the JSON API is exempt because it authenticates
with bearer tokens, not cookies. HTML and JSON answers are `Cache-Control: no-store`.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session
from werkzeug.exceptions import BadRequest
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, Map

CSRF_FIELD = "csrf_token"
CSRF_EXEMPT_PREFIXES = ("/api/",)
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class RowIdConverter(IntegerConverter):
    """`<int:...>` in routes: ids are 64-bit, so a larger number is a 404, not a database
    overflow (a 500)."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(url_map, *args, **kwargs)


class CsrfRefused(BadRequest):
    description = "The form was sent without a valid CSRF token."


class SessionInterface(SecureCookieSessionInterface):
    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return str(token)


def is_local_path(target: str) -> bool:
    """A path on this site: not `//host`, and no backslash or control character (browsers read
    a backslash as a slash and drop tabs and newlines, so both can spell `//host`)."""
    return (
        target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(ord(ch) < 32 or ord(ch) == 127 for ch in target)
    )


def local_next(default: str) -> str:
    """The form's `next` when it is a path on this site, else `default` (no open redirects)."""
    target = request.form.get("next", "")
    return target if is_local_path(target) else default


MAX_PAGE = 1_000_000  # far past any real page; a larger offset overflows the database


def page_number() -> int:
    """The `?page=` of a list, from 1 to MAX_PAGE (anything else is page 1 or the last)."""
    return min(max(1, request.args.get("page", 1, type=int) or 1), MAX_PAGE)


@dataclass(frozen=True)
class Page:
    """One page of a list: its number (from `?page=`), its size and the list's row count."""

    number: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    def of(self, query: Select[Any]) -> Select[Any]:
        """`query` cut to this page (order it first)."""
        return query.offset((self.number - 1) * self.size).limit(self.size)


def page_of(session: Session, query: Select[Any], size: int) -> Page:
    """The requested page of `query`, counted."""
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    return Page(page_number(), size, total)


def parse_time(iso: str | None) -> datetime | None:
    """An ISO 8601 time kept as text (JSON, Redis) as a UTC datetime, for the `when` macro."""
    try:
        return datetime.fromisoformat(iso).astimezone(UTC) if iso else None
    except ValueError:
        return None


def page_url(page: int) -> str:
    """This page's URL with the same query and another page number."""
    args: dict[str, Any] = {**(request.view_args or {}), **request.args.to_dict()}
    args["page"] = str(page)
    return url_for(request.endpoint or "index", **args)


def _check_csrf() -> None:
    if request.method not in UNSAFE_METHODS:
        return
    if request.path.startswith(CSRF_EXEMPT_PREFIXES):
        return
    expected = session.get("csrf")
    sent = request.form.get(CSRF_FIELD) or request.headers.get("X-CSRF-Token", "")
    # bytes: compare_digest refuses str with non-ASCII characters (TypeError, a 500)
    if not expected or not sent or not hmac.compare_digest(str(expected).encode(), sent.encode()):
        raise CsrfRefused()


def init_app(app: Flask) -> None:
    app.session_interface = SessionInterface()
    if app.config.get("TRUST_PROXY"):
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    app.before_request(_check_csrf)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["page_url"] = page_url
    app.jinja_env.globals["since"] = parse_time

    @app.errorhandler(CsrfRefused)
    def _csrf_refused(exc: CsrfRefused) -> tuple[str, int]:
        return render_template(
            "error.html",
            status=400,
            title="Form refused",
            message="This form was sent without a valid security token "
            "(it may have expired, or come from another site). Go back, "
            "reload the page and try again.",
        ), 400

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if resp.mimetype == "text/html":
            resp.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                "script-src 'self'; form-action 'self'; frame-ancestors 'none'",
            )
            resp.headers.setdefault("Cache-Control", "no-store")
        elif resp.mimetype == "application/json" or request.path.startswith("/api/"):
            # API answers hold referral and account data: never kept by a browser or proxy cache.
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp
