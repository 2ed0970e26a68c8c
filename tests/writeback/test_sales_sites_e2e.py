"""The multi-site sync end to end against the local org: a sale's locations become the
package's SFBridge_Site__c records under one SFBridge_Organization__c per Account."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.devorg.testing import DevOrg
from bridge.store import Store
from bridge.writeback import repush
from tests.writeback.test_e2e_devorg import PACKAGE_FIELD, Bridge, write_config
from tests.writeback.test_sales_e2e import query, record

pytestmark = pytest.mark.e2e

SITES = (
    "SELECT Id, Name, Location__c, Site_Key__c, Account__c, Organization__c FROM SFBridge_Site__c"
)


@pytest.fixture
def bridge(clean_devorg: DevOrg, sqlite_store: Store, tmp_path: Path) -> Iterator[Bridge]:
    if not PACKAGE_FIELD.exists():
        pytest.skip("the package (force-app) is not in this checkout")
    path = write_config(tmp_path / "sfbridge.yaml", clean_devorg, {"sales": {"sites": {}}})
    yield Bridge(sqlite_store, clean_devorg, path)


def sale(n: int, locations: list[str]) -> dict[str, Any]:
    return {
        "id": f"sale-{n}",
        "business_name": "Bluebird Bakery",
        "phone": "(415) 555-0100",
        "city": "Oakland",
        "closed_at": f"2026-03-1{n}T15:00:00+00:00",
        "locations": locations,
    }


def test_a_sale_with_three_locations_then_one_overlapping(bridge: Bridge) -> None:
    rid = bridge.referral(1, last_name="Baker", company="Bluebird Bakery")
    first = record(bridge, "sale", rid, sale(1, ["12 Main St", "400 Oak Ave", "Pier 39"]))
    assert bridge.send(first).sent == [first], bridge.push(first).error_message

    [account] = query(bridge, "SELECT Id FROM Account")
    [organization] = query(
        bridge, "SELECT Id, Name, Account__c, Organization_Key__c FROM SFBridge_Organization__c"
    )
    assert organization["Account__c"] == account["Id"]
    assert organization["Name"] == "Bluebird Bakery"
    sites = query(bridge, SITES)
    assert sorted(s["Location__c"] for s in sites) == ["12 Main St", "400 Oak Ave", "Pier 39"]
    assert {(s["Account__c"], s["Organization__c"]) for s in sites} == {
        (account["Id"], organization["Id"])
    }
    result = bridge.push(first).payload["result"]
    assert result["organization"]["action"] == "create"
    assert [s["action"] for s in result["sites"]] == ["create"] * 3
    assert {s["record_id"] for s in result["sites"]} == {s["Id"] for s in sites}

    # the second sale names two of the sites again (one spelt differently) and one new one
    second = record(bridge, "sale", rid, sale(2, ["pier  39", "12 Main St", "9 Bay Rd"]))
    assert bridge.send(second).sent == [second], bridge.push(second).error_message
    assert len(query(bridge, "SELECT Id FROM SFBridge_Organization__c")) == 1
    after = query(bridge, SITES)
    assert len(after) == 4
    new = [s for s in after if s["Id"] not in {x["Id"] for x in sites}]
    assert [(s["Name"], s["Organization__c"]) for s in new] == [("9 Bay Rd", organization["Id"])]
    result = bridge.push(second).payload["result"]
    assert result["organization"] == {**result["organization"], "action": "update",
                                      "record_id": organization["Id"]}  # fmt: skip
    assert [(s["location"], s["action"]) for s in result["sites"]] == [
        ("pier  39", "update"),
        ("12 Main St", "update"),
        ("9 Bay Rd", "create"),
    ]


def test_two_sales_of_one_business_in_one_batch_share_the_writes(bridge: Bridge) -> None:
    one = bridge.referral(2, last_name="Baker", company="Bluebird Bakery")
    two = bridge.referral(3, last_name="Wren", company="Bluebird Bakery")
    a = record(bridge, "sale", one, sale(1, ["12 Main St", "Pier 39"]))
    b = record(bridge, "sale", two, sale(2, ["Pier 39", "9 Bay Rd"]))
    assert sorted(bridge.send(a, b).sent) == [a, b]
    assert len(query(bridge, "SELECT Id FROM SFBridge_Organization__c")) == 1
    assert sorted(s["Name"] for s in query(bridge, SITES)) == ["12 Main St", "9 Bay Rd", "Pier 39"]


def test_a_failed_site_write_is_repushed_without_duplicates(bridge: Bridge) -> None:
    rid = bridge.referral(4, last_name="Baker", company="Bluebird Bakery")
    pid = record(bridge, "sale", rid, sale(1, ["12 Main St", "400 Oak Ave", "Pier 39"]))
    bridge.devorg.control(
        "faults",
        {
            "kind": "error",
            "path": "/services/data/v63.0/composite/sobjects/SFBridge_Site__c",
            "status": 400,
            "error_code": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "message": "Sites are locked for the migration",
            "count": 1,
        },
    )
    assert bridge.send(pid).failed == [pid]
    push = bridge.push(pid)
    assert push.error_code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert push.sobject_type == "SFBridge_Site__c"
    assert query(bridge, SITES) == []
    assert len(query(bridge, "SELECT Id FROM SFBridge_Organization__c")) == 1

    with bridge.store.session() as s:
        repush(s, pid, actor="test")
    assert bridge.send(pid).sent == [pid], bridge.push(pid).error_message
    assert len(query(bridge, SITES)) == 3
    assert len(query(bridge, "SELECT Id FROM SFBridge_Organization__c")) == 1
    assert len(query(bridge, "SELECT Id FROM Opportunity")) == 1
