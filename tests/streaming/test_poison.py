"""Poison events: any message the parser cannot read is stored as malformed, with its raw text
and the error, and the channel's cursor moves past it (SQLite and PostgreSQL).

Each hostile shape is put between two good events of the same channel: the delivery stores
all three, the cursor ends on the last one, and the poisoned one becomes a failed entry that
says what was wrong.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from sqlalchemy import select

from bridge import jobs
from bridge.store import Store
from bridge.store.models import InboundEvent, SalesEntry, SyncCursor
from bridge.streaming import inbox
from bridge.streaming.events import MAX_RAW_CHARS, read_message
from tests.factories import pushtopic_message
from tests.test_jobs import Receiver, lead_message
from tests.test_jobs import receiver as receiver  # the fixture

CHANNEL = "/topic/SFB_Lead"
LEAD = "00Q000000000001AAA"
OBJECTS = {CHANNEL: "Lead"}


def good(replay_id: int, lead: str = LEAD) -> dict[str, Any]:
    stamp = f"2026-01-05T10:00:{replay_id % 60:02d}.000Z"
    return pushtopic_message(CHANNEL, replay_id, {"Id": lead, "SystemModstamp": stamp})


def cdc(replay_id: int) -> dict[str, Any]:
    return {
        "channel": "/data/LeadChangeEvent",
        "data": {
            "schema": "s",
            "event": {"replayId": replay_id},
            "payload": {
                "ChangeEventHeader": {
                    "entityName": "Lead",
                    "recordIds": [LEAD],
                    "changeType": "UPDATE",
                    "commitTimestamp": 1767607200123,
                    "commitUser": "005000000000001AAA",
                },
                "Status": "Working",
                "LastModifiedDate": "2026-01-05T10:00:00.123Z",
            },
        },
    }


def poisoned(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`base` with the value at the dotted `path` replaced (or removed when value is ...)."""
    message = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = message
    for part in parents:
        node = node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return message


def rec(field: str, value: Any) -> Any:
    return poisoned(good(2), f"data.sobject.{field}", value)


def ev(field: str, value: Any) -> Any:
    return poisoned(good(2), f"data.event.{field}", value)


def hdr(field: str, value: Any) -> Any:
    return poisoned(cdc(2), f"data.payload.ChangeEventHeader.{field}", value)


HUGE = "x" * 200_000
NUMBERS_AS_TEXT = 10**40
NOT_ID = "not a 15- or 18"
DEEP = json.loads("[" * 30 + "]" * 30)

# (name, message, words the stored error must contain, whether the cursor can move to it)
HOSTILE: list[tuple[str, Any, str, bool]] = [
    ("Id a list", rec("Id", [LEAD]), NOT_ID, True),
    ("Id an object", rec("Id", {"v": LEAD}), NOT_ID, True),
    ("Id a number", rec("Id", 12345), NOT_ID, True),
    ("Id missing", rec("Id", ...), NOT_ID, True),
    ("Id of 19 characters", rec("Id", LEAD + "A"), "18", True),
    ("Id of 40 characters", rec("Id", "0" * 40), "18", True),
    ("createdDate numeric", ev("createdDate", 1767607200), "text", True),
    ("createdDate a list", ev("createdDate", ["x"]), "text", True),
    ("createdDate garbage", ev("createdDate", "yesterday"), "datetime", True),
    ("SystemModstamp a number", rec("SystemModstamp", 7), "text", True),
    ("SystemModstamp year 99999", rec("SystemModstamp", "99999-01-01T00:00Z"), "datetime", True),
    ("type a number", ev("type", 3), "unknown type", True),
    ("type unknown", ev("type", "zapped"), "unknown type", True),
    ("replayId inf", ev("replayId", float("inf")), "replayId", False),
    ("replayId NaN", ev("replayId", float("nan")), "replayId", False),
    ("replayId huge", ev("replayId", NUMBERS_AS_TEXT), "replayId", False),
    ("replayId negative", ev("replayId", -5), "replayId", False),
    ("replayId zero", ev("replayId", 0), "replayId", False),
    ("replayId a string", ev("replayId", "2"), "replayId", False),
    ("replayId a float", ev("replayId", 2.5), "replayId", False),
    ("replayId true", ev("replayId", True), "replayId", False),
    ("replayId missing", ev("replayId", ...), "replayId", False),
    ("event missing", poisoned(good(2), "data.event", ...), "no data.event", False),
    ("event a list", poisoned(good(2), "data.event", [1]), "no data.event", False),
    ("data missing", poisoned(good(2), "data", ...), "no data.event", False),
    ("data a string", poisoned(good(2), "data", "hello"), "no data.event", False),
    ("sobject a list", poisoned(good(2), "data.sobject", [LEAD]), "not a record", True),
    ("sobject null", poisoned(good(2), "data.sobject", None), "not a record", True),
    ("field NaN", rec("AnnualRevenue", float("nan")), "finite", True),
    ("field inf", rec("AnnualRevenue", float("-inf")), "finite", True),
    ("field huge number", rec("NumberOfEmployees", 10**30), "too large", True),
    ("field oversized", rec("Description", HUGE), "200,000 characters", True),
    ("field with NUL", rec("LastName", "Ro\x00e"), "NUL", True),
    ("field nested deep", rec("Deep", DEEP), "nested", True),
    ("channel a number", poisoned(good(2), "channel", 7), "channel", False),
    ("channel oversized", poisoned(good(2), "channel", "/" + "t" * 300), "characters long", False),
    ("message a list", [good(2)], "not an object", False),
    ("message a string", "hello", "not an object", False),
    ("cdc header missing", poisoned(cdc(2), "data.payload.ChangeEventHeader", ...), "neither", 1),
    ("cdc recordIds a string", hdr("recordIds", LEAD), "recordIds", True),
    ("cdc recordIds empty", hdr("recordIds", []), "recordIds", True),
    ("cdc recordIds numbers", hdr("recordIds", [1, 2]), "18", True),
    ("cdc recordId too long", hdr("recordIds", [LEAD * 2]), "18", True),
    ("cdc changeType a list", hdr("changeType", ["UPDATE"]), "event", True),
    ("cdc entityName a number", hdr("entityName", 5), "entityName", True),
    ("cdc entityName oversized", hdr("entityName", "L" * 100), "entityName", True),
    ("cdc commitTimestamp inf", hdr("commitTimestamp", float("inf")), "finite", True),
    ("cdc commitTimestamp huge", hdr("commitTimestamp", 10**17), "epoch milliseconds", True),
    ("cdc commitTimestamp text", hdr("commitTimestamp", "soon"), "datetime", True),
    ("cdc commitUser a list", hdr("commitUser", ["005"]), "commitUser", True),
    ("cdc payload a list", poisoned(cdc(2), "data.payload", [1]), "neither", True),
]  # fmt: skip


@pytest.mark.parametrize(("message", "words", "keeps_replay_id"), [h[1:] for h in HOSTILE],
                         ids=[h[0] for h in HOSTILE])  # fmt: skip
def test_a_hostile_message_is_one_malformed_change(
    message: Any, words: str, keeps_replay_id: bool
) -> None:
    [event] = read_message(message, OBJECTS)
    assert event.change_type == "malformed"
    assert event.error and words in event.error, event.error
    assert event.replay_id == (2 if keeps_replay_id else None)
    assert isinstance(event.payload["raw"], str) and len(event.payload["raw"]) <= MAX_RAW_CHARS
    assert event.payload["_error"] == event.error
    assert len(event.change_key) <= 255
    json.dumps(event.payload, allow_nan=False)  # strict JSON: PostgreSQL stores it


def test_good_messages_are_not_malformed() -> None:
    assert read_message(good(1), OBJECTS)[0].record_id == LEAD
    assert read_message(cdc(1), OBJECTS)[0].sobject_type == "Lead"


def test_a_long_raw_message_is_kept_cut_and_says_so() -> None:
    [event] = read_message(rec("Description", HUGE), OBJECTS)
    assert event.payload["raw_truncated"] is True
    assert event.payload["raw"].startswith('{"channel": "/topic/SFB_Lead"')


def _cursor(store: Store, org_id: int, channel: str) -> int | None:
    with store.session() as s:
        row = s.get(SyncCursor, (org_id, channel))
        return row.replay_id if row else None


@pytest.mark.parametrize(("message", "words", "keeps_replay_id"), [h[1:] for h in HOSTILE],
                         ids=[h[0] for h in HOSTILE])  # fmt: skip
def test_a_poisoned_delivery_is_stored_and_the_cursor_moves_on(
    store: Store, org_id: int, message: Any, words: str, keeps_replay_id: bool
) -> None:
    delivery = [good(1), message, good(3, "00Q000000000003AAA")]
    events = [ev for m in delivery for ev in read_message(m, OBJECTS)]
    with store.session() as s:
        ids = inbox.store_and_advance(s, org_id, events)
    assert len(ids) == 3
    assert _cursor(store, org_id, CHANNEL) == 3
    with store.session() as s:
        bad = s.scalars(select_malformed()).one()
        assert words in bad.payload["_error"]
        assert bad.replay_id == (2 if keeps_replay_id else None)
    # the same delivery again (a replay after a restart) stores nothing twice
    with store.session() as s:
        assert inbox.store_and_advance(s, org_id, events) == []


def select_malformed() -> Any:
    return select(InboundEvent).where(InboundEvent.change_type == "malformed")


def test_the_poisoned_event_becomes_a_failed_entry_in_words(
    store: Store, org_id: int, receiver: Receiver
) -> None:
    message = poisoned(lead_message(2), "data.sobject.Id", [LEAD])
    events = [ev for m in (lead_message(1), message) for ev in read_message(m, OBJECTS)]
    with store.session() as s:
        ids = inbox.store_and_advance(s, org_id, events)
    assert jobs.process_inbound_batch(ids) == {"failed": 1, "processed": 1}
    with store.session() as s:
        entries = {e.inbound_event_id: e for e in s.scalars(select(SalesEntry))}
        bad = entries[ids[1]]
        assert bad.outcome == "failed" and bad.reasons == ["malformed_event"]
        assert bad.error and "the record's Id is list" in bad.error
        assert '"Id": ["00Q000000000001AAA"]' in bad.raw["raw"]
        assert entries[ids[0]].outcome != "failed"


def test_a_delivery_the_database_refuses_is_stored_one_by_one(
    store: Store, org_id: int, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: should the database refuse an event the checks let through, the
    subscriber stores the delivery event by event and the refused one as malformed."""
    import sqlalchemy.exc

    from bridge.streaming import subscriber
    from tests.test_jobs import ORG

    real = inbox.store_and_advance
    refused = "00Q000000000002AAA"

    def picky(session: Any, org_connection_id: int, events: Any) -> list[int]:
        if any(ev.record_id == refused for ev in events):
            raise sqlalchemy.exc.DataError("INSERT …", {}, Exception("value too long"))
        return real(session, org_connection_id, events)

    monkeypatch.setattr(subscriber.inbox, "store_and_advance", picky)
    sub = subscriber.Subscriber(
        store=store, redis_client=redis_client, org_name="acme", org=ORG,
        org_connection_id=org_id, open_org=lambda: None, enqueue=lambda ids: None,
        backfill=lambda sobject: None,
    )  # fmt: skip
    sub._store([good(1), good(2, refused), good(3, "00Q000000000003AAA")])
    with store.session() as s:
        rows = {e.replay_id: e for e in s.scalars(select(InboundEvent))}
        assert sorted(rows) == [1, 2, 3]
        assert rows[2].change_type == "malformed"
        assert "the database refused the event: value too long" in rows[2].payload["_error"]
        assert rows[1].record_id == LEAD and rows[3].change_type == "updated"
    assert _cursor(store, org_id, CHANNEL) == 3
