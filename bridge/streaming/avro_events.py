"""Pub/Sub API change events as the bridge stores them: Avro decoded, bitmaps decoded.

Pure functions (no I/O). A Pub/Sub API CDC payload differs from the CometD one (Streaming API
Developer Guide, "Differences Between Change Events Received with Streaming API vs. Pub/Sub
API"): every field of the schema is present, unchanged ones null; dates are epoch numbers;
``changedFields``, ``nulledFields`` and ``diffFields`` are bitmaps over the schema's fields
(Pub/Sub API Developer Guide, "Event Deserialization Considerations"): the first string is a
hex bitmap over the top-level fields (bit i = the schema's field i), then
``"<i>-0x…"`` for the components of the compound field i (bit j = its nested field j).

`to_cdc_payload` turns one into the CometD shape the rest of the bridge reads
(`events.cdc_values`, `intake.trigger_of`): changed fields only for an UPDATE, the field lists
as names, datetimes as ISO strings. Stored events keep the transport, topic and replay id.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import fastavro

from bridge.streaming.events import (
    ChangeEvent,
    MalformedEvent,
    format_modstamp,
    from_cdc,
    unreadable,
)

_BITMAPS = ("changedFields", "nulledFields", "diffFields")
_EPOCH = date(1970, 1, 1)


def decode(parsed_schema: Any, payload: bytes) -> dict[str, Any]:
    """An Avro binary payload read with the writer's schema (from GetSchema)."""
    try:
        result = fastavro.schemaless_reader(io.BytesIO(payload), parsed_schema, None)
    except Exception as exc:  # noqa: BLE001 - any undecodable payload is a malformed event
        raise MalformedEvent(f"the payload does not decode with its schema: {exc}") from None
    if not isinstance(result, dict):
        raise MalformedEvent("the payload is not an Avro record")
    return result


def _record_fields(avro_type: Any) -> list[Mapping[str, Any]] | None:
    """The fields of a record type, or of the record in a ``["null", record]`` union."""
    for candidate in avro_type if isinstance(avro_type, list) else [avro_type]:
        if isinstance(candidate, Mapping) and candidate.get("type") == "record":
            return list(candidate.get("fields") or [])
    return None


def _bits(hex_text: str) -> list[int]:
    value = int(hex_text, 16)
    return [i for i in range(value.bit_length()) if value >> i & 1]


def field_names(schema: Mapping[str, Any], bitmaps: Sequence[str]) -> list[str]:
    """Decode a bitmap field to names: ``Field``, and ``Compound.Component`` for components."""
    fields = list(schema.get("fields") or [])
    names: list[str] = []
    try:
        for item in bitmaps:
            parent, sep, bitmap = str(item).partition("-")
            if not sep:
                names.extend(str(fields[i]["name"]) for i in _bits(parent))
                continue
            compound = fields[int(parent)]
            nested = _record_fields(compound["type"]) or []
            names.extend(f"{compound['name']}.{nested[j]['name']}" for j in _bits(bitmap))
    except (IndexError, KeyError, ValueError) as exc:
        raise MalformedEvent(f"bitmap {list(bitmaps)} does not fit the schema: {exc}") from None
    return names


def _type_doc(avro_field: Mapping[str, Any]) -> str:
    return str(avro_field.get("doc") or "").lower()


def _readable(avro_field: Mapping[str, Any], value: Any) -> Any:
    """Epoch numbers as the ISO strings the REST API gives, for fields documented as dates;
    what JSON cannot hold (logical types, bytes) as text, so the event can be stored."""
    doc = _type_doc(avro_field)
    if isinstance(value, datetime):
        return format_modstamp(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    if doc.endswith("datetime"):
        return format_modstamp(datetime.fromtimestamp(value / 1000, tz=UTC))
    if doc.endswith("date"):
        return (_EPOCH + timedelta(days=value)).isoformat()
    return value


def _values(fields: Sequence[Mapping[str, Any]], record: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for avro_field in fields:
        name = str(avro_field["name"])
        value = record.get(name)
        nested = _record_fields(avro_field["type"])
        if nested is not None and isinstance(value, Mapping):
            out[name] = _values(nested, value)
        else:
            out[name] = _readable(avro_field, value)
    return out


def to_cdc_payload(schema: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """A decoded Pub/Sub CDC record in the CometD payload shape (see the module docstring)."""
    header = record.get("ChangeEventHeader")
    if not isinstance(header, Mapping):
        raise MalformedEvent("the event has no ChangeEventHeader")
    header = dict(header)
    for key in _BITMAPS:
        header[key] = field_names(schema, header.get(key) or [])
    fields = [f for f in schema.get("fields") or [] if f.get("name") != "ChangeEventHeader"]
    values = _values(fields, record)
    kind = str(header.get("changeType", ""))
    if kind == "UPDATE":
        wanted: dict[str, set[str] | None] = {}
        for path in header["changedFields"] + header["nulledFields"]:
            top, _, part = path.partition(".")
            if part:
                parts = wanted.setdefault(top, set())
                if parts is not None:
                    parts.add(part)
            else:
                wanted[top] = None  # the whole field
        kept: dict[str, Any] = {}
        for top, parts in wanted.items():
            value = values.get(top)
            if parts is not None and isinstance(value, Mapping):
                kept[top] = {p: value.get(p) for p in parts}
            else:
                kept[top] = value
        values = kept
    elif kind.startswith("GAP_") or kind == "DELETE":
        values = {}
    # CREATE, UNDELETE: every field, null ones too (they are null in the record)
    commit = header.get("commitTimestamp")
    if isinstance(commit, int) and not isinstance(commit, bool):
        header["commitTimestamp"] = format_modstamp(datetime.fromtimestamp(commit / 1000, tz=UTC))
    if kind in ("CREATE", "UPDATE", "UNDELETE") and "SystemModstamp" not in values:
        # Change events never carry SystemModstamp; the change's own stamp stands in for it
        # (LastModifiedDate, else the commit), so the worker need not read it back.
        values["SystemModstamp"] = values.get("LastModifiedDate") or header["commitTimestamp"]
    return {"ChangeEventHeader": header, **values}


def is_overflow(cdc: Mapping[str, Any]) -> bool:
    return (cdc.get("ChangeEventHeader") or {}).get("changeType") == "GAP_OVERFLOW"


def own_write(cdc: Mapping[str, Any], client_name: str, integration_user_id: str | None) -> bool:
    """Made by the bridge: the header's commitUser is the integration user, or its
    changeOrigin names the bridge's client (``…;client=<name>``, from Sforce-Call-Options)."""
    header = cdc.get("ChangeEventHeader") or {}
    origin = str(header.get("changeOrigin") or "")
    if f"client={client_name}" in origin:
        return True
    user = str(header.get("commitUser") or "")
    return bool(integration_user_id) and user[:15] == str(integration_user_id)[:15]


def from_pubsub(
    topic: str,
    replay_id: bytes,
    schema_id: str,
    cdc: Mapping[str, Any],
    *,
    own: bool,
    integration_user_id: str | None,
) -> list[ChangeEvent]:
    """The changes of one decoded Pub/Sub CDC event (one per record it names), stored with a
    CometD-shaped payload. An own write carries the integration user as LastModifiedById, so
    the worker skips it as `own_write` whatever the event's other fields say."""
    values = dict(cdc)
    header = values["ChangeEventHeader"]
    if own and integration_user_id:
        values["LastModifiedById"] = integration_user_id
    elif header.get("commitUser"):
        values["LastModifiedById"] = header["commitUser"]  # the header is the authority
    message = {
        "channel": topic,
        "transport": "pubsub",
        "data": {"schema": schema_id, "payload": values, "event": {"replayId": replay_id.hex()}},
    }
    return from_cdc(topic, None, None, values, message)


def malformed_pubsub(topic: str, replay_id: bytes, raw: bytes, error: str) -> ChangeEvent:
    """An event we cannot read, stored with its raw payload so a reviewer can see it."""
    payload = {"channel": topic, "transport": "pubsub", "replay_id": replay_id.hex(),
               "raw": raw.hex()[:20000]}  # fmt: skip
    return unreadable(topic, None, payload, error)
