"""`POST /sales` and `POST /demos` on SQLite and PostgreSQL: stored with a pending push before
anything is sent, idempotent by the client's id, bad input a clear 4xx."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from bridge.store import Store
from bridge.store.models import Demo, Push, Referral, Sale
from bridge.vocabulary import SCOPES
from tests.web.apitools import check, check_error
from tests.web.seed import CONFIG_YAML, seed, token
from tests.web.test_api import Api

pytestmark = pytest.mark.postgres


@pytest.fixture
def api(store: Store, app_factory: Callable[..., Flask]) -> Api:
    seeded = seed(store)
    app = app_factory(store)
    return Api(app, app.test_client(), seeded, token(store, list(SCOPES)), store)


def _referral_id(api: Api) -> int:
    body = check(api.get("/referrals?limit=1"), 200, "ReferralList")
    return int(body["data"][0]["id"])


def _sale(api: Api, **over: Any) -> dict[str, Any]:
    return {
        "org": "acme",
        "id": "sale-1",
        "referral_id": _referral_id(api),
        "business_name": "Bluebird Bakery",
        "phone": "(415) 555-0100",
        "city": "Oakland",
        "state": "CA",
        "amount": 1200.5,
        "closed_at": "2026-03-02T15:00:00Z",
        "items": [
            {"product_code": "GOLD", "quantity": 2, "unit_price": 500},
            {"product_name": "Setup fee", "quantity": 1, "unit_price": 200.5},
        ],
        "contacts": [{"first_name": "Ann", "last_name": "Baker", "phone": "415 555 0111"}],
        "locations": ["Oakland", "Berkeley"],
        **over,
    }


def test_a_sale_is_stored_with_its_push_and_is_idempotent_by_its_id(api: Api) -> None:
    sale = _sale(api)
    first = check(api.post("/sales", sale), 201, "SaleRecorded")
    push = first["push"]
    assert push["kind"] == "sale" and push["state"] == "pending"
    assert push["referral_id"] == sale["referral_id"]
    assert first["sale"]["id"] == "sale-1" and first["sale"]["items"][0]["product_code"] == "GOLD"
    with api.store.session() as s:
        saved = s.scalar(select(Sale).where(Sale.client_id == "sale-1"))
        assert saved is not None and saved.push_id == push["id"]
        assert saved.closed_at.isoformat() == "2026-03-02T15:00:00+00:00"
        assert s.get(Push, push["id"]).payload == {
            "event_id": saved.id,
            "client_id": "sale-1",
        }  # type: ignore[union-attr]

    again = check(api.post("/sales", sale), 200, "SaleRecorded")
    assert again["push"]["id"] == push["id"] and again["sale"] == first["sale"]
    check_error(api.post("/sales", {**sale, "amount": 99}), 409, "id_conflict", ["id"])
    with api.store.session() as s:
        assert s.scalar(select(func.count()).select_from(Sale)) == 1
        assert s.scalar(select(func.count()).select_from(Push).where(Push.kind == "sale")) == 1


def test_bad_sales_get_clear_errors(api: Api) -> None:
    check_error(
        api.post("/sales", _sale(api, items=[{"quantity": 1, "unit_price": 1}])),
        400,
        "validation_error",
        ["items.0"],
    )
    check_error(
        api.post(
            "/sales", _sale(api, items=[{"product_code": "A", "quantity": 0, "unit_price": 1}])
        ),
        400,
        "validation_error",
        ["items.0.quantity"],
    )
    check_error(api.post("/sales", _sale(api, amount=-1)), 400, "validation_error", ["amount"])
    check_error(
        api.post("/sales", _sale(api, closed_at="soon")), 400, "validation_error", ["closed_at"]
    )
    check_error(api.post("/sales", _sale(api, org="zzz")), 422, "unknown_org", ["org"])
    check_error(
        api.post("/sales", _sale(api, referral_id=999999)), 422, "unknown_referral", ["referral_id"]
    )
    check_error(api.post("/sales", _sale(api, extra=1)), 400, "validation_error", ["extra"])
    check_error(
        api.post("/sales", _sale(api, locations=["Pier 39", "  "])),
        400,
        "validation_error",
        ["locations.1"],
    )
    check_error(
        api.post("/sales", _sale(api, business_name="x" * 300)),
        400,
        "validation_error",
        ["business_name"],
    )
    with api.store.session() as s:
        assert s.scalar(select(func.count()).select_from(Sale)) == 0


def test_demos_set_rescheduled_cancelled(api: Api) -> None:
    demo = {
        "org": "acme",
        "id": "demo-1",
        "referral_id": _referral_id(api),
        "state": "set",
        "at": "2026-03-05T17:00:00Z",
    }
    first = check(api.post("/demos", demo), 201, "DemoRecorded")
    assert first["push"]["kind"] == "demo"
    assert check(api.post("/demos", demo), 200, "DemoRecorded")["push"]["id"] == first["push"]["id"]
    moved = {**demo, "id": "demo-2", "state": "rescheduled", "at": "2026-03-06T17:00:00Z"}
    check(api.post("/demos", moved), 201, "DemoRecorded")
    check_error(api.post("/demos", {**demo, "state": "moved"}), 400, "validation_error", ["state"])
    check_error(api.post("/demos", {**demo, "at": "2026-03-07T17:00:00Z"}), 409, "id_conflict")
    with api.store.session() as s:
        states = list(s.scalars(select(Demo.state).order_by(Demo.id)))
    assert states == ["set", "rescheduled"]


def test_sales_need_the_sales_scope(api: Api) -> None:
    other = token(api.store, ["activities:write"])
    check_error(api.post("/sales", _sale(api), headers=api.h(other)), 403, "insufficient_scope")


def test_the_pushes_report_explains_a_sale(api: Api) -> None:
    from tests.web.conftest import AuthActions

    push_id = check(api.post("/sales", _sale(api)), 201, "SaleRecorded")["push"]["id"]
    with api.store.session() as s:
        push = s.get(Push, push_id)
        assert push is not None
        push.state = "failed"
        push.error_code = "product_not_found"
        push.payload = {
            **push.payload,
            "result": {
                "account": {
                    "action": "connect",
                    "record_id": "001000000000001AAA",
                    "reason": "one account by name",
                    "candidates": [
                        {
                            "Id": "001000000000001AAA",
                            "Name": "Bluebird Bakery",
                            "Phone": "415-555-0100",
                            "BillingCity": "Oakland",
                        }
                    ],
                },
                "people": [
                    {
                        "action": "create",
                        "record_id": None,
                        "reason": "no contact of that last name (no contact has this phone)",
                    }
                ],
                "organization": {
                    "action": "update",
                    "record_id": "a01000000000001AAA",
                    "reason": "the account's organization",
                },
                "sites": [
                    {
                        "location": "Pier 39",
                        "key": "k1",
                        "action": "create",
                        "record_id": "a02000000000001AAA",
                        "reason": "a new location of the account",
                    },
                    {"location": "9 Bay Rd", "key": "k2"},
                ],
            },
        }
    auth = AuthActions(api.client)
    auth.login("admin@example.com")
    html = api.client.get("/reports/pushes?kind=sale").get_data(as_text=True)
    assert "sale <code>sale-1</code>" in html
    assert (
        "Account: <strong>connected</strong> <code>001000000000001AAA</code> — one account by name"
        in html
    )
    assert "Bluebird Bakery 415-555-0100 Oakland" in html
    assert "Contact: <strong>created</strong> — no contact of that last name" in html
    assert (
        "Organization: <strong>updated</strong> <code>a01000000000001AAA</code> — the account's "
        "organization" in html.replace("&#39;", "'")
    )
    assert (
        "Site Pier 39: <strong>created</strong> <code>a02000000000001AAA</code> — a new location"
        in html
    )
    assert "Site 9 Bay Rd: <strong>not written</strong>" in html
    assert f'action="/reports/pushes/{push_id}/repush"' in html


def test_a_demos_rep_owns_the_person_and_its_lead_gets_the_owner(
    store: Store, app_factory: Callable[..., Flask], config_file: Path
) -> None:
    config_file.write_text(CONFIG_YAML + "    users:\n      sally: {email: sally@acme.example}\n")
    seeded = seed(store)
    rid = seeded.ids["ref_carol"]  # already a Lead in Salesforce
    app = app_factory(store)
    api = Api(app, app.test_client(), seeded, token(store, list(SCOPES)), store)
    demo = {"org": "acme", "id": "demo-o", "referral_id": rid, "state": "set",
            "at": "2026-03-05T17:00:00Z", "owner": "sally"}  # fmt: skip
    check(api.post("/demos", demo), 201, "DemoRecorded")
    with store.session() as s:
        assert s.get(Referral, rid).owner == "sally"  # type: ignore[union-attr]
        [update] = s.scalars(
            select(Push).where(Push.referral_id == rid, Push.kind == "field_update")
        )
        assert update.sobject_type == "Lead" and update.payload["owner"] == "sally"
    check(api.post("/demos", demo), 200, "DemoRecorded")  # the same demo again: nothing new
    with store.session() as s:
        kinds = list(s.scalars(select(Push.kind).where(Push.referral_id == rid)))
    assert kinds.count("field_update") == 1
