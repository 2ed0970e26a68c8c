"""Committed writes notify listeners with RecordChange; rolled-back ones do not (in-process)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.devorg import dml
from bridge.devorg.rest import Request, RestApi
from bridge.devorg.server import DevOrgServer
from bridge.devorg.state import RecordChange


class Recorder:
    def __init__(self) -> None:
        self.changes: list[RecordChange] = []
        self.resets = 0

    def record_changed(self, change: RecordChange) -> None:
        self.changes.append(change)

    def reset(self) -> None:
        self.resets += 1


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DevOrgServer]:
    s = DevOrgServer(tmp_path / "org", port=1)
    yield s
    s.state.close()


def test_changes_carry_old_new_and_changed_fields(server: DevOrgServer) -> None:
    rec = Recorder()
    server.state.add_listener(rec)
    sales = server.state.user_by_role("sales")
    assert sales is not None
    ctx = dml.Ctx(server, sales)
    lead = dml.create(ctx, "Lead", {"LastName": "Lee", "Company": "Co", "Email": "l@co.com"})
    server.state.clock.advance(60)
    dml.update(ctx, "Lead", lead, {"Email": "lee@co.com"})
    dml.delete(ctx, "Lead", lead)
    dml.undelete(server, [lead], "sales")

    kinds = [c.change_type for c in rec.changes]
    assert kinds == ["created", "updated", "deleted", "undeleted"]
    created, updated, deleted, undeleted = rec.changes
    assert created.old is None and created.sobject == "Lead" and created.user_id == sales.id
    assert {"LastName", "Company", "Email", "Status", "OwnerId"} <= created.changed_fields
    assert updated.old is not None and updated.old["Email"] == "l@co.com"
    assert updated.record["Email"] == "lee@co.com"
    assert {"Email", "LastModifiedDate", "SystemModstamp"} <= updated.changed_fields
    assert "LastName" not in updated.changed_fields
    assert (updated.at - created.at).total_seconds() >= 60  # the org clock
    assert deleted.record["Email"] == "lee@co.com" and deleted.record["IsDeleted"] is False
    assert undeleted.record["IsDeleted"] is False

    server.state.reset()
    assert rec.resets == 1


def test_rolled_back_collection_notifies_nobody(server: DevOrgServer) -> None:
    rec = Recorder()
    server.state.add_listener(rec)
    api = RestApi(server)
    user = server.state.user_by_role("integration")
    assert user is not None
    body = {
        "allOrNone": True,
        "records": [
            {"attributes": {"type": "Account"}, "Name": "Fine"},
            {"attributes": {"type": "Account"}, "Phone": "no name"},
        ],
    }
    reply, _ = api.dispatch(
        dml.Ctx(server, user), Request("POST", "/composite/sobjects", {}, body, {})
    )
    assert reply.status == 200 and not any(r["success"] for r in reply.body)
    assert rec.changes == []
    assert list(server.state.records("Account")) == []

    body["allOrNone"] = False
    reply, _ = api.dispatch(
        dml.Ctx(server, user), Request("POST", "/composite/sobjects", {}, body, {})
    )
    assert [c.change_type for c in rec.changes] == ["created"]
    assert rec.changes[0].record["Name"] == "Fine"


def test_writes_persist_in_the_data_dir(tmp_path: Path) -> None:
    first = DevOrgServer(tmp_path / "org", port=1)
    user = first.state.user_by_role("sales")
    assert user is not None
    account = dml.create(dml.Ctx(first, user), "Account", {"Name": "Kept"})
    first.state.close()
    second = DevOrgServer(tmp_path / "org", port=1)
    kept = second.state.get("Account", account)
    assert kept is not None and kept["Name"] == "Kept"
    assert second.state.org_id == first.state.org_id
    second.state.close()


def test_the_changes_of_one_transaction_share_it_and_are_numbered(server: DevOrgServer) -> None:
    """A collection is one transaction: its changes share a key and a commit number and are
    numbered 1, 2, … (the CDC guide's transactionKey, commitNumber, sequenceNumber); each
    change is at the time its record was saved."""
    rec = Recorder()
    server.state.add_listener(rec)
    api = RestApi(server)
    user = server.state.user_by_role("sales")
    assert user is not None
    leads = [
        {"attributes": {"type": "Lead"}, "LastName": f"L{i}", "Company": "Co"} for i in range(20)
    ]
    for records in (leads, leads[:2]):
        reply, _ = api.dispatch(
            dml.Ctx(server, user),
            Request("POST", "/composite/sobjects", {}, {"records": records}, {}),
        )
        assert all(r["success"] for r in reply.body)
    first, second = rec.changes[:20], rec.changes[20:]
    assert len({c.transaction_key for c in first}) == 1 and first[0].transaction_key
    assert len({c.commit_number for c in first}) == 1
    assert [c.sequence_number for c in first] == list(range(1, 21))
    assert [c.sequence_number for c in second] == [1, 2]
    assert second[0].transaction_key != first[0].transaction_key
    assert second[0].commit_number > first[0].commit_number
    for change in rec.changes:
        saved = server.state.get("Lead", str(change.record["Id"]))
        assert saved is not None and dml.format_datetime(change.at) == saved["SystemModstamp"]


def test_a_lead_conversion_is_one_transaction_in_the_order_of_its_writes(
    server: DevOrgServer,
) -> None:
    user = server.state.user_by_role("sales")
    assert user is not None
    lead = dml.create(dml.Ctx(server, user), "Lead", {"LastName": "Lee", "Company": "Co"})
    rec = Recorder()
    server.state.add_listener(rec)
    dml.convert_lead(server, {"lead_id": lead}, user)
    assert [(c.sobject, c.change_type, c.sequence_number) for c in rec.changes] == [
        ("Account", "created", 1),
        ("Contact", "created", 2),
        ("Opportunity", "created", 3),
        ("OpportunityContactRole", "created", 4),
        ("Lead", "updated", 5),
    ]
    assert len({(c.transaction_key, c.commit_number) for c in rec.changes}) == 1
