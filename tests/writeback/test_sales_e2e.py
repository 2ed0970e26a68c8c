"""Sales and demos end to end against the local org (a real `sfbridge devorg` over HTTPS): the
account/contact cascade, the Opportunity of the cycle, its contact roles and line items."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from simple_salesforce import format_soql

from bridge.devorg.testing import DevOrg
from bridge.store import Store
from bridge.store.models import OrgConnection, Referral
from bridge.writeback import events, repush
from tests.writeback.test_e2e_devorg import PACKAGE_FIELD, Bridge, write_config

pytestmark = pytest.mark.e2e

SALES = {"opportunity_at_demo": True, "create_price_entries": True}


@pytest.fixture
def bridge(clean_devorg: DevOrg, sqlite_store: Store, tmp_path: Path) -> Iterator[Bridge]:
    if not PACKAGE_FIELD.exists():
        pytest.skip("the package's custom fields (force-app) are not in this checkout")
    path = write_config(tmp_path / "sfbridge.yaml", clean_devorg, {"sales": SALES})
    yield Bridge(sqlite_store, clean_devorg, path)


def record(bridge: Bridge, kind: str, referral_id: int, body: dict[str, Any]) -> int:
    at = datetime.fromisoformat(body["closed_at" if kind == "sale" else "at"])
    with bridge.store.session() as s:
        org = s.get(OrgConnection, bridge.connection_id)
        referral = s.get(Referral, referral_id)
        assert org is not None and referral is not None
        _event, push, _created = events.record(s, kind, org, referral, body, at)  # type: ignore[arg-type]
        return push.id


def query(bridge: Bridge, soql: str, *args: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in bridge.sales.query_all(format_soql(soql, *args))["records"]]


def sale(n: int, **over: Any) -> dict[str, Any]:
    return {
        "id": f"sale-{n}",
        "business_name": "Bluebird Bakery",
        "phone": "(415) 555-0100",
        "city": "Oakland",
        "closed_at": "2026-03-10T15:00:00+00:00",
        "items": [
            {"product_code": "GOLD", "quantity": "2", "unit_price": "500.00"},
            {"product_name": "Setup fee", "quantity": "1", "unit_price": "200.00"},
        ],
        **over,
    }


def test_a_demo_then_a_sale_make_one_account_contact_and_opportunity(bridge: Bridge) -> None:
    gold = bridge.sales.Product2.create({"Name": "Gold plan", "ProductCode": "GOLD"})["id"]
    bridge.sales.Product2.create({"Name": "Setup fee", "ProductCode": "SETUP"})
    rid = bridge.referral(1, last_name="Baker", phone="+1 415 555 0199", company="Bluebird Bakery")

    demo = record(
        bridge, "demo", rid, {"id": "demo-1", "state": "set", "at": "2026-03-05T17:00:00+00:00"}
    )
    assert bridge.send(demo).sent == [demo], bridge.push(demo).error_message
    [account] = query(bridge, "SELECT Id, Name, Phone FROM Account")
    [contact] = query(bridge, "SELECT Id, AccountId, LastName FROM Contact")
    [opp] = query(bridge, "SELECT Id, Name, StageName, CloseDate, AccountId FROM Opportunity")
    assert contact["AccountId"] == account["Id"] and opp["AccountId"] == account["Id"]
    assert (opp["Name"], opp["StageName"], opp["CloseDate"]) == (
        "Bluebird Bakery",
        "Qualification",
        "2026-03-05",
    )
    [role] = query(bridge, "SELECT ContactId, IsPrimary FROM OpportunityContactRole")
    assert role == {**role, "ContactId": contact["Id"], "IsPrimary": True}
    result = bridge.push(demo).payload["result"]
    assert result["account"]["action"] == "create"
    assert result["account"]["reason"] == "no account named so (no account has this phone)"

    first = record(bridge, "sale", rid, sale(1))
    assert bridge.send(first).sent == [first], bridge.push(first).error_message
    [opp] = query(bridge, "SELECT Id, StageName, IsWon, Amount FROM Opportunity")
    assert (opp["StageName"], opp["IsWon"]) == ("Closed Won", True)
    items = query(
        bridge,
        "SELECT Product2Id, Quantity, UnitPrice FROM OpportunityLineItem "
        "WHERE OpportunityId = {} ORDER BY UnitPrice DESC",
        opp["Id"],
    )
    assert [(i["Product2Id"], i["Quantity"], i["UnitPrice"]) for i in items][0] == (gold, 2, 500)
    assert len(items) == 2
    # the price book entries were missing and created (create_price_entries)
    assert len(query(bridge, "SELECT Id FROM PricebookEntry WHERE Product2Id = {}", gold)) == 1
    result = bridge.push(first).payload["result"]
    assert result["account"]["reason"] == "the referral's account"
    assert result["opportunity"]["action"] == "update"

    # a second sale of the same cycle updates the Opportunity (its items are added)
    second = record(
        bridge,
        "sale",
        rid,
        sale(2, items=[{"product_code": "GOLD", "quantity": "1", "unit_price": "450"}]),
    )
    assert bridge.send(second).sent == [second], bridge.push(second).error_message
    assert len(query(bridge, "SELECT Id FROM Opportunity")) == 1
    assert len(query(bridge, "SELECT Id FROM Account")) == 1
    assert len(query(bridge, "SELECT Id FROM Contact")) == 1
    assert len(query(bridge, "SELECT Id FROM OpportunityLineItem")) == 3
    assert bridge.referral_row(rid).sf_opportunity_id == opp["Id"]


def test_the_cascade_connects_existing_records_and_says_why(bridge: Bridge) -> None:
    bridge.sales.Product2.create({"Name": "Gold plan", "ProductCode": "GOLD"})
    bridge.sales.Product2.create({"Name": "Setup fee", "ProductCode": "SETUP"})
    known = bridge.sales.Account.create(
        {"Name": "Bluebird Bakery", "Phone": "415-555-0100", "BillingCity": "Oakland"}
    )["id"]
    bridge.sales.Account.create({"Name": "Bluebird Bakery", "Phone": "510 555 0000"})
    person = bridge.sales.Contact.create(
        {"AccountId": known, "LastName": "Baker", "Phone": "(415) 555-0199"}
    )["id"]
    rid = bridge.referral(2, last_name="Baker", phone="+14155550199")
    pid = record(
        bridge, "sale", rid, sale(1, contacts=[{"first_name": "Ann", "last_name": "Oven"}])
    )
    assert bridge.send(pid).sent == [pid], bridge.push(pid).error_message
    result = bridge.push(pid).payload["result"]
    assert (result["account"]["action"], result["account"]["record_id"]) == ("connect", known)
    assert result["account"]["reason"] == "one account by name"
    # the candidates are in Id order, which the org compares case-insensitively: not always
    # creation order, so the known Account is among them rather than first
    assert known in [c["Id"] for c in result["account"]["candidates"]]
    primary, other = result["people"]
    assert (primary["action"], primary["record_id"]) == ("connect", person)
    assert other["action"] == "create"
    assert len(query(bridge, "SELECT Id FROM Contact WHERE AccountId = {}", known)) == 2
    roles = query(bridge, "SELECT ContactId FROM OpportunityContactRole")
    assert {r["ContactId"] for r in roles} == {person, other["record_id"]}
    with bridge.store.session() as s:
        referral = s.get(Referral, rid)
        assert referral is not None
        assert (referral.sf_account_id, referral.sf_contact_id) == (known, person)


def test_a_missing_product_fails_the_push_before_anything_is_written(bridge: Bridge) -> None:
    rid = bridge.referral(3, last_name="Baker")
    pid = record(bridge, "sale", rid, sale(1))
    assert bridge.send(pid).failed == [pid]
    push = bridge.push(pid)
    assert push.error_code == "product_not_found"
    assert "item 1: no Product2 with ProductCode 'GOLD'" in (push.error_message or "")
    assert query(bridge, "SELECT Id FROM Account") == []

    # the products added, a repush (with a field override) sends it
    bridge.sales.Product2.create({"Name": "Gold plan", "ProductCode": "GOLD"})
    bridge.sales.Product2.create({"Name": "Setup fee", "ProductCode": "SETUP"})
    with bridge.store.session() as s:
        repush(s, pid, actor="test", fields={"Description": "after the catalogue fix"})
    assert bridge.send(pid).sent == [pid], bridge.push(pid).error_message
    [opp] = query(bridge, "SELECT StageName, Description FROM Opportunity")
    assert opp == {**opp, "StageName": "Closed Won", "Description": "after the catalogue fix"}
    assert len(query(bridge, "SELECT Id FROM OpportunityLineItem")) == 2


def test_a_demo_with_a_lead_converts_it_into_a_contact_of_the_account(bridge: Bridge) -> None:
    lead = bridge.sales.Lead.create(
        {"LastName": "Baker", "Company": "Bluebird Bakery", "Phone": "415 555 0199"}
    )["id"]
    rid = bridge.referral(4, last_name="Baker", company="Bluebird Bakery", sf_lead_id=lead)
    pid = record(
        bridge,
        "demo",
        rid,
        {
            "id": "demo-4",
            "state": "set",
            "phone": "415 555 0100",
            "at": "2026-03-05T17:00:00+00:00",
        },
    )
    assert bridge.send(pid).sent == [pid], bridge.push(pid).error_message
    [converted] = query(
        bridge,
        "SELECT IsConverted, ConvertedContactId, ConvertedAccountId, "
        "ConvertedOpportunityId FROM Lead WHERE Id = {}",
        lead,
    )
    [account] = query(bridge, "SELECT Id FROM Account")
    [contact] = query(bridge, "SELECT Id, AccountId FROM Contact")
    [opp] = query(bridge, "SELECT Id, AccountId FROM Opportunity")  # ours, not the conversion's
    assert converted["IsConverted"] is True
    assert converted["ConvertedContactId"] == contact["Id"]
    assert converted["ConvertedAccountId"] == account["Id"] == contact["AccountId"]
    assert converted["ConvertedOpportunityId"] is None and opp["AccountId"] == account["Id"]
    primary = bridge.push(pid).payload["result"]["people"][0]
    assert (primary["action"], primary["record_id"], primary["lead_id"]) == (
        "convert",
        contact["Id"],
        lead,
    )
    row = bridge.referral_row(rid)
    assert (row.sf_lead_id, row.sf_contact_id, row.sf_account_id) == (
        lead,
        contact["Id"],
        account["Id"],
    )
    [role] = query(bridge, "SELECT ContactId FROM OpportunityContactRole")
    assert role["ContactId"] == contact["Id"]


def test_a_lead_that_cannot_be_converted_fails_the_demo_with_salesforce_s_reason(
    bridge: Bridge,
) -> None:
    bridge.configure({"sales": {**SALES, "converted_status": "Done"}})
    lead = bridge.sales.Lead.create({"LastName": "Baker", "Company": "Bluebird Bakery"})["id"]
    rid = bridge.referral(5, last_name="Baker", company="Bluebird Bakery", sf_lead_id=lead)
    pid = record(
        bridge, "demo", rid, {"id": "demo-5", "state": "set", "at": "2026-03-05T17:00:00+00:00"}
    )
    assert bridge.send(pid).failed == [pid]
    push = bridge.push(pid)
    assert push.error_code == "INVALID_STATUS" and "Done" in (push.error_message or "")
    assert query(bridge, "SELECT Id FROM Contact") == []


def test_the_rep_owns_what_the_sale_creates_through_the_user_mapping(bridge: Bridge) -> None:
    sales_user = bridge.devorg.user("sales")
    bridge.configure(
        {"sales": SALES},
        users={
            "rep-by-email": {"email": sales_user["username"].upper()},
            "rep-by-id": {"salesforce_id": sales_user["id"]},
            "rep-gone": {"email": "nobody@example.com"},
        },
    )
    bridge.sales.Product2.create({"Name": "Gold plan", "ProductCode": "GOLD"})
    bridge.sales.Product2.create({"Name": "Setup fee", "ProductCode": "SETUP"})
    rid = bridge.referral(6, last_name="Baker")
    pid = record(bridge, "sale", rid, sale(1, owner="rep-by-email"))
    other = record(
        bridge,
        "sale",
        bridge.referral(7, last_name="Oven"),
        sale(2, owner="rep-gone", business_name="Oven Works", phone="510 555 0101"),
    )
    assert sorted(bridge.send(pid, other).sent) == [pid, other]
    owned = query(bridge, "SELECT OwnerId FROM Account WHERE Name = 'Bluebird Bakery'")
    assert owned == [{**owned[0], "OwnerId": sales_user["id"]}]
    [opp] = query(bridge, "SELECT OwnerId FROM Opportunity WHERE Name = 'Bluebird Bakery'")
    assert opp["OwnerId"] == sales_user["id"]
    assert bridge.push(pid).payload["result"]["owner"]["user_id"] == sales_user["id"]
    gone = bridge.push(other).payload["result"]["owner"]
    assert gone == {
        "rep": "rep-gone",
        "user_id": None,
        "reason": "rep-gone: no Salesforce user has the email nobody@example.com",
    }
    [theirs] = query(bridge, "SELECT OwnerId FROM Account WHERE Name = 'Oven Works'")
    assert theirs["OwnerId"] == bridge.devorg.user("integration")["id"]  # Salesforce's default


def test_org_check_reports_the_user_mapping(bridge: Bridge) -> None:
    from bridge.writeback import routecheck
    from bridge.writeback.client import OrgWriter

    sales_user = bridge.devorg.user("sales")
    bridge.configure(
        {}, users={"ann": {"email": sales_user["username"]}, "gone": {"email": "x@example.com"}}
    )
    found, _mapping = routecheck.check_routing(OrgWriter.for_org(bridge.org), bridge.org_config)
    users = {f.subject: (f.status, f.reason) for f in found if f.check == "user"}
    assert users == {
        "ann": ("Ok", f"active Salesforce user {sales_user['id']}"),
        "gone": ("Issue", "no Salesforce user has the email x@example.com"),
    }
