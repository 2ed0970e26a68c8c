"""Does a write fit the org's fields? Checked at the door (the API), before a push is saved.

Pure: `field_rules(describe)` keeps what matters of an object's describe (type, length, the
values of a restricted picklist), `misfits(record, rules)` names every value Salesforce would
refuse with STRING_TOO_LONG, INVALID_EMAIL_ADDRESS or INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST.
Lengths come from the org (Lead.LastName is 80, not 255). Unrestricted picklists take any value
in Salesforce, so only restricted ones are checked. A field the describe does not list is left
alone: that is the mapping's problem (`sfbridge org check`), not the input's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TEXT_TYPES = (
    "string",
    "textarea",
    "email",
    "phone",
    "url",
    "picklist",
    "multipicklist",
    "combobox",
)
# Salesforce's own check is looser than RFC 5322 but refuses what has no local part, no "@" or
# no dot in the domain, and spaces.
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Misfit:
    field: str
    problem: str  # too_long | invalid_email | bad_picklist_value
    limit: int | None
    length: int | None
    message: str


def field_rules(describe: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Field name (lower-cased) → {name, type, length, restricted, values}, text fields only."""
    out: dict[str, dict[str, Any]] = {}
    for f in describe.get("fields") or []:
        if f.get("type") not in TEXT_TYPES:
            continue
        out[str(f["name"]).lower()] = {
            "name": f["name"],
            "type": f["type"],
            "length": int(f.get("length") or 0),
            "restricted": bool(f.get("restrictedPicklist")),
            "values": [v["value"] for v in f.get("picklistValues") or [] if v.get("active", True)],
        }
    return out


def misfits(
    sobject: str, record: Mapping[str, Any], rules: Mapping[str, Mapping[str, Any]]
) -> list[Misfit]:
    """Every value of `record` that `sobject`'s fields would refuse."""
    found: list[Misfit] = []
    for name, value in record.items():
        rule = rules.get(name.lower())
        if rule is None or value is None or isinstance(value, (dict, list, bool)):
            continue
        text = str(value)
        label = f"{sobject}.{rule['name']}"
        if rule["length"] and len(text) > rule["length"]:
            found.append(
                Misfit(
                    name,
                    "too_long",
                    rule["length"],
                    len(text),
                    f"{label} takes at most {rule['length']} characters; this value has "
                    f"{len(text)}",
                )  # fmt: skip
            )
        elif rule["type"] == "email" and text and not EMAIL.match(text):
            found.append(
                Misfit(name, "invalid_email", None, len(text), f"{label}: not an email address")
            )
        elif rule["type"] == "picklist" and rule["restricted"] and text not in rule["values"]:
            allowed = ", ".join(rule["values"][:20])
            found.append(
                Misfit(
                    name,
                    "bad_picklist_value",
                    None,
                    len(text),
                    f"{label} is a restricted picklist: {text!r} is not one of {allowed}",
                )  # fmt: skip
            )
    return found
