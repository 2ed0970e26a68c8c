"""The bridge against the local org in strict mode: an org set up like a customer's (validation
rules, duplicate rules, field-level security, automation after save, row locks).

Every failure strict mode provokes must end as a saved push or entry with Salesforce's code
and message, in the class that decides what happens next (permanent: a person fixes and
repushes; transient: sent again), and a repush after the fix must go through. Real parts: the
local org over HTTPS, the bridge connected with the JWT flow; the inbound case runs
`sfbridge stream` and `sfbridge worker` as processes with Redis and SQLite.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from bridge.config import load_config
from bridge.devorg.testing import DevOrg
from bridge.orgs import jwt_credentials, read_private_key
from bridge.salesforce.connection import connect
from bridge.store import Store
from bridge.store.models import InboundEvent, Program, Referral, SalesEntry
from bridge.writeback import repush
from bridge.writeback.client import OrgWriter
from bridge.writeback.sender import send
from tests.harness import ORG
from tests.harness import Bridge as InboundBridge
from tests.services import wait_for
from tests.writeback.test_e2e_devorg import PACKAGE_FIELD, Bridge, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PHONE_REQUIRED = {
    "object": "Lead",
    "name": "Referred_Lead_Needs_Phone",
    "formula": "AND(NOT(ISBLANK(Referral_ID__c)), ISBLANK(Phone))",
    "message": "A referred lead needs a phone number, so that sales can call.",
    "error_field": "Phone",
}


@pytest.fixture
def bridge(clean_devorg: DevOrg, sqlite_store: Store, tmp_path: Path) -> Iterator[Bridge]:
    if not PACKAGE_FIELD.exists():
        pytest.skip("the package's custom fields (force-app) are not in this checkout")
    yield Bridge(sqlite_store, clean_devorg, write_config(tmp_path / "sfbridge.yaml", clean_devorg))


def strict(org: DevOrg, **config: Any) -> None:
    org.control("strict", config)


def repush_after_fix(bridge: Bridge, push_id: int) -> None:
    with bridge.store.session() as s:
        repush(s, push_id, actor="admin@example.com")
    report = bridge.send(push_id)
    assert report.sent == [push_id], bridge.push(push_id).error_message


def test_a_validation_rule_fails_the_push_until_the_referral_is_fixed(bridge: Bridge) -> None:
    strict(bridge.devorg, validation_rules=[PHONE_REQUIRED])
    rid = bridge.referral(1)  # no phone
    pid = bridge.queue_referral(rid)
    assert bridge.send(pid).failed == [pid]
    push = bridge.push(pid)
    assert (push.state, push.error_class, push.error_code) == (
        "failed",
        "permanent",
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
    )
    assert push.error_message == "A referred lead needs a phone number, so that sales can call."
    assert push.error_fields == ["Phone"]
    assert bridge.leads("rita1@example.com") == []

    with bridge.store.session() as s:
        s.get(Referral, rid).phone = "+1 415 555 0100"  # type: ignore[union-attr]
    repush_after_fix(bridge, pid)
    [lead] = bridge.leads("rita1@example.com")
    assert lead["Referral_ID__c"] == "ref_e2e_1"


def test_a_duplicate_rule_fails_a_contact_that_duplicates_a_lead(bridge: Bridge) -> None:
    """The bridge looks for an existing Contact before creating one; Salesforce's standard
    contact rule also matches Leads, which the bridge does not look at."""
    strict(bridge.devorg)  # the standard duplicate rules, as in every new org
    bridge.configure({"referral_add": {"create_as": "Contact", "on_existing_email": "update"}})
    lead = bridge.sales.Lead.create({"LastName": "Known", "Company": "Initech",
                                     "Email": "rita1@example.com"})["id"]  # fmt: skip
    pid = bridge.queue_referral(bridge.referral(1))
    assert bridge.send(pid).failed == [pid]
    push = bridge.push(pid)
    assert (push.state, push.error_class, push.error_code) == (
        "failed",
        "permanent",
        "DUPLICATES_DETECTED",
    )
    assert push.error_message == "Use one of these records?"

    # the admin converts the lead: the contact it becomes is the one the repush updates
    converted = bridge.devorg.control("convert-lead", {"lead_id": lead})
    repush_after_fix(bridge, pid)
    assert bridge.push(pid).sf_id == converted["contactId"]
    contact = bridge.sales.Contact.get(converted["contactId"])
    assert contact["Referral_ID__c"] == "ref_e2e_1"


def test_a_field_the_integration_user_cannot_edit_fails_until_access_is_granted(
    bridge: Bridge,
) -> None:
    security = {"integration": {"read_only": ["Lead.Referral_Source__c"]}}
    strict(bridge.devorg, field_security=security)
    rid = bridge.referral(1, fields={"source": "Newsletter"})
    pid = bridge.queue_referral(rid)
    assert bridge.send(pid).failed == [pid]
    push = bridge.push(pid)
    assert (push.state, push.error_class, push.error_code, push.error_fields) == (
        "failed",
        "permanent",
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        ["Referral_Source__c"],
    )
    assert "Referral_Source__c" in (push.error_message or "")

    strict(bridge.devorg)  # the admin grants edit access on the field
    repush_after_fix(bridge, pid)
    assert bridge.leads("rita1@example.com")[0]["Referral_Source__c"] == "Newsletter"


def test_two_writers_on_one_account_lock_a_row_and_the_retry_succeeds(bridge: Bridge) -> None:
    strict(bridge.devorg, duplicate_rules="off", row_locks={"window_ms": 4000})
    bridge.configure(
        {
            "referral_add": {"create_as": "Contact"},
            "objects": {"Account": {"dedupe": "root_domain", "sync_mode": "create_update"}},
        }
    )
    account = bridge.sales.Account.create({"Name": "Foo", "Website": "https://foo.example"})["id"]
    first = bridge.queue_referral(bridge.referral(1, email="ann@foo.example"))
    second = bridge.queue_referral(bridge.referral(2, email="bob@foo.example"))
    # a second worker: its own connection, as another process would have
    key = read_private_key(bridge.devorg.info["jwt_private_key_path"])
    other = OrgWriter.for_org(connect(jwt_credentials("acme", bridge.org_config, key)))

    reports: list[Any] = []
    worker = threading.Thread(target=lambda: reports.append(bridge.send(first)))
    worker.start()
    try:
        wait_for(
            lambda: account in bridge.devorg.control("strict", method="GET")["locks"],
            20,
            what="the first worker to lock the account",
        )
        report = send(bridge.store, other, bridge.org_config, [second])
    finally:
        worker.join(60)
    assert reports[0].sent == [first]
    assert report.retry == [second]
    push = bridge.push(second)
    assert (push.state, push.error_class, push.error_code) == (
        "pending",
        "transient",
        "UNABLE_TO_LOCK_ROW",
    )
    assert account in (push.error_message or "")
    # the retry, once the first transaction is over, goes through
    assert bridge.send(second).sent == [second]
    contacts = bridge.sales.query_all(
        f"SELECT Email FROM Contact WHERE AccountId = '{account}' ORDER BY Email"
    )["records"]
    assert [c["Email"] for c in contacts] == ["ann@foo.example", "bob@foo.example"]


# ---- inbound ----------------------------------------------------------------------------------

RECEIVER = {
    "program": "main",
    "status_rules": [
        {"status": "qualified", "object": "Lead", "field": "Status", "op": "equals",
         "value": "Working - Contacted"},
    ],
    "target_match": {"direct_fields": ["Lead.Referral_ID__c"], "fuzzy": False},
    "member_match": {"referral_code": [], "member_email": [], "member_external_id": []},
    "process": {"auto_process_direct": True, "review_when_no_member": False},
}  # fmt: skip


@pytest.fixture
def inbound(clean_devorg: DevOrg, redis_url: str, tmp_path: Path) -> Iterator[InboundBridge]:
    b = InboundBridge(tmp_path / "bridge", clean_devorg, redis_url, topics=["SFB_Lead"])
    config: dict[str, Any] = yaml.safe_load(b.config_path.read_text())
    config["orgs"][ORG]["receiver"] = RECEIVER
    b.config_path.write_text(yaml.safe_dump(config))
    b.config = load_config(str(b.config_path))
    b.install()
    with b.store.session() as session:
        program = Program(key="main", name="Main")
        session.add(program)
        session.flush()
        session.add(Referral(public_id="REF-OWN", program_id=program.id, first_name="Oona",
                             last_name="Own", email="oona@own.test"))  # fmt: skip
    yield b
    b.close()


def test_automation_after_the_bridges_own_write_is_not_its_own_write(
    inbound: InboundBridge,
) -> None:
    """A lead the integration user creates sets off a flow in the same save (run as the saving
    user) and one started by a platform event (run as the Automated Process user, in its own
    transaction a moment later). The bridge skips its own save, counts the flow's notification
    as the same change (the same record and SystemModstamp), and processes the Automated
    Process user's change as the org's change it is."""
    strict(
        inbound.org,
        automation=[
            {"kind": "update_field", "object": "Lead", "field": "Rating", "value": "Warm",
             "name": "Rate_Referred_Leads", "when": "NOT(ISBLANK(Referral_ID__c))"},
            {"kind": "update_field", "object": "Lead", "field": "Status",
             "value": "Working - Contacted", "run_as": "automated_process", "delay_ms": 500,
             "name": "Qualify_Referred_Leads", "when": "NOT(ISBLANK(Referral_ID__c))"},
        ],
    )  # fmt: skip
    inbound.start("stream", "stream")
    wait_for(
        lambda: "subscribed to /topic/SFB_Lead" in inbound.log("stream"),
        20,
        what="the subscriber to subscribe",
    )
    inbound.start("worker", "worker")
    lead = inbound.org.sf("integration").Lead.create(
        {"LastName": "Own", "Company": "Acme", "Email": "oona@own.test",
         "Referral_ID__c": "REF-OWN"}
    )["id"]  # fmt: skip

    def entries() -> list[tuple[str, list[str], str | None]]:
        with inbound.store.session() as session:
            rows = session.execute(
                select(SalesEntry.outcome, SalesEntry.reasons, InboundEvent.payload)
                .join(InboundEvent, SalesEntry.inbound_event_id == InboundEvent.id)
                .where(SalesEntry.record_id == lead, SalesEntry.outcome != "new")
                .order_by(InboundEvent.id)
            ).all()
        return [(o, list(r or []), _author(p)) for o, r, p in rows]

    found = wait_for(
        lambda: e if len(e := entries()) >= 2 else None,
        60,
        what="an entry for the save and for each automated change",
        on_timeout=lambda: f"{entries()}\n--- worker\n{inbound.log('worker')[-3000:]}",
    )
    integration = inbound.org.user("integration")["id"]
    automated = inbound.org.control("strict", method="GET")["automated_process_user_id"]
    assert [(o, a) for o, _r, a in found] == [
        ("skipped", integration),  # the bridge's create (and the flow's)
        ("processed", automated),  # the Automated Process user's
    ]
    assert found[0][1] == ["own_write"]
    assert "direct_match" in found[1][1] and "status_rule:0" in found[1][1]
    with inbound.store.session() as session:
        referral = session.scalars(select(Referral).where(Referral.public_id == "REF-OWN")).one()
        assert referral.status == "qualified"


def _author(payload: Any) -> str | None:
    """LastModifiedById of the record in a stored PushTopic event."""
    data = (payload or {}).get("data", payload or {})
    sobject = data.get("sobject") if isinstance(data, dict) else None
    return (sobject or {}).get("LastModifiedById")


def test_a_field_hidden_from_the_integration_user_fails_the_entry_with_the_reason(
    inbound: InboundBridge,
) -> None:
    """The permission set lost a field the receiver reads: events arrive without it, the
    bridge asks for it, Salesforce answers INVALID_FIELD, and the entry is saved as failed
    with that reason instead of being decided on half the record."""
    config: dict[str, Any] = yaml.safe_load(inbound.config_path.read_text())
    config["orgs"][ORG]["receiver"]["member_match"]["referral_code"] = ["Lead.Referral_Code__c"]
    inbound.config_path.write_text(yaml.safe_dump(config))
    inbound.config = load_config(str(inbound.config_path))
    sf = inbound.org.sf("integration")
    for topic in sf.query("SELECT Id FROM PushTopic WHERE Name = 'SFB_Lead'")["records"]:
        sf.PushTopic.delete(topic["Id"])
    inbound.ensure_topics()  # the topic selects the field: the admin set it up with access
    strict(inbound.org, field_security={"integration": {"hidden": ["Lead.Referral_Code__c"]}})
    inbound.start("stream", "stream")
    wait_for(
        lambda: "subscribed to /topic/SFB_Lead" in inbound.log("stream"),
        20,
        what="the subscriber to subscribe",
    )
    inbound.start("worker", "worker")
    lead = inbound.org.sf("sales").Lead.create(
        {"LastName": "Coded", "Company": "Acme", "Referral_Code__c": "CODE-1"}
    )["id"]

    def entry() -> SalesEntry | None:
        with inbound.store.session() as session:
            return session.scalars(
                select(SalesEntry).where(SalesEntry.record_id == lead, SalesEntry.outcome != "new")
            ).first()

    found = wait_for(
        entry,
        60,
        what="the entry of the change",
        on_timeout=lambda: inbound.log("worker")[-3000:],
    )
    assert (found.outcome, found.reasons) == ("failed", ["INVALID_FIELD"]), found.error
    assert "Referral_Code__c" in (found.error or "")
