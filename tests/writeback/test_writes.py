"""Packing a drain's writes: sObject Collections of ≤ 200 records, ≤ 5 of them per composite call,
every record's result back on its own push; a subrequest failing alone fails only its records."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from bridge.errors import TransientError
from bridge.salesforce.errors import make_error
from bridge.writeback.client import CollectionRequest
from bridge.writeback.planning import Write
from bridge.writeback.writes import execute, pack


class Recorder:
    """A writer answering each collection record with an id, recording every call."""

    def __init__(self, failing: str | None = None, down: bool = False) -> None:
        self.calls: list[list[CollectionRequest]] = []
        self.failing, self.down = failing, down
        self.ids = itertools.count(1)

    def collections(self, requests: list[CollectionRequest]) -> list[Any]:
        assert 1 <= len(requests) <= 5
        self.calls.append(requests)
        if self.down:
            raise TransientError("Salesforce is down", code="SERVER_UNAVAILABLE")
        out: list[Any] = []
        for _method, path, records in requests:
            assert len(records) <= 200
            if self.failing and self.failing in path:
                out.append(make_error("INVALID_FIELD", "No such column", status=400))
                continue
            out.append([{"id": f"{r['attributes']['type']}-{next(self.ids)}", "success": True,
                         "errors": [], **({"created": True} if path.count("/") == 3 else {})}
                        for r in records])  # fmt: skip
        return out


def writes() -> list[Write]:
    push = itertools.count(1)
    out = [Write(next(push), "Lead", "create", {"LastName": f"L{n}"}) for n in range(450)]
    out += [Write(next(push), "Contact", "update", {"Title": "x"}, record_id=f"003{n}")
            for n in range(3)]  # fmt: skip
    out += [Write(next(push), "Task", "upsert", {"Subject": "s", "A__c": str(n)},
                  external_id_field="A__c") for n in range(2)]  # fmt: skip
    out += [Write(next(push), "Event", "upsert", {"Subject": "e", "A__c": "1"},
                  external_id_field="A__c")]  # fmt: skip
    return out


def test_collections_of_200_five_to_a_composite_call() -> None:
    writer = Recorder()
    planned = writes()
    outcomes = [o for batch in execute(writer, planned) for o in batch]  # type: ignore[arg-type]
    # Lead creates: 200 + 200 + 50; Contact updates, Task and Event upserts: one each
    assert [[len(r[2]) for r in call] for call in writer.calls] == [[200, 200, 50, 3, 2], [1]]
    assert writer.calls[0][3][:2] == ("PATCH", "composite/sobjects")
    assert writer.calls[0][3][2][0]["Id"] == "0030"  # an update names its record
    assert writer.calls[0][4][:2] == ("PATCH", "composite/sobjects/Task/A__c")
    assert writer.calls[1][0][:2] == ("PATCH", "composite/sobjects/Event/A__c")
    assert sorted(o.push_id for o in outcomes) == [w.push_id for w in planned]
    by_push = {o.push_id: o for o in outcomes}
    assert {o.state for o in outcomes} == {"sent"}
    assert by_push[1].sf_id == "Lead-1" and by_push[450].sf_id == "Lead-450"
    assert by_push[451].sf_id == "Contact-451" and by_push[454].created
    assert by_push[1].via == "collections"


def test_a_failed_subrequest_fails_its_records_only_and_an_outage_all() -> None:
    outcomes = [o for b in execute(Recorder(failing="Task"), writes()) for o in b]  # type: ignore[arg-type]
    failed = {o.push_id for o in outcomes if o.state == "failed"}
    assert failed == {454, 455}  # the two Tasks
    assert {o.error.code for o in outcomes if o.error} == {"INVALID_FIELD"}

    down = [o for b in execute(Recorder(down=True), writes()) for o in b]  # type: ignore[arg-type]
    assert len(down) == 456 and {o.error_class for o in down} == {"transient"}


@pytest.mark.parametrize(("parts", "calls"), [(0, []), (1, [1]), (5, [5]), (6, [5, 1]),
                                              (11, [5, 5, 1])])  # fmt: skip
def test_pack_five_collection_requests_per_call(parts: int, calls: list[int]) -> None:
    requests = [[Write(n, "Lead", "create", {})] for n in range(parts)]
    assert [len(call) for call in pack(requests)] == calls
