"""PATCH /referrals/{id} and /members/{id} on SQLite and PostgreSQL: validated, audited, the
field history kept, and pushes queued for exactly the fields whose sync rule sends them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from bridge.store import Store
from bridge.store.models import AuditLog, Push, Referral
from bridge.vocabulary import SCOPES
from tests.web.apitools import check, check_error
from tests.web.seed import CONFIG_YAML, seed, token

pytestmark = pytest.mark.postgres

WRITEBACK = """\
    writeback:
      objects:
        Lead:
          fields:
            - {local: company, salesforce: Company, sync: ours}
            - {local: title, salesforce: [Title, Job_Title__c], sync: read_write}
            - {local: plan, salesforce: Plan__c, sync: read_only}
            - {local: website, salesforce: Website, sync: salesforce_unless_blank}
            - {local: phone, salesforce: Phone, sync: none}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "sfbridge.yaml"
    path.write_text(CONFIG_YAML + WRITEBACK, encoding="utf-8")
    return path


class Client:
    def __init__(self, app: Flask, tok: str) -> None:
        self.client = app.test_client()
        self.headers = {"Authorization": f"Bearer {tok}"}

    def patch(self, path: str, json: Any) -> Any:
        return self.client.patch("/api/v1" + path, json=json, headers=self.headers)

    def get(self, path: str) -> Any:
        return self.client.get("/api/v1" + path, headers=self.headers)


@pytest.fixture
def setup(store: Store, app_factory: Callable[..., Flask]) -> tuple[Client, Store, dict[str, int]]:
    seeded = seed(store)
    with store.session() as s:
        bob = s.get(Referral, seeded.ids["ref_bob"])
        assert bob is not None
        bob.sf_lead_id = "00Q000000000001AAA"  # written to Salesforce before
        for name in ("ref_carol", "ref_dan"):  # never written
            other = s.get(Referral, seeded.ids[name])
            assert other is not None
            other.sf_lead_id = other.sf_contact_id = None
    client = Client(app_factory(store), token(store, list(SCOPES)))
    return client, store, seeded.ids


def pushes_for(store: Store, referral_id: int) -> list[Push]:
    with store.session() as s:
        return list(
            s.scalars(
                select(Push)
                .where(Push.referral_id == referral_id, Push.kind == "field_update")
                .order_by(Push.id)
            )
        )


def test_a_referral_edit_pushes_the_fields_whose_rule_sends_them(
    setup: tuple[Client, Store, dict[str, int]],
) -> None:
    client, store, ids = setup
    body = check(
        client.patch(
            f"/referrals/{ids['ref_bob']}",
            {
                "company": "Bob Ltd",  # ours: sent
                "phone": "+1 555 0100",  # none: kept here only
                "fields": {"title": "CTO", "plan": "gold", "website": "bob.test"},
            },
        ),
        200,
        "ReferralUpdated",
    )
    assert body["company"] == "Bob Ltd" and body["fields"]["title"] == "CTO"
    [push] = pushes_for(store, ids["ref_bob"])
    assert push.state == "pending" and push.sobject_type == "Lead"
    assert push.payload["record_id"] == "00Q000000000001AAA"
    # read_only (plan) and none (phone) never go out; salesforce_unless_blank goes into the
    # field not seen filled in Salesforce; read_write into each of its fields
    assert push.payload["fields"] == {
        "Company": "Bob Ltd",
        "Title": "CTO",
        "Job_Title__c": "CTO",
        "Website": "bob.test",
    }
    assert [p["id"] for p in body["pushes"]] == [push.id]
    detail = check(client.get(f"/referrals/{ids['ref_bob']}"), 200, "ReferralDetail")
    changed = {(h["field"], h["source"], h["outcome"], h["value"]) for h in detail["history"]}
    assert ("company", "local", "applied", "Bob Ltd") in changed
    assert ("title", "local", "applied", "CTO") in changed
    with store.session() as s:
        [audit] = s.scalars(select(AuditLog).where(AuditLog.action == "referral.update"))
        assert audit.detail["push_ids"] == [push.id]
        assert audit.detail["fields"] == ["company", "phone", "plan", "title", "website"]


def test_the_same_value_again_changes_nothing_and_a_value_set_back_is_pushed_again(
    setup: tuple[Client, Store, dict[str, int]],
) -> None:
    client, store, ids = setup
    path = f"/referrals/{ids['ref_bob']}"
    check(client.patch(path, {"company": "A"}), 200, "ReferralUpdated")
    body = check(client.patch(path, {"company": "A"}), 200, "ReferralUpdated")
    assert body["pushes"] == []
    check(client.patch(path, {"company": "B"}), 200, "ReferralUpdated")
    check(client.patch(path, {"company": "A"}), 200, "ReferralUpdated")
    assert [p.payload["fields"]["Company"] for p in pushes_for(store, ids["ref_bob"])] == [
        "A",
        "B",
        "A",
    ]


def test_a_referral_without_a_salesforce_record_is_edited_without_pushes(
    setup: tuple[Client, Store, dict[str, int]],
) -> None:
    client, store, ids = setup
    body = check(
        client.patch(f"/referrals/{ids['ref_carol']}", {"company": "Carol Co"}),
        200,
        "ReferralUpdated",
    )
    assert body["pushes"] == [] and body["company"] == "Carol Co"


def test_a_member_edit_updates_the_member_fields_on_its_referrals_records(
    setup: tuple[Client, Store, dict[str, int]],
) -> None:
    client, store, ids = setup
    body = check(
        client.patch(f"/members/{ids['member']}", {"email": "alice@new.test", "name": "Alice N"}),
        200,
        "MemberUpdated",
    )
    assert body["email"] == "alice@new.test"
    [push] = pushes_for(store, ids["ref_bob"])  # the only referral with a Salesforce record
    assert push.payload["fields"] == {
        "Referring_Member_Email__c": "alice@new.test",
        "Referring_Member_Name__c": "Alice N",
    }
    detail = check(client.get(f"/referrals/{ids['ref_carol']}"), 200, "ReferralDetail")
    assert {h["field"] for h in detail["history"]} == {"member.email", "member.name"}
    check(client.get(f"/members/{ids['member']}"), 200, "Member")


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "fields"),
    [
        ("/referrals/{ref}", {}, 400, "validation_error", None),
        ("/referrals/{ref}", {"fields": {}}, 400, "validation_error", None),
        ("/referrals/{ref}", {"email": "not-an-email"}, 400, "validation_error", ["email"]),
        ("/referrals/{ref}", {"last_name": None}, 400, "validation_error", ["last_name"]),
        ("/referrals/{ref}", {"status": "approved"}, 400, "validation_error", ["status"]),
        ("/referrals/{ref}", {"company": "x" * 256}, 400, "validation_error", ["company"]),
        ("/referrals/999999", {"company": "x"}, 404, "not_found", None),
        ("/members/{member}", {"referral_code": "NEW"}, 400, "validation_error", None),
        ("/members/{member}", {"url": "ftp://x"}, 400, "validation_error", ["url"]),
        ("/members/999999", {"name": "x"}, 404, "not_found", None),
    ],
)
def test_bad_edits_are_json_errors(
    setup: tuple[Client, Store, dict[str, int]],
    path: str,
    body: Any,
    status: int,
    code: str,
    fields: list[str] | None,
) -> None:
    client, _store, ids = setup
    url = path.format(ref=ids["ref_bob"], member=ids["member"])
    check_error(client.patch(url, body), status, code, fields)
