"""Account commands (`sfbridge users ...`) and API tokens that expire (CLI, admin page, API),
on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select, update

from bridge import throttle
from bridge.cli import main
from bridge.store import Store
from bridge.store.models import ApiToken, AuditLog, SignInThrottle, User, WebSession, utcnow
from bridge.users import find_token
from tests.web.conftest import AuthActions
from tests.web.seed import PASSWORD, seed, token

pytestmark = pytest.mark.postgres


@pytest.fixture
def env(store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("SFBRIDGE_DATABASE_URL", store.url)
    seed(store)
    return store


def _run(runner: CliRunner, *args: str, stdin: str | None = None) -> str:
    result = runner.invoke(main, list(args), input=stdin)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


def _actions(store: Store) -> list[tuple[str, str]]:
    with store.session() as s:
        return [
            (r.actor, r.action)
            for r in s.scalars(select(AuditLog).where(AuditLog.action.startswith("user.")))
            if r.action != "user.create"
        ]


def test_users_commands_change_accounts_and_are_audited(
    runner: CliRunner, env: Store, app_factory: Callable[..., Flask]
) -> None:
    app = app_factory(env)
    browser = app.test_client()
    assert AuthActions(browser).login().status_code == 302
    assert browser.get("/").status_code == 200

    assert "reviewer@example.com\treviewer\tactive" in _run(runner, "users", "list")
    _run(runner, "users", "deactivate", "Reviewer@Example.com")
    assert browser.get("/").status_code == 302  # the session ended with the account
    assert "deactivated" in _run(runner, "users", "list")
    _run(runner, "users", "reactivate", "reviewer@example.com")
    _run(runner, "users", "role", "reviewer@example.com", "admin")
    with env.session() as s:
        user = s.scalars(select(User).where(User.email == "reviewer@example.com")).one()
        assert user.active and user.role == "admin"

    assert AuthActions(browser).login().status_code == 302
    out = _run(
        runner, "users", "password", "reviewer@example.com", "--password-stdin",
        stdin="another long password\n",
    )  # fmt: skip
    assert "1 session(s) ended" in out and browser.get("/").status_code == 302
    assert AuthActions(browser).login(password=PASSWORD).status_code == 401
    assert AuthActions(browser).login(password="another long password").status_code == 302
    assert "ended 1 session(s)" in _run(runner, "users", "end-sessions", "reviewer@example.com")
    with env.session() as s:
        assert s.scalar(select(WebSession.id).where(WebSession.ended_at.is_(None))) is None

    short = runner.invoke(
        main, ["users", "password", "reviewer@example.com", "--password-stdin"], input="short\n"
    )
    assert short.exit_code == 1 and "at least 10 characters" in short.output
    unknown = runner.invoke(main, ["users", "deactivate", "who@example.com"])
    assert unknown.exit_code == 1 and "no user who@example.com" in unknown.output
    assert _actions(env) == [
        ("cli", "user.deactivate"),
        ("cli", "user.reactivate"),
        ("cli", "user.role"),
        ("cli", "user.password_reset"),
        ("cli", "user.sessions_end"),
    ]


def test_sign_in_delays_are_listed_and_cleared_from_the_cli(
    runner: CliRunner, env: Store, app_factory: Callable[..., Flask]
) -> None:
    app = app_factory(env, LOGIN_ADDRESS_FREE_ATTEMPTS=3)
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "198.51.100.20"
    auth = AuthActions(client)
    for _ in range(3):
        assert auth.login("reviewer@example.com", "wrong guess").status_code == 401
    assert auth.login().status_code == 429
    listing = _run(runner, "users", "delays")
    assert "address:198.51.100.20\t3 attempts" in listing
    assert "cleared 198.51.100.20" in _run(runner, "users", "clear-address", "198.51.100.20")
    assert "no failed sign-ins" in _run(runner, "users", "clear-address", "198.51.100.20")
    with env.session() as s:
        assert s.get(SignInThrottle, throttle.address_key("198.51.100.20")) is None
    assert auth.login().status_code == 302
    with env.session() as s:
        row = s.scalars(select(AuditLog).where(AuditLog.action == "address.clear")).first()
        assert row is not None and row.actor == "cli"


def test_tokens_expire_with_a_clear_401(
    runner: CliRunner, env: Store, app_factory: Callable[..., Flask]
) -> None:
    out = runner.invoke(
        main,
        [
            "tokens", "create", "--user", "admin@example.com", "--name", "ci",
            "--scope", "entries:read", "--expires-in", "30",
        ],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    secret = out.stdout.strip().splitlines()[-1]
    with env.session() as s:
        found = find_token(s, secret)
        assert found is not None and found.expires_at is not None
        days = (found.expires_at - utcnow()).total_seconds() / 86400
        assert 29.9 < days <= 30
    assert "expires " in _run(runner, "tokens", "list")
    app = app_factory(env)
    api = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    assert api.get("/api/v1/entries", headers=headers).status_code == 200
    with env.session() as s:
        s.execute(update(ApiToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    resp = api.get("/api/v1/entries", headers=headers)
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    error = resp.get_json()["error"]
    assert error["code"] == "token_expired" and "expired at" in error["message"]
    assert "expired " in _run(runner, "tokens", "list")
    bad = runner.invoke(
        main,
        ["tokens", "create", "--user", "admin@example.com", "--name", "x",
         "--scope", "entries:read", "--expires-in", "0"],
    )  # fmt: skip
    assert bad.exit_code == 2 and "0 is not in the range" in bad.output


def test_the_admin_page_creates_tokens_that_expire(
    env: Store, app_factory: Callable[..., Flask]
) -> None:
    app = app_factory(env)
    client = app.test_client()
    admin = AuthActions(client)
    admin.login("admin@example.com")
    made_at = admin.post(
        "/admin/tokens", {"name": "short", "scope": ["entries:read"], "expires_days": "7"}
    )
    assert made_at.status_code == 302 and made_at.headers["Location"].endswith("/admin/tokens")
    page = client.get("/admin/tokens")
    assert 'id="new-token">sfb_' in page.text and "Created token &#39;short&#39;" in page.text
    secret = page.text.split('id="new-token">', 1)[1].split("<", 1)[0]
    assert secret not in client.get("/admin/tokens").text  # shown once; a reload shows no secret
    bad = admin.post(
        "/admin/tokens",
        {"name": "x", "scope": ["entries:read"], "expires_days": "-3"},
        follow_redirects=True,
    )
    assert "number of days from 1 to 3650" in bad.text
    with env.session() as s:
        made = s.scalars(select(ApiToken)).all()
        assert [t.name for t in made] == ["short"]
        assert made[0].expires_at is not None
        assert 6.9 < (made[0].expires_at - utcnow()).total_seconds() / 86400 <= 7
    token(env, ["entries:read"])  # one without an expiry
    listing = client.get("/admin/tokens").text
    assert "<th>Expires</th>" in listing and ">never<" in listing and "(expired)" not in listing


def test_token_names_are_unique_and_revoking_asks_first(
    env: Store, app_factory: Callable[..., Flask]
) -> None:
    app = app_factory(env)
    client = app.test_client()
    admin = AuthActions(client)
    admin.login("admin@example.com")
    form = {"name": "ci", "scope": ["entries:read"]}
    admin.post("/admin/tokens", form)
    again = admin.post("/admin/tokens", form, follow_redirects=True)
    assert "a token named &#39;ci&#39; exists" in again.text and "new-token" not in again.text
    with env.session() as s:
        ci = s.scalars(select(ApiToken)).one()
    assert "read sales entries" in again.text  # scopes are described

    asked = client.get(f"/admin/tokens/{ci.id}/revoke")
    assert asked.status_code == 200 and 'id="confirm-revoke"' in asked.text
    unconfirmed = admin.post(f"/admin/tokens/{ci.id}/revoke", {})
    assert unconfirmed.status_code == 302
    with env.session() as s:
        assert s.get(ApiToken, ci.id).revoked_at is None  # type: ignore[union-attr]
    admin.post(f"/admin/tokens/{ci.id}/revoke", {"confirm": "yes"})
    with env.session() as s:
        assert s.get(ApiToken, ci.id).revoked_at is not None  # type: ignore[union-attr]
    reused = admin.post("/admin/tokens", form, follow_redirects=True)
    assert "new-token" in reused.text  # a revoked token's name is free again


@pytest.mark.parametrize(
    ("path", "form", "message"),
    [
        ("/admin/users", {"email": "nul\x07@example.com", "role": "reviewer",
                          "password": "long enough pw"}, "control characters"),
        ("/admin/users", {"email": "a@example.com", "name": "x" * 300, "role": "reviewer",
                          "password": "long enough pw"}, "longer than 255"),
        ("/admin/users", {"email": "b@example.com", "role": "root\x07",
                          "password": "long enough pw"}, "role must be one of"),
        ("/admin/tokens", {"name": "ci\x07", "scope": "entries:read"}, "control characters"),
        ("/admin/tokens", {"name": "ci", "scope": "entries:read", "expires_days": "²"},
         "number of days"),
        ("/admin/tokens", {"name": "ci", "scope": "entries:read", "expires_days": "9" * 50},
         "number of days"),
        ("/admin/users/2/role", {"role": "x" * 5000}, "role must be one of"),
        ("/admin/addresses/clear", {"address": "\x07" * 3000}, "no failed sign-ins"),
    ],
)  # fmt: skip
def test_hostile_admin_input_is_refused_with_a_message(
    env: Store, app_factory: Callable[..., Flask], path: str, form: dict[str, str], message: str
) -> None:
    app = app_factory(env)
    admin = AuthActions(app.test_client())
    admin.login("admin@example.com")
    resp = admin.post(path, form, follow_redirects=True)
    assert resp.status_code == 200 and message in resp.text


def test_a_nul_in_an_admin_form_is_refused_before_the_view(
    env: Store, app_factory: Callable[..., Flask]
) -> None:
    app = app_factory(env)
    admin = AuthActions(app.test_client())
    admin.login("admin@example.com")
    form = {"email": "nul\x00@example.com", "role": "reviewer", "password": "long enough pw"}
    resp = admin.post("/admin/users", form, follow_redirects=True)
    assert resp.status_code == 400 and "NUL character" in resp.text
