"""The field names of each org's objects as its describe last reported them, kept in the
instance folder (`describes/<org>.json`) by `sfbridge org check`, so the review UI can refuse a
mistyped field name (`Lead.Emial`) without calling Salesforce on every save."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _path(instance_dir: str | os.PathLike[str], org_name: str) -> Path:
    return Path(instance_dir) / "describes" / f"{_SAFE.sub('_', org_name)}.json"


def save_field_names(
    instance_dir: str | os.PathLike[str], org_name: str, describes: Mapping[str, Any]
) -> None:
    """Keep the field names of every object that was described (an error text is skipped)."""
    names = {
        obj: sorted(str(f["name"]) for f in d.get("fields", []))
        for obj, d in describes.items()
        if isinstance(d, Mapping)
    }
    path = _path(instance_dir, org_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(names, indent=1), encoding="utf-8")
    tmp.replace(path)  # readers never see half a file


def load_field_names(instance_dir: str | os.PathLike[str], org_name: str) -> dict[str, list[str]]:
    """Object -> field names from the last `org check`; empty when there was none."""
    try:
        data = json.loads(_path(instance_dir, org_name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): [str(n) for n in v] for k, v in data.items() if isinstance(v, list)}
