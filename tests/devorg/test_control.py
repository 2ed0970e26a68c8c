"""The control API: faults, clock, stats, limits and reset, as simple-salesforce sees them."""

from __future__ import annotations

import pytest
import requests
from simple_salesforce.exceptions import (
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from bridge.devorg.testing import DevOrg

pytestmark = pytest.mark.e2e


def test_error_fault_by_count_and_path(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    lead = sf.Lead.create({"LastName": "Locked", "Company": "Rows"})["id"]
    rule = clean_devorg.control(
        "faults",
        {
            "error_code": "UNABLE_TO_LOCK_ROW",
            "count": 2,
            "path": "/services/data/v63.0/sobjects/Lead",
        },
    )
    assert rule["status"] == 400 and rule["kind"] == "error"
    sf.query("SELECT Id FROM Lead")  # another path: untouched
    for _ in range(2):
        with pytest.raises(SalesforceMalformedRequest) as err:
            sf.Lead.update(lead, {"Title": "x"})
        assert err.value.content[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    assert sf.Lead.update(lead, {"Title": "third time lucky"}) == 204
    assert clean_devorg.control("faults", method="GET") == {"faults": []}


def test_status_latency_and_probability_faults(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    clean_devorg.control("faults", {"kind": "status", "status": 503, "count": 1})
    with pytest.raises(SalesforceGeneralError) as err:
        sf.query("SELECT Id FROM Lead")
    assert err.value.status == 503
    clean_devorg.control("faults", {"kind": "error", "error_code": "REQUEST_LIMIT_EXCEEDED",
                                    "probability": 0.0})  # fmt: skip
    for _ in range(5):
        sf.query("SELECT Id FROM Lead")  # probability 0 never fires
    assert clean_devorg.control("faults", method="DELETE") == {"cleared": 1}
    clean_devorg.control("faults", {"kind": "latency", "latency_ms": 50, "count": 1})
    assert sf.query("SELECT Id FROM Lead")["done"] is True  # delayed, then answered normally


def test_drop_fault_closes_the_connection(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    clean_devorg.control("faults", {"kind": "drop", "count": 1})
    with pytest.raises(requests.ConnectionError):
        sf.query("SELECT Id FROM Lead")
    assert sf.query("SELECT Id FROM Lead")["done"] is True


def test_daily_api_limit(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    clean_devorg.control("limits", {"daily_api_requests": 3, "reset_usage": True})
    try:
        for _ in range(3):
            sf.query("SELECT Id FROM Lead")
        with pytest.raises(SalesforceRefusedRequest) as err:
            sf.query("SELECT Id FROM Lead")
        assert err.value.content == [
            {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
        ]
        clean_devorg.control("clock", {"advance_seconds": 86400})  # a new day
        clean_devorg.control("expire-tokens")
        clean_devorg.sf().query("SELECT Id FROM Lead")
    finally:
        clean_devorg.control("limits", {"daily_api_requests": 15000})


def test_clock_moves_system_fields_and_date_literals(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    before = sf.Account.create({"Name": "Before"})["id"]
    now = clean_devorg.control("clock", {"advance_seconds": 3 * 86400})
    assert now["offset_seconds"] >= 3 * 86400
    sf = clean_devorg.sf()  # a new session on the moved clock
    after = sf.Account.create({"Name": "After"})["id"]
    assert sf.Account.get(after)["CreatedDate"][:10] == now["now"][:10]
    today = sf.query("SELECT Id FROM Account WHERE CreatedDate = TODAY")["records"]
    assert [r["Id"] for r in today] == [after]
    recent = sf.query("SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:2")["records"]
    assert [r["Id"] for r in recent] == [after]
    week = sf.query("SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:3 ORDER BY Name")
    assert [r["Id"] for r in week["records"]] == [after, before]
    moved = clean_devorg.control("clock", {"set": "2030-01-01T00:00:00Z"})
    assert moved["now"].startswith("2030-01-01")


def test_stats_count_calls_by_user_and_endpoint(clean_devorg: DevOrg) -> None:
    sales = clean_devorg.sf("sales")
    integration = clean_devorg.sf("integration")
    lead = sales.Lead.create({"LastName": "S", "Company": "C"})["id"]
    sales.Lead.get(lead)
    integration.query("SELECT Id FROM Lead")
    integration.query("SELECT Id FROM Lead")
    stats = clean_devorg.control("stats", method="GET")
    calls = stats["api_calls"]
    assert calls["by_user"] == {"sales@sfbridge.devorg": 2, "integration@sfbridge.devorg": 2}
    assert calls["by_endpoint"]["GET query"] == 2
    assert calls["by_endpoint"]["POST sobjects/Lead"] == 1
    assert calls["by_user_endpoint"]["sales@sfbridge.devorg"]["GET sobjects/Lead/{id}"] == 1
    assert stats["events_delivered"]["total"] == 0
    assert stats["records"]["Lead"] == 1


def test_reset_removes_records_but_keeps_sessions(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    sf.Account.create({"Name": "Temp"})
    clean_devorg.control("reset")
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0
    users = sf.query("SELECT Username FROM User ORDER BY Username")["records"]
    assert [u["Username"] for u in users] == [
        "integration@sfbridge.devorg",
        "sales@sfbridge.devorg",
    ]


def test_control_rejects_bad_bodies(devorg: DevOrg) -> None:
    http = devorg.session()
    r = http.post(f"{devorg.base_url}/__devorg__/faults", json={"kind": "weird"}, timeout=5)
    assert r.status_code == 400 and "kind" in r.json()["error"]
    r = http.post(f"{devorg.base_url}/__devorg__/clock", json={"advance_seconds": "x"}, timeout=5)
    assert r.status_code == 400
    r = http.post(f"{devorg.base_url}/__devorg__/faults", data="{not json", timeout=5)
    assert r.status_code == 400
