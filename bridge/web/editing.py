"""Which record fields a reviewer may set on an entry (the UI's "edit fields" and the API's
PATCH): those the record already has, and those of the org's describe as the last `sfbridge
org check` saw it (bridge.salesforce.fieldcache) — or, for an object never described, those
the org's receiver config reads. Any other name (`Lead.Emial`) is refused with the nearest
known name as a hint. Pure."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.config import OrgConfig
from bridge.vocabulary import STREAMED_OBJECTS


@dataclass(frozen=True)
class KnownFields:
    names: list[str]
    source: str  # where the names beyond the record's come from, for the refusal


def known_fields(
    records: Mapping[str, Any],
    org: OrgConfig | None,
    described: Mapping[str, list[str]] | None = None,
) -> dict[str, KnownFields]:
    out: dict[str, KnownFields] = {}
    for obj in STREAMED_OBJECTS:
        record = records.get(obj) or {}
        names = {k for k in record if k != "attributes"}
        if described and obj in described:
            names.update(described[obj])
            source = "the org's describe"
        else:
            names.update(org.fields_read(obj) if org else ())
            source = "the fields the config reads (run `sfbridge org check` for the describe)"
        out[obj] = KnownFields(sorted(names), source)
    return out


def unknown_field(obj: str, name: str, known: KnownFields) -> str | None:
    """Why `obj.name` cannot be set, or None when it is a known field."""
    if name in known.names:
        return None
    close = difflib.get_close_matches(name, known.names, n=1)
    hint = f"; did you mean {obj}.{close[0]}?" if close else ""
    return f"'{obj}.{name}' is not a field of {obj}: not in the record nor {known.source}{hint}"
