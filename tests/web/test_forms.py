"""CSRF on every POST form, and no state change on any GET."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bridge.store.models import (
    ApiToken,
    AuditLog,
    Push,
    Referral,
    SalesEntry,
    SignInThrottle,
    User,
    WebSession,
)
from tests.web.conftest import AuthActions
from tests.web.seed import Seeded


def _ui_rules(app: Flask, method: str) -> list[Any]:
    return [
        r
        for r in app.url_map.iter_rules()
        if method in (r.methods or set()) and not r.rule.startswith(("/api/", "/static"))
    ]


def _url(rule: Any, seeded: Seeded) -> str:
    values = {
        "entry_id": seeded.ids["review_fuzzy"],
        "push_id": seeded.ids["push_failed"],
        "referral_id": seeded.ids["ref_bob"],
        "user_id": seeded.ids["reviewer"],
        "token_id": 1,
        "member_id": 1,
        "name": "acme",
        "outcome": "review",
    }
    url = rule.rule
    for arg in rule.arguments:
        url = re.sub(rf"<(?:\w+:)?{arg}>", str(values[arg]), url)
    return url


def _snapshot(app: Flask) -> dict[str, Any]:
    with app.extensions["sfbridge"].store.session() as s:
        return {
            "entries": s.execute(
                select(
                    SalesEntry.id, SalesEntry.outcome, SalesEntry.records, SalesEntry.referral_id
                ).order_by(SalesEntry.id)
            ).all(),
            "pushes": s.execute(select(Push.id, Push.state).order_by(Push.id)).all(),
            "referrals": s.execute(select(Referral.id, Referral.status)).all(),
            "users": s.execute(
                select(User.id, User.role, User.active, User.password_hash).order_by(User.id)
            ).all(),
            "sessions": s.execute(
                select(WebSession.id, WebSession.ended_at).order_by(WebSession.id)
            ).all(),
            "throttles": s.execute(select(SignInThrottle.key, SignInThrottle.attempts)).all(),
            "tokens": s.scalar(select(func.count(ApiToken.id))),
            "audit": s.execute(select(AuditLog.action).where(AuditLog.action != "login")).all(),
        }


def test_every_post_form_without_a_csrf_token_is_refused(app: Flask, seeded: Seeded) -> None:
    client = app.test_client()
    AuthActions(client).login("admin@example.com")
    before = _snapshot(app)
    rules = _ui_rules(app, "POST")
    assert len(rules) >= 12
    for rule in rules:
        url = _url(rule, seeded)
        for data in ({}, {"csrf_token": "forged"}, {"csrf_token": "forgéd"}):
            resp = client.post(
                url, data={**data, "action": "approve", "entry_id": seeded.ids["review_fuzzy"]}
            )
            assert resp.status_code == 400, url
            assert "without a valid security token" in resp.get_data(as_text=True), url
    assert _snapshot(app) == before


def test_every_rendered_post_form_carries_the_token(app: Flask, seeded: Seeded) -> None:
    client = app.test_client()
    auth = AuthActions(client)
    auth.login("admin@example.com")
    token = auth.csrf("/")
    pages = [
        "/",
        "/queue/review",
        "/queue/failed",
        f"/entries/{seeded.ids['review_fuzzy']}",
        f"/entries/{seeded.ids['failed']}?q=carol",
        "/reports/pushes",
        "/reports/entries",
        "/admin/users",
        "/admin/tokens",
        "/audit",
        "/account",
    ]
    forms = 0
    for page in pages:
        html = client.get(page).get_data(as_text=True)
        for form in re.findall(r"<form[^>]*method=\"post\".*?</form>", html, re.S):
            forms += 1
            assert f'name="csrf_token" value="{token}"' in form, (page, form[:120])
    assert forms >= 25


def test_no_get_changes_anything(app: Flask, seeded: Seeded) -> None:
    client = app.test_client()
    AuthActions(client).login("admin@example.com")
    before = _snapshot(app)
    for rule in _ui_rules(app, "GET"):
        client.get(_url(rule, seeded))
        client.get(_url(rule, seeded) + "?action=approve&entry_id=1&page=2")
    assert _snapshot(app) == before


@pytest.mark.parametrize("path", ["/entries/1/approve", "/entries/bulk", "/auth/logout"])
def test_actions_refuse_get(client: FlaskClient, auth: AuthActions, path: str) -> None:
    auth.login()
    assert client.get(path).status_code == 405
