"""Pub/Sub API change events: Avro decoding, bitmaps to names, the CometD-shaped payload, one
stored change per record, own writes from the header, unreadable payloads."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest

from bridge.streaming import avro_events
from bridge.streaming.events import MalformedEvent

_ARRAY = {"type": "array", "items": "string"}
HEADER = {
    "type": "record",
    "name": "ChangeEventHeader",
    "fields": [
        {"name": "entityName", "type": "string"},
        {"name": "recordIds", "type": _ARRAY},
        {"name": "changeType", "type": "string"},
        {"name": "changeOrigin", "type": "string"},
        {"name": "transactionKey", "type": "string"},
        {"name": "sequenceNumber", "type": "int"},
        {"name": "commitTimestamp", "type": "long"},
        {"name": "commitNumber", "type": "long"},
        {"name": "commitUser", "type": "string"},
        {"name": "nulledFields", "type": _ARRAY},
        {"name": "diffFields", "type": _ARRAY},
        {"name": "changedFields", "type": _ARRAY},
    ],
}
NAME = {
    "type": "record",
    "name": "Name",
    "fields": [
        {"name": "Salutation", "type": ["null", "string"], "default": None},
        {"name": "FirstName", "type": ["null", "string"], "default": None},
        {"name": "LastName", "type": ["null", "string"], "default": None},
    ],
}
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "LeadChangeEvent",
    "fields": [
        {"name": "ChangeEventHeader", "type": HEADER},  # 0
        {"name": "Name", "type": ["null", NAME], "default": None},  # 1
        {"name": "Email", "type": ["null", "string"], "default": None},  # 2
        {"name": "Phone", "type": ["null", "string"], "default": None},  # 3
        {"name": "LastModifiedDate", "type": ["null", "long"], "doc": "datetime", "default": None},
        {"name": "CloseDate", "type": ["null", "int"], "doc": "date", "default": None},  # 5
    ],
}
PARSED = fastavro.parse_schema(SCHEMA)
LEAD = "00Q8d000015g1vAEAQ"
INTEGRATION = "0058d000015fzrRAAQ"


def event(change_type: str, ids: list[str], **fields: Any) -> dict[str, Any]:
    header = {
        "entityName": "Lead", "recordIds": ids, "changeType": change_type,
        "changeOrigin": "com/salesforce/api/rest/63.0", "transactionKey": "t1",
        "sequenceNumber": 1, "commitTimestamp": 1_767_225_600_000, "commitNumber": 1,
        "commitUser": "0058d000015fzrSAAQ", "nulledFields": [], "diffFields": [],
        "changedFields": [],
    }  # fmt: skip
    header.update(fields.pop("header", {}))
    record = {"Name": None, "Email": None, "Phone": None, "LastModifiedDate": None}
    record["CloseDate"] = None
    record.update(fields)
    return {"ChangeEventHeader": header, **record}


def encoded(record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, PARSED, record)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("bitmaps", "names"),
    [
        ([], []),
        (["0x4"], ["Email"]),
        (["0xC"], ["Email", "Phone"]),
        (["0x14", "1-0x2"], ["Email", "LastModifiedDate", "Name.FirstName"]),
        (["0x0", "1-0x5"], ["Name.Salutation", "Name.LastName"]),
    ],
)
def test_bitmaps_name_the_schema_fields_by_position(bitmaps: list[str], names: list[str]) -> None:
    assert avro_events.field_names(SCHEMA, bitmaps) == names


@pytest.mark.parametrize("bitmaps", [["0x100"], ["9-0x1"], ["1-0x10"], ["zz"]])
def test_a_bitmap_that_does_not_fit_the_schema_is_malformed(bitmaps: list[str]) -> None:
    with pytest.raises(MalformedEvent):
        avro_events.field_names(SCHEMA, bitmaps)


def test_update_keeps_the_changed_and_nulled_fields_only() -> None:
    record = event(
        "UPDATE", [LEAD],
        header={"changedFields": ["0x1C", "1-0x2"], "nulledFields": ["0x8"]},
        Name={"Salutation": None, "FirstName": "Ada", "LastName": None},
        Phone=None, LastModifiedDate=1_767_225_600_123,
    )  # fmt: skip
    decoded = avro_events.decode(PARSED, encoded(record))
    cdc = avro_events.to_cdc_payload(SCHEMA, decoded)
    header = cdc.pop("ChangeEventHeader")
    assert header["changedFields"] == ["Email", "Phone", "LastModifiedDate", "Name.FirstName"]
    assert header["nulledFields"] == ["Phone"]
    assert header["commitTimestamp"] == "2026-01-01T00:00:00.000Z"
    # unchanged fields are null in a Pub/Sub event and must not read as "set to null"
    assert cdc == {
        "Email": None,
        "Phone": None,
        "LastModifiedDate": "2026-01-01T00:00:00.123Z",
        "Name": {"FirstName": "Ada"},
        "SystemModstamp": "2026-01-01T00:00:00.123Z",  # stands in: events never carry it
    }


def test_create_keeps_the_set_fields_and_dates_read_as_iso() -> None:
    record = event("CREATE", [LEAD], Email="ada@example.com", CloseDate=20454)
    cdc = avro_events.to_cdc_payload(SCHEMA, avro_events.decode(PARSED, encoded(record)))
    assert cdc["Email"] == "ada@example.com" and cdc["CloseDate"] == "2026-01-01"
    # every field of a new record is sent: a null one is null in the record, not unknown
    assert cdc["Phone"] is None and "Phone" in cdc
    assert cdc["SystemModstamp"] == "2026-01-01T00:00:00.000Z"  # the commit, without a date


def test_one_event_naming_many_records_is_one_change_each() -> None:
    ids = [LEAD, "00Q8d000015g1vBEAQ", "00Q8d000015g1vCEAQ"]
    cdc = avro_events.to_cdc_payload(SCHEMA, event("DELETE", ids))
    changes = avro_events.from_pubsub(
        "/data/LeadChangeEvent", b"\x00\x01", "s1", cdc, own=False, integration_user_id=INTEGRATION
    )
    assert [c.record_id for c in changes] == ids
    assert {c.change_type for c in changes} == {"deleted"}
    assert len({c.change_key for c in changes}) == 3
    assert all(c.replay_id is None for c in changes)  # opaque replay ids are not numbers
    assert changes[0].payload["data"]["event"]["replayId"] == "0001"


def test_gap_events_name_records_without_values() -> None:
    cdc = avro_events.to_cdc_payload(SCHEMA, event("GAP_UPDATE", [LEAD], Email="stale@x"))
    (change,) = avro_events.from_pubsub(
        "/data/LeadChangeEvent", b"\x02", "s1", cdc, own=False, integration_user_id=INTEGRATION
    )
    assert change.change_type == "updated" and change.record_id == LEAD
    assert "Email" not in change.fields  # the worker reads the record back by id
    overflow = avro_events.to_cdc_payload(SCHEMA, event("GAP_OVERFLOW", []))
    assert avro_events.is_overflow(overflow)


@pytest.mark.parametrize(
    ("header", "own"),
    [
        ({}, False),
        ({"commitUser": INTEGRATION}, True),
        ({"commitUser": INTEGRATION[:15]}, True),
        ({"changeOrigin": "com/salesforce/api/rest/63.0;client=sfbridge"}, True),
        ({"changeOrigin": "com/salesforce/api/rest/63.0;client=Workbench/"}, False),
    ],
)
def test_own_writes_are_recognised_from_the_header(header: dict[str, str], own: bool) -> None:
    cdc = avro_events.to_cdc_payload(SCHEMA, event("UPDATE", [LEAD], header=header))
    assert avro_events.own_write(cdc, "sfbridge", INTEGRATION) is own
    (change,) = avro_events.from_pubsub(
        "/data/LeadChangeEvent", b"\x03", "s1", cdc, own=own, integration_user_id=INTEGRATION
    )
    assert (change.fields["LastModifiedById"] == INTEGRATION) is own


@pytest.mark.parametrize(
    "payload", [b"", b"\xff\xff\xff\xff", encoded(event("CREATE", [LEAD]))[:5]]
)
def test_an_undecodable_payload_is_malformed(payload: bytes) -> None:
    with pytest.raises(MalformedEvent):
        avro_events.decode(PARSED, payload)
    stored = avro_events.malformed_pubsub("/data/LeadChangeEvent", b"\x04", payload, "bad")
    assert stored.change_type == "malformed" and stored.payload["raw"] == payload.hex()
    assert stored.change_key.startswith("malformed:")


def test_values_json_cannot_hold_are_made_text() -> None:
    # a schema with Avro logical types and bytes: fastavro gives datetime, date, Decimal, bytes
    schema: dict[str, Any] = {
        "type": "record",
        "name": "X",
        "fields": [
            {"name": "ChangeEventHeader", "type": HEADER},
            {"name": "At", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "On", "type": {"type": "int", "logicalType": "date"}},
            {"name": "Raw", "type": "bytes"},
            {"name": "Amount", "type": {"type": "bytes", "logicalType": "decimal",
                                        "precision": 5, "scale": 2}},
        ],
    }  # fmt: skip
    parsed = fastavro.parse_schema(schema)
    record = {
        "ChangeEventHeader": event("CREATE", [LEAD])["ChangeEventHeader"],
        "At": 1_767_225_600_000, "On": 20454, "Raw": b"\x01\x02", "Amount": b"\x30\x39",
    }  # fmt: skip
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, record)
    cdc = avro_events.to_cdc_payload(schema, avro_events.decode(parsed, buf.getvalue()))
    assert cdc["At"] == "2026-01-01T00:00:00.000Z" and cdc["On"] == "2026-01-01"
    assert cdc["Raw"] == "0102" and isinstance(cdc["Amount"], float)
