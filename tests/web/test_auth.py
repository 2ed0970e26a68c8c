"""Sign-in: hashing, cookie flags, a new session at sign-in, idle timeout, throttling, roles."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from bridge.store.models import AuditLog, WebSession, utcnow
from bridge.users import create_user, verify_password
from tests.web.conftest import AuthActions, form_token
from tests.web.seed import PASSWORD


def _cookie_header(resp) -> str:  # type: ignore[no-untyped-def]
    headers = [h for h in resp.headers.getlist("Set-Cookie") if h.startswith("sfbridge_session=")]
    assert headers, "no session cookie was set"
    return headers[-1]


def test_passwords_are_stored_hashed_with_scrypt_by_default(app: Flask) -> None:
    store = app.extensions["sfbridge"].store
    with store.session() as s:
        user = create_user(s, "New.Person@Example.com", "a long enough secret", "reviewer")
        assert user.email == "new.person@example.com"
        assert user.password_hash.startswith("scrypt:")
        assert "a long enough secret" not in user.password_hash
        assert verify_password(user, "a long enough secret")
        assert not verify_password(user, "a long enough secreT")


def test_sign_in_sets_an_httponly_lax_cookie_and_redirects(
    client: FlaskClient, auth: AuthActions
) -> None:
    resp = auth.login()
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    cookie = _cookie_header(resp)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http in this test
    dashboard = client.get("/")
    page = dashboard.get_data(as_text=True)
    assert "reviewer@example.com" in page and "Dashboard" in page
    assert "script-src 'self'" in dashboard.headers["Content-Security-Policy"]
    assert dashboard.headers["X-Frame-Options"] == "DENY"
    assert dashboard.headers["Cache-Control"] == "no-store"


def test_cookie_is_secure_over_https(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/auth/login", base_url="https://localhost")
    assert "Secure" in _cookie_header(page)
    resp = client.post(
        "/auth/login",
        base_url="https://localhost",
        data={
            "email": "reviewer@example.com",
            "password": PASSWORD,
            "csrf_token": form_token(page.get_data(as_text=True)),
        },
    )
    assert resp.status_code == 302
    assert "Secure" in _cookie_header(resp)


def test_sign_in_starts_a_new_session(client: FlaskClient, auth: AuthActions) -> None:
    auth.csrf()
    with client.session_transaction() as sess:
        sess["planted"] = "by an attacker"
        sess["sid"] = "fixed-session-id"
        csrf_before = sess["csrf"]
    auth.login()
    with client.session_transaction() as sess:
        assert "planted" not in sess
        assert sess["sid"] != "fixed-session-id" and len(sess["sid"]) >= 32
        assert sess["csrf"] != csrf_before


def test_idle_sessions_end(client: FlaskClient, auth: AuthActions, app: Flask) -> None:
    auth.login()
    assert client.get("/").status_code == 200
    idle = timedelta(seconds=app.config["IDLE_TIMEOUT_SECONDS"] + 1)
    with app.extensions["sfbridge"].store.session() as s:
        s.execute(update(WebSession).values(last_seen_at=utcnow() - idle))
    resp = client.get("/queue/review")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/auth/login")
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "signed out after a period of inactivity" in page
    with app.extensions["sfbridge"].store.session() as s:
        assert s.scalars(select(WebSession.end_reason)).all() == ["idle"]


def test_pages_need_sign_in(client: FlaskClient) -> None:
    for path in ("/", "/queue/review", "/reports/pushes", "/audit", "/admin/users"):
        resp = client.get(path)
        assert resp.status_code == 302, path
        assert resp.headers["Location"].startswith("/auth/login?next=")


@pytest.mark.parametrize(
    "target",
    ["//evil.example/x", "/\\evil.example/x", "/\t/evil.example/x", "https://evil.example"],
)
def test_next_never_leaves_the_site(client: FlaskClient, auth: AuthActions, target: str) -> None:
    token = auth.csrf()
    resp = client.post(
        "/auth/login",
        data={
            "email": "reviewer@example.com",
            "password": PASSWORD,
            "csrf_token": token,
            "next": target,
        },
    )
    assert resp.headers["Location"] == "/"


def test_wrong_password_is_refused_and_audited(
    client: FlaskClient, auth: AuthActions, app: Flask
) -> None:
    resp = auth.login(password="wrong password")
    assert resp.status_code == 401
    assert "do not match an active account" in resp.get_data(as_text=True)
    with app.extensions["sfbridge"].store.session() as s:
        rows = s.scalars(select(AuditLog).where(AuditLog.action == "login.failed")).all()
        assert [(r.object_type, r.detail["email"]) for r in rows] == [
            ("client_ip", "reviewer@example.com")
        ]


def test_sign_out_is_a_post(client: FlaskClient, auth: AuthActions) -> None:
    auth.login()
    assert client.get("/auth/logout").status_code == 405
    assert client.get("/").status_code == 200
    resp = auth.post("/auth/logout")
    assert resp.status_code == 302
    assert client.get("/").status_code == 302


def test_reviewers_cannot_use_admin_pages(
    client: FlaskClient, auth: AuthActions, app: Flask
) -> None:
    auth.login()
    assert client.get("/admin/users").status_code == 403
    assert client.get("/admin/tokens").status_code == 403
    resp = auth.post("/reports/pushes/2/repush")
    assert resp.status_code == 403
    admin = app.test_client()
    AuthActions(admin).login("admin@example.com")
    assert admin.get("/admin/users").status_code == 200
    assert admin.get("/admin/tokens").status_code == 200


def test_admin_creates_a_token_shown_once(app: Flask) -> None:
    client = app.test_client()
    auth = AuthActions(client)
    auth.login("admin@example.com")
    made = auth.post("/admin/tokens", {"name": "crm sync", "scope": ["entries:read"]})
    assert made.status_code == 302  # post, redirect, get: a reload creates nothing
    html = client.get("/admin/tokens").get_data(as_text=True)
    assert 'id="new-token">sfb_' in html
    listing = client.get("/admin/tokens").get_data(as_text=True)
    assert "crm sync" in listing and 'id="new-token"' not in listing


def test_behind_a_trusted_proxy_cookies_are_secure(
    sqlite_store,
    config_file,
    tmp_path,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    from tests.web.conftest import make_app

    monkeypatch.setenv("SFBRIDGE_TRUST_PROXY", "1")
    app = make_app(sqlite_store, config_file, tmp_path)
    page = app.test_client().get("/auth/login", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in _cookie_header(page)
    monkeypatch.delenv("SFBRIDGE_TRUST_PROXY")
    plain = make_app(sqlite_store, config_file, tmp_path)  # the header is not trusted
    page = plain.test_client().get("/auth/login", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" not in _cookie_header(page)
