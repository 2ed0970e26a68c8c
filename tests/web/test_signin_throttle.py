"""Sign-in throttling (ASVS 2.2.1) on SQLite and PostgreSQL: a growing delay per account and
per address instead of a lock, devices that signed in before are not held up, admins clear
addresses, and nothing tells an unknown account from a real one."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from bridge import throttle, users
from bridge.store import Store
from bridge.store.models import AuditLog, SignInThrottle, utcnow
from tests.web.conftest import AuthActions
from tests.web.seed import PASSWORD, Seeded, seed

pytestmark = pytest.mark.postgres

OFFICE = "203.0.113.7"


@pytest.fixture
def seeded_app(store: Store, app_factory: Callable[..., Flask]) -> tuple[Flask, Seeded]:
    seeded = seed(store)
    return app_factory(store), seeded


def _browser(app: Flask, address: str = OFFICE) -> tuple[FlaskClient, AuthActions]:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client, AuthActions(client)


def _fail(auth: AuthActions, email: str, times: int) -> list[int]:
    return [auth.login(email, "a wrong guess").status_code for _ in range(times)]


def _pass_the_delay(app: Flask, key: str) -> None:
    """Move the key's wait into the past, as if the delay had been waited out."""
    with app.extensions["sfbridge"].store.session() as s:
        s.execute(
            update(SignInThrottle)
            .where(SignInThrottle.key == key)
            .values(not_before=utcnow() - timedelta(seconds=1))
        )


def _row(app: Flask, key: str) -> SignInThrottle:
    with app.extensions["sfbridge"].store.session() as s:
        row = s.get(SignInThrottle, key)
        assert row is not None
        return row


def test_failures_delay_the_account_and_the_delay_grows(
    seeded_app: tuple[Flask, Seeded],
) -> None:
    app, _ = seeded_app
    _c, auth = _browser(app)
    assert _fail(auth, "reviewer@example.com", 5) == [401] * 5
    resp = auth.login()  # the right password, but the next attempt must wait
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "30"
    assert "Too many failed sign-ins. Wait 30 seconds and try again." in resp.text
    key = throttle.account_key("reviewer@example.com")
    first = _row(app, key)
    assert first.not_before is not None
    assert 29 <= (first.not_before - first.last_at).total_seconds() <= 30
    _pass_the_delay(app, key)
    assert _fail(auth, "reviewer@example.com", 1) == [401]  # one more guess, then longer
    second = _row(app, key)
    assert second.not_before is not None
    assert (second.not_before - second.last_at).total_seconds() == pytest.approx(60, abs=1)
    _pass_the_delay(app, key)
    assert auth.login().status_code == 302  # a delay, not a lock: the right password works
    with app.extensions["sfbridge"].store.session() as s:
        assert s.get(SignInThrottle, key) is None  # and clears the count


def test_unknown_and_real_accounts_get_the_same_answers(seeded_app: tuple[Flask, Seeded]) -> None:
    app, _ = seeded_app
    answers = {}
    for email in ("reviewer@example.com", "nobody@example.com"):
        _c, auth = _browser(app, f"198.51.100.{len(answers) + 1}")
        pages = [auth.login(email, "a wrong guess") for _ in range(6)]
        answers[email] = [
            (p.status_code, re.sub(r'value="[^"]*"', "", p.text).replace(email, "EMAIL"))
            for p in pages
        ]
    assert answers["reviewer@example.com"] == answers["nobody@example.com"]
    assert [status for status, _ in answers["nobody@example.com"]] == [401] * 5 + [429]


def test_unknown_accounts_cost_the_same_hash_work(
    seeded_app: tuple[Flask, Seeded], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _ = seeded_app
    checked: list[str] = []
    real_check = users.check_password_hash

    def spy(pwhash: str, password: str) -> bool:
        checked.append(pwhash.rsplit("$", 2)[0])  # algorithm and cost, without salt and hash
        return real_check(pwhash, password)

    monkeypatch.setattr(users, "check_password_hash", spy)
    store = app.extensions["sfbridge"].store
    with store.session() as s:
        real = users.create_user(s, "scrypt.user@example.com", PASSWORD, "reviewer")
        assert users.verify_password(real, "a wrong guess", "scrypt") is False
    assert users.verify_password(None, "a wrong guess", "scrypt") is False
    assert checked[0].startswith("scrypt:") and checked == [checked[0]] * 2
    # The sign-in form uses the app's method for unknown accounts too (pbkdf2 in these tests).
    checked.clear()
    _c, auth = _browser(app)
    auth.login("reviewer@example.com", "a wrong guess")
    auth.login("nobody@example.com", "a wrong guess")
    assert len(checked) == 2 and checked[0] == checked[1]


def test_parallel_attempts_cannot_share_one(store: Store) -> None:
    """The compare-and-set: attempts taken from a stale read are refused, never doubled."""
    policy = throttle.Policy(5, 30, 900, 3600)
    key = throttle.account_key("race@example.com")
    now = utcnow()
    for _ in range(5):
        with store.session() as s:
            assert throttle.take_attempt(s, key, policy, now) == 0
    with store.session() as s:
        assert throttle.take_attempt(s, key, policy, now) == 30
        assert s.get(SignInThrottle, key).attempts == 5  # type: ignore[union-attr]


def test_a_browser_that_signed_in_before_is_not_locked_out(
    seeded_app: tuple[Flask, Seeded],
) -> None:
    app, _ = seeded_app
    own, auth = _browser(app)
    assert auth.login().status_code == 302  # gets the device cookie
    assert own.get_cookie("sfbridge_device", path="/auth/login") is not None
    auth.post("/auth/logout")
    _attacker, guesses = _browser(app)  # same office address, no device cookie
    assert _fail(guesses, "reviewer@example.com", 6) == [401] * 5 + [429]
    assert guesses.login().status_code == 429  # the account is delayed for strangers...
    first_device = own.get_cookie("sfbridge_device", path="/auth/login")
    assert auth.login().status_code == 302  # ...but not for its owner's browser
    renewed = own.get_cookie("sfbridge_device", path="/auth/login")
    assert first_device is not None and renewed is not None
    assert renewed.value != first_device.value  # a new device id at every sign-in
    # A device cookie is for its own account only: guessing another's is counted as usual.
    assert _fail(auth, "admin@example.com", 6) == [401] * 5 + [429]


def test_many_failures_from_one_address_do_not_lock_out_everyone_behind_it(
    seeded_app: tuple[Flask, Seeded],
) -> None:
    app, _ = seeded_app
    colleague, colleague_auth = _browser(app)
    assert colleague_auth.login("admin@example.com").status_code == 302
    colleague_auth.post("/auth/logout")
    _attacker, attacker = _browser(app)
    for i in range(20):  # 20 accounts, one guess each: no account delay, only the address
        assert attacker.login(f"guess{i}@example.com", "a wrong guess").status_code == 401
    assert attacker.login("guess99@example.com", "a wrong guess").status_code == 429
    _new, newcomer = _browser(app)
    assert newcomer.login().status_code == 429  # no device cookie: the address waits
    assert colleague_auth.login("admin@example.com").status_code == 302  # a known browser: no
    assert _row(app, throttle.address_key(OFFICE)).attempts == 20  # refused ones are not taken
    # An admin clears the address on the Users page; then the newcomer signs in.
    page = colleague.get("/admin/users").get_data(as_text=True)
    assert OFFICE in page
    colleague_auth.post("/admin/addresses/clear", {"address": OFFICE})
    assert newcomer.login().status_code == 302
    with app.extensions["sfbridge"].store.session() as s:
        row = s.scalars(select(AuditLog).where(AuditLog.action == "address.clear")).one()
        assert (row.actor, row.object_id, row.detail) == (
            "admin@example.com",
            OFFICE,
            {"cleared": True},
        )


def test_successful_sign_ins_do_not_add_up_to_a_delay(seeded_app: tuple[Flask, Seeded]) -> None:
    app, _ = seeded_app
    for _ in range(25):
        _c, auth = _browser(app)  # a fresh browser each time: counted on the address
        assert auth.login().status_code == 302
    assert _row(app, throttle.address_key(OFFICE)).attempts == 0


def test_a_password_typed_into_the_email_field_is_never_stored(
    seeded_app: tuple[Flask, Seeded],
) -> None:
    app, _ = seeded_app
    _c, auth = _browser(app)
    typed = "Tr0ub4dor&3-my-real-password"
    assert auth.login(typed, "").status_code == 401
    with app.extensions["sfbridge"].store.session() as s:
        rows = list(s.scalars(select(AuditLog).where(AuditLog.action == "login.failed")))
        keys = list(s.scalars(select(SignInThrottle.key)))
        assert [(r.actor, r.detail) for r in rows] == [("(unknown account)", {})]
        stored = " ".join(f"{r.actor} {r.object_id} {r.detail}" for r in rows) + " ".join(keys)
        assert typed.lower() not in stored.lower()
    # A known account is named, so an admin can see who is being guessed at.
    auth.login("reviewer@example.com", "a wrong guess")
    with app.extensions["sfbridge"].store.session() as s:
        row = s.scalars(select(AuditLog).where(AuditLog.actor == "reviewer@example.com")).one()
        assert row.detail == {"email": "reviewer@example.com", "active": True}


def test_an_admin_reset_lifts_an_account_delay(seeded_app: tuple[Flask, Seeded]) -> None:
    app, seeded = seeded_app
    _c, auth = _browser(app)
    _fail(auth, "reviewer@example.com", 5)
    assert auth.login().status_code == 429
    _a, admin = _browser(app, "192.0.2.1")
    admin.login("admin@example.com")
    page = _a.get("/admin/users").get_data(as_text=True)
    assert f"/admin/users/{seeded.ids['reviewer']}/unlock" in page
    admin.post(f"/admin/users/{seeded.ids['reviewer']}/password", {"password": "fresh password 1"})
    assert auth.login(password="fresh password 1").status_code == 302


def test_keys_quiet_for_the_forget_time_are_deleted(seeded_app: tuple[Flask, Seeded]) -> None:
    app, _ = seeded_app
    _c, auth = _browser(app)
    _fail(auth, "made-up@example.com", 2)
    _fail(auth, "another-made-up@example.com", 1)
    old = utcnow() - timedelta(seconds=app.config["LOGIN_FORGET_SECONDS"] + 1)
    made_up = throttle.account_key("made-up@example.com")
    with app.extensions["sfbridge"].store.session() as s:
        s.execute(update(SignInThrottle).where(SignInThrottle.key == made_up).values(last_at=old))
    assert auth.login().status_code == 302
    with app.extensions["sfbridge"].store.session() as s:
        keys = set(s.scalars(select(SignInThrottle.key)))
    assert made_up not in keys
    assert throttle.account_key("another-made-up@example.com") in keys  # still counted


@pytest.mark.parametrize(
    "email", ["bell\x07@example.com", "x" * 5000 + "@example.com", "  ", "ünï@exämple.com"]
)
def test_odd_emails_are_refused_like_any_unknown_account(
    seeded_app: tuple[Flask, Seeded], email: str
) -> None:
    app, _ = seeded_app
    _c, auth = _browser(app)
    resp = auth.login(email, "a wrong guess")
    assert resp.status_code == 401
    assert "do not match an active account" in resp.text


def test_a_nul_in_the_sign_in_form_is_refused_before_any_lookup(
    seeded_app: tuple[Flask, Seeded],
) -> None:
    app, _ = seeded_app
    _c, auth = _browser(app)
    resp = auth.login("nul\x00@example.com", "a wrong guess")
    assert resp.status_code == 400 and "NUL character" in resp.text


def test_an_odd_forwarded_address_is_kept_short(
    store: Store, app_factory: Callable[..., Flask]
) -> None:
    seed(store)
    app = app_factory(store, TRUST_PROXY=True)
    client = app.test_client()
    auth = AuthActions(client)
    token = auth.csrf()
    forged = "x" * 3000 + "\x00"
    resp = client.post(
        "/auth/login",
        data={"email": "reviewer@example.com", "password": "wrong", "csrf_token": token},
        headers={"X-Forwarded-For": forged},
    )
    assert resp.status_code == 401
    ok = client.post(
        "/auth/login",
        data={"email": "reviewer@example.com", "password": PASSWORD, "csrf_token": token},
        headers={"X-Forwarded-For": "2001:DB8:0:0::1"},
    )
    assert ok.status_code == 302
    with store.session() as s:
        seen = list(
            s.scalars(select(AuditLog.object_id).where(AuditLog.object_type == "client_ip"))
        )
    assert seen[0].startswith("invalid:") and len(seen[0]) <= 64
    with store.session() as s:
        assert s.scalars(select(AuditLog.detail).where(AuditLog.action == "login")).one() == {
            "ip": "2001:db8::1"
        }
