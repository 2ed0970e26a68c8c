"""Server-side sessions (ASVS 3.3.1, 3.3.2) and account changes, on SQLite and PostgreSQL:
sign-out ends the session on the server, idle and absolute lifetimes, an admin ends a user's
sessions, deactivating or setting a password ends them, roles change, the last admin stays."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from bridge import defaults
from bridge.errors import ConfigError
from bridge.store import Store
from bridge.store.models import AuditLog, User, WebSession, utcnow
from tests.web.conftest import AuthActions
from tests.web.seed import PASSWORD, Seeded, seed, token

pytestmark = pytest.mark.postgres

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def seeded_app(store: Store, app_factory: Callable[..., Flask]) -> tuple[Flask, Seeded]:
    seeded = seed(store)
    return app_factory(store), seeded


def _signed_in(app: Flask, email: str = "reviewer@example.com") -> tuple[FlaskClient, AuthActions]:
    client = app.test_client()
    auth = AuthActions(client)
    assert auth.login(email).status_code == 302
    return client, auth


def _is_signed_in(client: FlaskClient) -> bool:
    resp = client.get("/queue/review")
    assert resp.status_code in (200, 302)
    return resp.status_code == 200


def _copy_of_cookie(app: Flask, client: FlaskClient) -> FlaskClient:
    """Another browser holding the same session cookie (as a thief who copied it would)."""
    cookie = client.get_cookie("sfbridge_session")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("sfbridge_session", cookie.value)
    return thief


def _audit(app: Flask, action: str) -> list[AuditLog]:
    with app.extensions["sfbridge"].store.session() as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == action)))


def test_a_cookie_copied_before_sign_out_is_refused_after(
    seeded_app: tuple[Flask, Seeded],
) -> None:
    app, _ = seeded_app
    client, auth = _signed_in(app)
    thief = _copy_of_cookie(app, client)
    assert _is_signed_in(thief)  # the copy works while the session lives
    assert auth.post("/auth/logout").status_code == 302
    assert not _is_signed_in(client)
    assert not _is_signed_in(thief)  # ended on the server, not just forgotten by the browser
    with app.extensions["sfbridge"].store.session() as s:
        assert s.scalars(select(WebSession.end_reason)).all() == ["signed_out"]


def test_the_store_holds_only_a_hash_of_the_session_id(seeded_app: tuple[Flask, Seeded]) -> None:
    app, _ = seeded_app
    client, _auth = _signed_in(app)
    with client.session_transaction() as sess:
        session_id = sess["sid"]
    with app.extensions["sfbridge"].store.session() as s:
        row = s.scalars(select(WebSession)).one()
        stored = [str(getattr(row, c.key)) for c in WebSession.__table__.columns]
    assert row.id_hash == hashlib.sha256(session_id.encode()).hexdigest()
    assert not any(session_id in value for value in stored)


def test_sessions_end_at_their_absolute_lifetime_however_busy(
    seeded_app: tuple[Flask, Seeded],
) -> None:
    app, _ = seeded_app
    client, _auth = _signed_in(app)
    store = app.extensions["sfbridge"].store
    with store.session() as s:
        row = s.scalars(select(WebSession)).one()
        lifetime = (row.expires_at - row.created_at).total_seconds()
        assert lifetime == app.config["SESSION_MAX_SECONDS"] == 12 * 3600
        # Used a moment ago (not idle), but started longer ago than the lifetime.
        s.execute(
            update(WebSession).values(
                created_at=utcnow() - timedelta(hours=13),
                expires_at=utcnow() - timedelta(seconds=1),
                last_seen_at=utcnow(),
            )
        )
    resp = client.get("/")
    assert resp.status_code == 302
    assert "maximum length" in client.get(resp.headers["Location"]).get_data(as_text=True)
    with store.session() as s:
        assert s.scalars(select(WebSession.end_reason)).all() == ["expired"]


def test_an_admin_ends_a_users_sessions(seeded_app: tuple[Flask, Seeded]) -> None:
    app, seeded = seeded_app
    reviewer, _ = _signed_in(app)
    other_browser, _ = _signed_in(app)
    _admin, admin = _signed_in(app, "admin@example.com")
    page = _admin.get("/admin/users").get_data(as_text=True)
    assert f"/admin/users/{seeded.ids['reviewer']}/sessions/end" in page
    resp = admin.post(f"/admin/users/{seeded.ids['reviewer']}/sessions/end")
    assert resp.status_code == 302
    assert not _is_signed_in(reviewer) and not _is_signed_in(other_browser)
    assert _is_signed_in(_admin)
    [row] = _audit(app, "user.sessions_end")
    assert row.actor == "admin@example.com" and row.detail["sessions_ended"] == 2


def test_deactivating_ends_sessions_and_tokens_and_reactivating_lets_them_back(
    seeded_app: tuple[Flask, Seeded], store: Store
) -> None:
    app, seeded = seeded_app
    reviewer, _ = _signed_in(app)
    secret = token(store, ["entries:read"], email="reviewer@example.com")
    api = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    assert api.get("/api/v1/entries", headers=headers).status_code == 200
    _a, admin = _signed_in(app, "admin@example.com")
    uid = seeded.ids["reviewer"]
    assert admin.post(f"/admin/users/{uid}/deactivate").status_code == 302
    assert not _is_signed_in(reviewer)
    assert api.get("/api/v1/entries", headers=headers).status_code == 401
    again = app.test_client()
    resp = AuthActions(again).login()
    assert resp.status_code == 401
    assert "do not match an active account" in resp.get_data(as_text=True)
    assert admin.post(f"/admin/users/{uid}/reactivate").status_code == 302
    assert AuthActions(again).login().status_code == 302
    assert [r.actor for r in _audit(app, "user.deactivate")] == ["admin@example.com"]
    assert [r.actor for r in _audit(app, "user.reactivate")] == ["admin@example.com"]


def test_an_admin_resets_a_password_and_the_users_sessions_end(
    seeded_app: tuple[Flask, Seeded],
) -> None:
    app, seeded = seeded_app
    reviewer, _ = _signed_in(app)
    _a, admin = _signed_in(app, "admin@example.com")
    uid = seeded.ids["reviewer"]
    short = admin.post(f"/admin/users/{uid}/password", {"password": "short"})
    assert short.status_code == 302 and _is_signed_in(reviewer)  # refused: nothing changed
    admin.post(f"/admin/users/{uid}/password", {"password": NEW_PASSWORD})
    assert not _is_signed_in(reviewer)
    assert AuthActions(app.test_client()).login(password=PASSWORD).status_code == 401
    assert AuthActions(app.test_client()).login(password=NEW_PASSWORD).status_code == 302
    [row] = _audit(app, "user.password_reset")
    assert row.actor == "admin@example.com" and NEW_PASSWORD not in str(row.detail)
    # An admin resetting their own password stays signed in where they did it.
    admin.post(f"/admin/users/{seeded.ids['admin']}/password", {"password": NEW_PASSWORD})
    assert _is_signed_in(_a)
    assert [r.actor for r in _audit(app, "user.password_change")] == ["admin@example.com"]


def test_changing_your_own_password_ends_your_other_sessions(
    seeded_app: tuple[Flask, Seeded],
) -> None:
    app, _ = seeded_app
    here, auth = _signed_in(app)
    elsewhere, _ = _signed_in(app)
    wrong = auth.post(
        "/account/password",
        {
            "current_password": "not my password",
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert wrong.status_code == 400 and "current password is not right" in wrong.text
    resp = auth.post(
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert resp.status_code == 302
    assert _is_signed_in(here) and not _is_signed_in(elsewhere)
    assert AuthActions(app.test_client()).login(password=NEW_PASSWORD).status_code == 302
    [row] = _audit(app, "user.password_change")
    assert row.actor == "reviewer@example.com" and row.detail["sessions_ended"] == 1


def test_you_see_your_sessions_and_can_end_the_others(seeded_app: tuple[Flask, Seeded]) -> None:
    app, _ = seeded_app
    here, auth = _signed_in(app)
    elsewhere, _ = _signed_in(app)
    _admin, _ = _signed_in(app, "admin@example.com")
    page = here.get("/account").get_data(as_text=True)
    assert page.count("<tr><td><time") == 2 and "this browser" in page
    assert "Sign out everywhere else" in page
    resp = auth.post("/account/sessions/end-others", follow_redirects=True)
    assert "Signed out 1 other session(s)." in resp.text
    assert _is_signed_in(here) and not _is_signed_in(elsewhere) and _is_signed_in(_admin)
    [row] = _audit(app, "user.sessions_end")
    assert (row.actor, row.detail) == ("reviewer@example.com", {"sessions_ended": 1})


def test_an_admin_changes_a_role_and_the_last_admin_stays(
    seeded_app: tuple[Flask, Seeded],
) -> None:
    app, seeded = seeded_app
    reviewer, _ = _signed_in(app)
    assert reviewer.get("/admin/users").status_code == 403
    admin_client, admin = _signed_in(app, "admin@example.com")
    admin.post(f"/admin/users/{seeded.ids['reviewer']}/role", {"role": "admin"})
    assert reviewer.get("/admin/users").status_code == 200  # the role applies at once
    [row] = _audit(app, "user.role")
    assert (row.detail["before"], row.detail["role"]) == ("reviewer", "admin")
    # Two admins: one may step down; then the last one can be neither demoted nor deactivated.
    admin.post(f"/admin/users/{seeded.ids['reviewer']}/role", {"role": "reviewer"})
    page = admin.post(
        f"/admin/users/{seeded.ids['admin']}/deactivate", follow_redirects=True
    ).get_data(as_text=True)
    assert "last active admin" in page
    admin.post(f"/admin/users/{seeded.ids['admin']}/role", {"role": "reviewer"})
    with app.extensions["sfbridge"].store.session() as s:
        assert s.get(User, seeded.ids["admin"]).role == "admin"  # type: ignore[union-attr]
        assert s.get(User, seeded.ids["admin"]).active  # type: ignore[union-attr]
    assert _is_signed_in(admin_client)


def test_session_lifetimes_come_from_the_environment(
    sqlite_store: Store, app_factory: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    read = subprocess.run(
        [sys.executable, "-c", "from bridge import defaults as d; "
         "print(d.SESSION_IDLE_MINUTES, d.SESSION_MAX_HOURS)"],
        env={**os.environ, "SFBRIDGE_SESSION_IDLE_MINUTES": "10",
             "SFBRIDGE_SESSION_MAX_HOURS": "2.5"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert read.stdout.split() == ["10.0", "2.5"]
    monkeypatch.setattr(defaults, "SESSION_IDLE_MINUTES", 10.0)
    monkeypatch.setattr(defaults, "SESSION_MAX_HOURS", 2.5)
    app = app_factory(sqlite_store)
    assert (app.config["IDLE_TIMEOUT_SECONDS"], app.config["SESSION_MAX_SECONDS"]) == (600, 9000)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        monkeypatch.setattr(defaults, "SESSION_MAX_HOURS", bad)
        with pytest.raises(ConfigError, match="SFBRIDGE_SESSION_MAX_HOURS must be a positive"):
            app_factory(sqlite_store)
