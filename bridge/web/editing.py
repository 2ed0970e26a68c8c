"""Which record fields a reviewer may set on an entry (the UI's "edit fields" and the API's
PATCH): those the record already has and those the org's receiver config reads. The bridge
keeps no copy of the org's describe, so the config is what it knows beyond the record; a name
outside both (`Lead.Emial`) is refused with the nearest known name as a hint. Pure."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from bridge.config import OrgConfig
from bridge.vocabulary import STREAMED_OBJECTS


def known_fields(records: Mapping[str, Any], org: OrgConfig | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for obj in STREAMED_OBJECTS:
        record = records.get(obj) or {}
        names = {k for k in record if k != "attributes"}
        names.update(org.fields_read(obj) if org else ())
        out[obj] = sorted(names)
    return out


def unknown_field(obj: str, name: str, known: list[str]) -> str | None:
    """Why `obj.name` cannot be set, or None when it is a known field."""
    if name in known:
        return None
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {obj}.{close[0]}?" if close else ""
    return (
        f"'{obj}.{name}' is not a field this bridge knows on {obj} (neither in the record nor "
        f"read by the config){hint}"
    )
