"""The field names of each org's objects as its describe last reported them, kept in the
instance folder (`describes/<org>.json`) by `sfbridge org check`, so the review UI can refuse a
mistyped field name (`Lead.Emial`) without calling Salesforce on every save. Beside it: the
active values of each picklist (`<org>.picklists.json`, for the mapping page's Inspect view)
and the findings of the last check (`<org>.check.json`, run from the CLI or the page)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _path(instance_dir: str | os.PathLike[str], org_name: str, kind: str = "") -> Path:
    suffix = f".{kind}.json" if kind else ".json"
    return Path(instance_dir) / "describes" / f"{_SAFE.sub('_', org_name)}{suffix}"


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(path)  # readers never see half a file


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def save_field_names(
    instance_dir: str | os.PathLike[str], org_name: str, describes: Mapping[str, Any]
) -> None:
    """Keep the field names of every object that was described (an error text is skipped)."""
    names = {
        obj: sorted(str(f["name"]) for f in d.get("fields", []))
        for obj, d in describes.items()
        if isinstance(d, Mapping)
    }
    picklists = {
        obj: {
            str(f["name"]): [
                str(v["value"]) for v in f.get("picklistValues") or [] if v.get("active", True)
            ]
            for f in d.get("fields", [])
            if f.get("type") in ("picklist", "multipicklist")
        }
        for obj, d in describes.items()
        if isinstance(d, Mapping)
    }
    _write(_path(instance_dir, org_name, "picklists"), picklists)
    _write(_path(instance_dir, org_name), names)


def load_field_names(instance_dir: str | os.PathLike[str], org_name: str) -> dict[str, list[str]]:
    """Object -> field names from the last `org check`; empty when there was none."""
    data = _read(_path(instance_dir, org_name))
    if not isinstance(data, dict):
        return {}
    return {str(k): [str(n) for n in v] for k, v in data.items() if isinstance(v, list)}


def load_picklists(
    instance_dir: str | os.PathLike[str], org_name: str
) -> dict[str, dict[str, list[str]]]:
    """Object -> picklist field -> its active values, from the last `org check`."""
    data = _read(_path(instance_dir, org_name, "picklists"))
    return data if isinstance(data, dict) else {}


def save_check(
    instance_dir: str | os.PathLike[str], org_name: str, findings: list[dict[str, str]]
) -> None:
    """The findings of a check (check, subject, status, reason), stamped with the time now."""
    at = datetime.now(UTC).isoformat()
    _write(_path(instance_dir, org_name, "check"), {"at": at, "findings": findings})


def load_check(instance_dir: str | os.PathLike[str], org_name: str) -> dict[str, Any] | None:
    """{"at": ..., "findings": [...]} of the last check, or None."""
    data = _read(_path(instance_dir, org_name, "check"))
    return data if isinstance(data, dict) and isinstance(data.get("findings"), list) else None
