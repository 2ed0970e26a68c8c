"""Parsing stream messages and polled records into changes; the change_key that dedupes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bridge.streaming.events import (
    MalformedEvent,
    change_key,
    format_modstamp,
    from_bayeux,
    from_polled_record,
    latest,
    malformed,
    parse_sf_datetime,
)
from tests.factories import pushtopic_message

LEAD = "00Q000000000001AAA"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-05T10:00:00.123+0000", datetime(2026, 1, 5, 10, 0, 0, 123000, tzinfo=UTC)),
        ("2026-01-05T10:00:00.123Z", datetime(2026, 1, 5, 10, 0, 0, 123000, tzinfo=UTC)),
        ("2026-01-05T12:00:00.000+0200", datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC)),
        (1767607200123, datetime(2026, 1, 5, 10, 0, 0, 123000, tzinfo=UTC)),
        (None, None),
    ],
)
def test_salesforce_datetimes(text: object, expected: datetime | None) -> None:
    assert parse_sf_datetime(text) == expected


def test_stream_and_poll_of_the_same_change_share_a_change_key() -> None:
    record = {"Id": LEAD, "SystemModstamp": "2026-01-05T10:00:00.123+0000", "Status": "Open"}
    streamed = from_bayeux(pushtopic_message("/topic/SFB_Lead", 7, record), {})[0]
    polled = from_polled_record(
        "Lead",
        {**record, "SystemModstamp": "2026-01-05T10:00:00.123Z", "attributes": {"type": "Lead"}},
        "poll:Lead",
    )
    assert streamed.change_key == polled.change_key == f"{LEAD}@2026-01-05T10:00:00.123Z"
    assert streamed.sobject_type == polled.sobject_type == "Lead"
    assert streamed.replay_id == 7 and polled.replay_id is None
    assert "attributes" not in polled.fields


def test_a_later_change_of_the_same_record_has_another_key() -> None:
    a = from_bayeux(
        pushtopic_message(
            "/topic/SFB_Lead", 1, {"Id": LEAD, "SystemModstamp": "2026-01-05T10:00:00.123Z"}
        ),
        {},
    )[0]
    b = from_bayeux(
        pushtopic_message(
            "/topic/SFB_Lead", 2, {"Id": LEAD, "SystemModstamp": "2026-01-05T10:00:00.124Z"}
        ),
        {},
    )[0]
    assert a.change_key != b.change_key


def test_deletes_are_keyed_by_channel_and_replay_id() -> None:
    msg = pushtopic_message("/topic/SFB_Lead", 42, {"Id": LEAD}, change_type="deleted")
    event = from_bayeux(msg, {})[0]
    assert event.change_type == "deleted"
    assert change_key(event) == "replay:/topic/SFB_Lead:42"


def test_object_comes_from_the_topic_when_the_id_does_not_tell() -> None:
    msg = pushtopic_message("/topic/Custom", 3, {"Id": "a01000000000001AAA"})
    assert from_bayeux(msg, {"/topic/Custom": "Lead"})[0].sobject_type == "Lead"
    with pytest.raises(MalformedEvent, match="cannot tell the object"):
        from_bayeux(msg, {})


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"channel": "/topic/X"}, "no data.event"),
        ({"channel": "/topic/X", "data": {"event": {}}}, "no numeric replayId"),
        (
            {
                "channel": "/topic/X",
                "data": {"event": {"replayId": 1, "type": "zapped"}, "sobject": {"Id": LEAD}},
            },
            "unknown type",
        ),
    ],
)
def test_malformed_messages_are_reported_and_still_storable(message: dict, error: str) -> None:
    with pytest.raises(MalformedEvent, match=error) as info:
        from_bayeux(message, {})
    kept = malformed(message, info.value)
    assert kept.error and error in kept.error
    assert kept.change_key  # storable: keyed by replay id, or by content without one


def test_cdc_event_with_several_records_gives_one_change_each() -> None:
    msg = {
        "channel": "/data/LeadChangeEvent",
        "data": {
            "schema": "x",
            "event": {"replayId": 9},
            "payload": {
                "ChangeEventHeader": {
                    "entityName": "Lead",
                    "recordIds": [LEAD, "00Q000000000002AAA"],
                    "changeType": "UPDATE",
                    "commitTimestamp": 1767607200123,
                    "commitUser": "005000000000001AAA",
                },
                "Status": "Working",
                "LastModifiedDate": "2026-01-05T10:00:00.123Z",
            },
        },
    }
    events = from_bayeux(msg, {})
    assert [e.record_id for e in events] == [LEAD, "00Q000000000002AAA"]
    assert [e.replay_id for e in events] == [9, None]
    assert events[0].fields["LastModifiedById"] == "005000000000001AAA"
    assert len({e.change_key for e in events}) == 2


def test_polled_change_type_from_dates() -> None:
    base = {"Id": LEAD, "SystemModstamp": "2026-01-05T10:00:00.000Z"}
    created = from_polled_record(
        "Lead",
        {
            **base,
            "CreatedDate": "2026-01-05T10:00:00.000Z",
            "LastModifiedDate": "2026-01-05T10:00:00.000Z",
        },
        "poll:Lead",
    )
    updated = from_polled_record(
        "Lead",
        {
            **base,
            "CreatedDate": "2026-01-04T10:00:00.000Z",
            "LastModifiedDate": "2026-01-05T10:00:00.000Z",
        },
        "poll:Lead",
    )
    assert (created.change_type, updated.change_type) == ("created", "updated")


def test_latest_event_per_channel() -> None:
    events = [
        from_bayeux(
            pushtopic_message(
                ch, rid, {"Id": LEAD, "SystemModstamp": f"2026-01-05T10:00:0{rid}.000Z"}
            ),
            {},
        )[0]
        for ch, rid in [("/topic/A", 3), ("/topic/A", 5), ("/topic/B", 4), ("/topic/A", 4)]
    ]
    assert {ch: e.replay_id for ch, e in latest(events).items()} == {"/topic/A": 5, "/topic/B": 4}


def test_cdc_compound_name_is_flattened() -> None:
    msg = {
        "channel": "/data/LeadChangeEvent",
        "data": {
            "event": {"replayId": 3},
            "payload": {
                "ChangeEventHeader": {
                    "entityName": "Lead",
                    "recordIds": [LEAD],
                    "changeType": "CREATE",
                    "commitTimestamp": 1767607200123,
                },
                "Name": {"FirstName": "Ada", "LastName": "Lovelace"},
                "Email": "ada@example.test",
            },
        },
    }
    (event,) = from_bayeux(msg, {})
    assert event.fields["FirstName"] == "Ada" and event.fields["LastName"] == "Lovelace"
    assert "Name" not in event.fields
    assert event.change_type == "created"


def _gap(change_type: str, record_ids: list[str]) -> dict:
    return {
        "channel": "/data/LeadChangeEvent",
        "data": {
            "schema": "x",
            "event": {"replayId": 12},
            "payload": {
                "ChangeEventHeader": {
                    "entityName": "Lead",
                    "recordIds": record_ids,
                    "changeType": change_type,
                    "changedFields": [],
                    "commitTimestamp": 1767607200123,
                    "commitUser": "005000000000002AAA",
                },
            },
        },
    }


def test_a_gap_event_is_a_change_whose_values_are_read_back() -> None:
    # Salesforce: a gap event names the records but carries no fields; read them by id.
    (event,) = from_bayeux(_gap("GAP_UPDATE", [LEAD]), {})
    assert (event.sobject_type, event.record_id, event.change_type) == ("Lead", LEAD, "updated")
    assert event.fields == {"Id": LEAD, "LastModifiedById": "005000000000002AAA"}
    assert event.change_key == f"{LEAD}@2026-01-05T10:00:00.123Z"
    (deleted,) = from_bayeux(_gap("GAP_DELETE", [LEAD]), {})
    assert deleted.change_type == "deleted"


def test_an_overflow_event_says_how_to_catch_up() -> None:
    with pytest.raises(MalformedEvent, match="sfbridge poll --since"):
        from_bayeux(_gap("GAP_OVERFLOW", ["000000000000000AAA"]), {})


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("LastName", "Ro\x00e", "message.data.sobject.LastName contains a NUL character"),
        ("Tags", ["a", {"w": float("nan")}], "message.data.sobject.Tags[1].w is nan, not a finite"),
        ("Extra", {"a": {7: "x"}}, "message.data.sobject.Extra.a has a key that is int 7, not"),
    ],
)
def test_an_unstorable_value_is_named_by_its_place(field: str, value: object, error: str) -> None:
    """The check walks without naming places; the error still says where the value is."""
    message = pushtopic_message("/topic/SFB_Lead", 2, {"Id": LEAD, field: value})
    with pytest.raises(MalformedEvent) as exc:
        from_bayeux(message, {})
    assert str(exc.value).startswith(error), exc.value


def test_a_modstamp_is_written_as_before() -> None:
    """`format_modstamp` by isoformat writes what strftime wrote (stored keys dedupe against
    the new ones): milliseconds cut, not rounded, in UTC, and a year before 1000 unpadded."""
    assert format_modstamp(datetime(2026, 1, 5, 10, 0, 1, 999999, tzinfo=UTC)) == (
        "2026-01-05T10:00:01.999Z"
    )
    plus5 = timezone(timedelta(hours=5))
    assert format_modstamp(datetime(2026, 1, 5, 10, 0, 1, 1000, tzinfo=plus5)) == (
        "2026-01-05T05:00:01.001Z"
    )
    assert format_modstamp(datetime(999, 1, 1, tzinfo=UTC)) == "999-01-01T00:00:00.000Z"
