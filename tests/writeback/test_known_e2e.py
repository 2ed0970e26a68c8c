"""Known records against the local org: a known person costs one call, and a known id that was
deleted in Salesforce falls back to the lookup and the activity still lands once."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from simple_salesforce import format_soql

from bridge.store.models import OrgConnection, PushAttempt
from bridge.writeback import queue_activity
from bridge.writeback.client import OrgWriter
from bridge.writeback.known import KnownRecords
from bridge.writeback.sender import send
from tests.writeback.test_e2e_devorg import Bridge, bridge

pytestmark = pytest.mark.e2e
__all__ = ["bridge"]  # the fixture


def _calls(bridge: Bridge) -> int:
    stats = bridge.devorg.control("stats", method="GET")
    user = bridge.devorg.info["users"]["integration"]["username"]
    return sum(stats["api_calls"]["by_user_endpoint"].get(user, {}).values())


def _send_activity(bridge: Bridge, known: KnownRecords, n: int) -> tuple[int, int]:
    """Queue and send one email activity for ann@example.com: (push id, API calls spent)."""
    with bridge.store.session() as s:
        org = s.get(OrgConnection, bridge.connection_id)
        assert org is not None
        pid = queue_activity(s, org, bridge.org_config, {
            "id": f"act-known-{n}", "kind": "email", "email": "ann@example.com",
            "subject": f"Hello {n}", "occurred_at": "2026-11-20T15:30:00Z"}).id  # fmt: skip
    before = _calls(bridge)
    writer = OrgWriter.for_org(bridge.org)
    report = send(bridge.store, writer, bridge.org_config, [pid], known=known)
    assert report.sent == [pid], bridge.push(pid).error_message
    return pid, _calls(bridge) - before


def _tasks(bridge: Bridge, n: int) -> list[dict[str, Any]]:
    soql = format_soql(
        "SELECT Id, WhoId FROM Task WHERE SFBridge_Activity_Id__c = {}", f"act-known-{n}"
    )
    return [dict(r) for r in bridge.sales.query_all(soql)["records"]]


def test_a_known_person_costs_one_call_and_a_deleted_one_falls_back(
    bridge: Bridge, redis_client: redis.Redis
) -> None:
    known = KnownRecords(redis_client, bridge.connection_id)
    ann = bridge.sales.Contact.create({"LastName": "Ann", "Email": "ann@example.com"})["id"]

    _pid, spent = _send_activity(bridge, known, 1)
    assert spent == 2  # the WhoId lookup (one composite call) and the Task upsert
    assert [t["WhoId"] for t in _tasks(bridge, 1)] == [ann]

    _pid, spent = _send_activity(bridge, known, 2)
    assert spent == 1  # known: the upsert alone
    assert [t["WhoId"] for t in _tasks(bridge, 2)] == [ann]

    # Ann's Contact is deleted in Salesforce and she is entered again as a Lead
    bridge.sales.Contact.delete(ann)
    lead = bridge.sales.Lead.create(
        {"LastName": "Ann", "Company": "Initech", "Email": "ann@example.com"}
    )["id"]
    pid, spent = _send_activity(bridge, known, 3)
    assert spent == 3  # refused (ENTITY_IS_DELETED), the lookup, the upsert
    assert [t["WhoId"] for t in _tasks(bridge, 3)] == [lead]  # landed once, on the Lead
    with bridge.store.session() as s:
        attempts = s.query(PushAttempt).filter(PushAttempt.push_id == pid).all()
        assert [(a.attempt, a.state) for a in attempts] == [(1, "sent")]
    assert {k: v.id for k, v in known.whos(["ann@example.com"]).items()} == {
        "ann@example.com": lead
    }
