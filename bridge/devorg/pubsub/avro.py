"""Avro schemas and payloads of the local org's Pub/Sub events.

One schema per change event entity (``LeadChangeEvent`` …), built from the object's fields in
the org's schema: the ``ChangeEventHeader`` record first, then every non-formula field as a
``["null", type]`` union (compound Name and addresses as nested records), as Salesforce's
change event schemas are (Pub/Sub API Developer Guide, "Event Data Serialization with Apache
Avro"; Change Data Capture Developer Guide, "Change Event Message Structure"). Datetimes are
epoch milliseconds, dates epoch days, and each field's ``doc`` tells its Salesforce type.

``changedFields``/``nulledFields``/``diffFields`` are bitmaps (Pub/Sub API Developer Guide,
"Event Deserialization Considerations"): the first string is a hex bitmap over the schema's
top-level fields (bit *i* = field *i*), then one ``"<i>-0x…"`` string per compound field *i*
with changed components, over the nested record's fields.

A schema's id is the hex MD5 of its canonical JSON, so the same fields give the same id across
restarts.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import fastavro

from bridge.devorg import pushtopic
from bridge.devorg.schema import FieldDef, ObjectDef

NAMESPACE = "com.sforce.eventbus"
CHANGE_TYPES = [
    "CREATE", "UPDATE", "DELETE", "UNDELETE",
    "GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW",
]  # fmt: skip

_HEADER = {
    "type": "record",
    "name": "ChangeEventHeader",
    "namespace": NAMESPACE,
    "fields": [
        {"name": "entityName", "type": "string"},
        {"name": "recordIds", "type": {"type": "array", "items": "string"}},
        {
            "name": "changeType",
            "type": {"type": "enum", "name": "ChangeType", "symbols": CHANGE_TYPES},
        },
        {"name": "changeOrigin", "type": "string"},
        {"name": "transactionKey", "type": "string"},
        {"name": "sequenceNumber", "type": "int"},
        {"name": "commitTimestamp", "type": "long"},
        {"name": "commitNumber", "type": "long"},
        {"name": "commitUser", "type": "string"},
        {"name": "nulledFields", "type": {"type": "array", "items": "string"}},
        {"name": "diffFields", "type": {"type": "array", "items": "string"}},
        {"name": "changedFields", "type": {"type": "array", "items": "string"}},
    ],
}

_AVRO_TYPES = {
    "boolean": "boolean",
    "int": "int",
    "double": "double",
    "currency": "double",
    "percent": "double",
    "datetime": "long",
    "date": "int",
}
_EPOCH = date(1970, 1, 1)


@dataclass
class EventSchema:
    """One topic schema: its Avro JSON, id, and what the encoder needs to fill it."""

    name: str
    schema_json: str
    schema_id: str
    parsed: Any
    #: top-level field names in schema order (the bitmap positions)
    positions: list[str] = field(default_factory=list)
    #: compound field -> its components (event name -> record field), in schema order
    compounds: dict[str, dict[str, str]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)  # record field -> Salesforce type


def _build(name: str, fields: list[dict[str, Any]], **extra: Any) -> EventSchema:
    schema = {"type": "record", "name": name, "namespace": NAMESPACE, "fields": fields}
    text = json.dumps(schema, separators=(",", ":"))
    schema_id = hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
    parsed = fastavro.parse_schema(json.loads(text))
    return EventSchema(name, text, schema_id, parsed, **extra)


def _field(name: str, fd: FieldDef | None) -> dict[str, Any]:
    kind = fd.type if fd is not None else "string"
    return {
        "name": name,
        "type": ["null", _AVRO_TYPES.get(kind, "string")],
        "doc": f"{kind}",
        "default": None,
    }


def change_event_schema(obj: ObjectDef) -> EventSchema:
    """The change event schema of one object (``<Object>ChangeEvent``)."""
    names = {n: None for n, fd in obj.fields.items() if not fd.calculated}
    compounds = pushtopic.compound_fields(names)
    component_of = {f: c for c, parts in compounds.items() for f in parts.values()}
    fields: list[dict[str, Any]] = [{"name": "ChangeEventHeader", "type": _HEADER}]
    positions = ["ChangeEventHeader"]
    placed: set[str] = set()
    types: dict[str, str] = {}
    for name, fd in obj.fields.items():
        if fd.calculated or name in pushtopic.CDC_SKIPPED:
            continue
        types[name] = fd.type
        compound = component_of.get(name)
        if compound is None and name in compounds:
            compound = name  # a person's Name: derived, its components tell the change
        if compound is not None:
            if compound in placed:
                continue
            placed.add(compound)
            parts = compounds[compound]
            nested = {
                "type": "record",
                "name": f"{compound}",
                "namespace": f"{NAMESPACE}.{obj.name}",
                "fields": [_field(part, obj.fields.get(rf)) for part, rf in parts.items()],
            }
            fields.append({"name": compound, "type": ["null", nested], "default": None})
            positions.append(compound)
            continue
        fields.append(_field(name, fd))
        positions.append(name)
    return _build(
        f"{obj.name}ChangeEvent", fields, positions=positions, compounds=compounds, types=types
    )


def platform_event_schema(name: str, field_names: Iterable[str]) -> EventSchema:
    """A platform event's schema: CreatedDate, CreatedById and its custom fields."""
    fields = [
        {"name": "CreatedDate", "type": "long", "doc": "datetime"},
        {"name": "CreatedById", "type": "string", "doc": "reference"},
    ]
    fields += [_field(n, None) for n in field_names]
    return _build(name, fields, positions=[f["name"] for f in fields])


# ---- values ------------------------------------------------------------------------------


def _value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    try:
        if kind == "boolean":
            return bool(value)
        if kind == "int":
            return int(value)
        if kind in ("double", "currency", "percent"):
            return float(value)
        if kind == "datetime":
            text = str(value).replace("Z", "+00:00")
            if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
                text = text[:-2] + ":" + text[-2:]
            parsed = datetime.fromisoformat(text)
            return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)
        if kind == "date":
            return (date.fromisoformat(str(value)[:10]) - _EPOCH).days
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, str) else json.dumps(value, default=str)


def bitmap(schema: EventSchema, paths: Iterable[str]) -> list[str]:
    """Field names (``Compound.Component`` for components) as the header's bitmap strings."""
    top = 0
    nested: dict[int, int] = {}
    for path in paths:
        head, _, part = path.partition(".")
        if head not in schema.positions:
            continue
        index = schema.positions.index(head)
        if part:
            parts = list(schema.compounds.get(head, {}))
            if part in parts:
                nested[index] = nested.get(index, 0) | (1 << parts.index(part))
        else:
            top |= 1 << index
    if not top and not nested:
        return []
    out = [f"0x{top:X}"]
    out += [f"{i}-0x{bits:X}" for i, bits in sorted(nested.items())]
    return out


def change_event(
    schema: EventSchema, payload: Mapping[str, Any], *, record_ids: list[str] | None = None
) -> dict[str, Any]:
    """A CDC payload as ``pushtopic.cdc_payload`` builds it, shaped to the Avro schema: every
    field present (unchanged ones null), values typed, the field lists as bitmaps."""
    header = dict(payload["ChangeEventHeader"])
    if record_ids is not None:
        header["recordIds"] = record_ids
    for key in ("changedFields", "nulledFields", "diffFields"):
        header[key] = bitmap(schema, header.get(key) or [])
    out: dict[str, Any] = {"ChangeEventHeader": header}
    for name in schema.positions[1:]:
        parts = schema.compounds.get(name)
        value = payload.get(name)
        if parts is not None:
            if isinstance(value, Mapping):
                out[name] = {
                    part: _value(schema.types.get(rf, "string"), value.get(part))
                    for part, rf in parts.items()
                }
            else:
                out[name] = None
            continue
        out[name] = _value(schema.types.get(name, "string"), value)
    return out


def encode(schema: EventSchema, record: Mapping[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.parsed, dict(record))
    return buf.getvalue()


def decode(schema: EventSchema, payload: bytes) -> dict[str, Any]:
    result = fastavro.schemaless_reader(io.BytesIO(payload), schema.parsed, None)
    assert isinstance(result, dict)
    return result
