"""Phase sync (pure: no I/O): the referral's lead phase to a picklist on its Lead/Contact, and
Salesforce's changes of that picklist back, under the allowed inbound phases
(`writeback.sales.phases`, Sellfire's phase sync).

- **Out.** A phase set here (API `POST`/`PATCH /referrals`) is written as its picklist value
  (`names`) into the configured field (`field`) of each Salesforce record of the referral, as
  a `field_update` push through the outbound engine (`outbound`).
- **In.** A streamed change of the picklist is taken only when it moves to a phase of
  `inbound`; any other value is refused with the reason in words and the local phase stays
  (`inbound`).
- **Cycles.** Moving into a phase of `end_cycle` (resting, retired) ends the sales cycle: the
  next sale or demo gets a new Opportunity on the same Account (`ends_cycle`).
- **Org check.** The picklist of each object must have every mapped value (`missing_values`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.config import OrgConfig, Phases
from bridge.writeback.mapping import is_blank

PHASE = "phase"
"""The local name of the phase (a referral column)."""


def config(org: OrgConfig) -> Phases | None:
    """The org's phase sync, or None when it is off."""
    return org.writeback.sales.phases


def unknown_phase(org: OrgConfig, phase: str | None) -> str | None:
    """Why a phase given to the API cannot be set (None: it can)."""
    cfg = config(org)
    if phase is None:
        return None
    if cfg is None:
        return "phase sync is off for this org (writeback.sales.phases)"
    if phase not in cfg.names:
        return f"'{phase}' is not a phase; the phases are {', '.join(cfg.names)}"
    return None


def outbound(org: OrgConfig, sobject: str, changed: Mapping[str, Any]) -> dict[str, Any]:
    """The picklist write of a local phase change onto a record of `sobject` ({}: none)."""
    cfg = config(org)
    if cfg is None or PHASE not in changed or sobject not in cfg.field:
        return {}
    phase = changed[PHASE]
    if phase is None or phase not in cfg.names:
        return {}  # a cleared phase never clears Salesforce's value
    return {cfg.field[sobject]: cfg.names[phase]}


@dataclass(frozen=True)
class PhaseChange:
    """A Salesforce change of the phase picklist: taken (`phase` is the new local phase) or
    refused (`reason` in words)."""

    accepted: bool
    phase: str | None
    value: Any
    reason: str


def inbound(
    org: OrgConfig, sobject: str, record: Mapping[str, Any], before: Mapping[str, Any],
    local_phase: str | None,
) -> PhaseChange | None:  # fmt: skip
    """Judge the record's phase picklist: None when it is no change (not read, blank, the same
    as last seen, or already ours), else the change taken or refused."""
    cfg = config(org)
    if cfg is None or sobject not in cfg.field:
        return None
    name = cfg.field[sobject]
    if name not in record or is_blank(record[name]):
        return None
    value = record[name]
    ours = cfg.names.get(local_phase) if local_phase else None
    if value == ours or (name in before and before[name] == value):
        return None
    phase = next((p for p, v in cfg.names.items() if v == value), None)
    if phase is None:
        return PhaseChange(
            False, None, value, f"{name} '{value}' is no phase of writeback.sales.phases"
        )
    if phase not in cfg.inbound:
        return PhaseChange(
            False, phase, value,
            f"{phase} is not a phase Salesforce may set (inbound: {', '.join(cfg.inbound)}); "
            f"the phase stays {local_phase or 'unset'}",
        )  # fmt: skip
    return PhaseChange(True, phase, value, f"{local_phase or 'unset'} -> {phase}")


def ends_cycle(org: OrgConfig, old: str | None, new: str | None) -> bool:
    """Whether moving from `old` to `new` ends the sales cycle (into a resting/retired phase)."""
    cfg = config(org)
    return bool(cfg and new in cfg.end_cycle and old not in cfg.end_cycle)


def missing_values(org: OrgConfig, describes: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """(`Object.Field`, what is wrong or None) for each phase picklist: missing, no picklist,
    or lacking a mapped value; [] when phase sync is off. Objects not described are skipped
    (the object check reports them)."""
    cfg = config(org)
    out: list[tuple[str, str | None]] = []
    for sobject, name in cfg.field.items() if cfg else ():
        desc = describes.get(sobject)
        if not isinstance(desc, Mapping):
            continue
        field = next((f for f in desc.get("fields") or [] if f.get("name") == name), None)
        ref = f"{sobject}.{name}"
        if field is None:
            out.append((ref, "not found: deploy the package (Sales_Phase__c) or name the field"))
        elif field.get("type") not in ("picklist", "multipicklist"):
            out.append((ref, f"is a {field.get('type')} field, not a picklist"))
        else:
            have = {v.get("value") for v in field.get("picklistValues") or [] if v.get("active")}
            missing = [v for v in cfg.names.values() if v not in have]  # type: ignore[union-attr]
            why = f"the picklist lacks phase value(s): {', '.join(missing)}" if missing else None
            out.append((ref, why))
    return out
