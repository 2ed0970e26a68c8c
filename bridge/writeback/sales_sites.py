"""A sale's location list as custom object records (Sellfire's multi-site sync,
`writeback.sales.sites`): one organization per Account, then one site per location, linked to
the Account and to the organization.

Both are upserted by an external id the bridge fills in — the organization by the Account's
id, a site by `site_key` (the Account's id and the location, normalised) — in sObject
Collections of 200, so a repeated or resent sale updates the records it wrote instead of
adding more, and a second sale adds only the locations that are new. Sales of one batch that
name the same organization or site share one write (a collection may not name a key twice).
Each record's outcome (created, or already there and updated) is kept on the push
(`result.organization`, `result.sites`); a resend writes only what is still missing.
"""

from __future__ import annotations

import hashlib

from bridge.config import OrgConfig
from bridge.sitesconfig import Sites
from bridge.writeback.client import Writer
from bridge.writeback.sales_records import Event, SharedWrite, write

NAME_LENGTH = 80
"""A custom object's Name holds 80 characters."""

KEY_LENGTH = 255
"""The external id fields are Text(255)."""


def normalise(location: str) -> str:
    """A location as the key compares it: lower case, single spaces."""
    return " ".join(location.casefold().split())


def site_key(account_id: str, location: str) -> str:
    """`<account id>:<location, normalised>`; a location too long for the field is keyed by
    its SHA-256 instead (the same location always gets the same key)."""
    key = f"{account_id}:{normalise(location)}"
    if len(key) <= KEY_LENGTH:
        return key
    return f"{account_id}:sha256:{hashlib.sha256(normalise(location).encode()).hexdigest()}"


def write_sites(writer: Writer, cfg: OrgConfig, batch: list[Event]) -> None:
    spec = cfg.writeback.sales.sites
    if spec is None:
        return
    todo = [
        e
        for e in batch
        if e.kind == "sale"
        and e.body.get("locations")
        and not all(s.get("record_id") for s in e.result.get("sites") or [{}])
    ]
    if not todo:
        return
    if spec.organization is not None:
        _organizations(writer, spec, todo)
    _sites(writer, spec, [e for e in todo if e.live()])


def _action(w: SharedWrite) -> str:
    return "create" if w.created else "update"


def _organizations(writer: Writer, spec: Sites, todo: list[Event]) -> None:
    org = spec.organization
    assert org is not None
    writes: dict[str, SharedWrite] = {}
    for event in todo:
        if (event.result.get("organization") or {}).get("record_id"):
            continue
        account = str(event.account_id)
        fields = {org.key_field: account, org.account_field: account}
        if event.business:
            fields[org.name_field] = event.business[:NAME_LENGTH]
        writes.setdefault(account, SharedWrite([], fields)).events.append(event)
    write(writer, org.object, list(writes.values()), upsert_by=org.key_field)
    for account, w in writes.items():
        if not w.ok:
            continue
        reason = (
            "the account's first organization"
            if w.created
            else f"the account's organization ({org.key_field} {account})"
        )
        for event in w.events:
            event.result["organization"] = {
                "action": _action(w),
                "record_id": w.saved_id,
                "reason": reason,
            }


def _sites(writer: Writer, spec: Sites, todo: list[Event]) -> None:
    writes: dict[str, SharedWrite] = {}
    wanted: list[tuple[Event, int, str]] = []
    for event in todo:
        account = str(event.account_id)
        sites = event.result.get("sites")
        if sites is None:  # one site per distinct location, in the sale's order
            by_key: dict[str, dict[str, str]] = {}
            for location in event.body["locations"]:
                by_key.setdefault(site_key(account, location), {"location": location})
            sites = [{"key": k, **v} for k, v in by_key.items()]
            event.result["sites"] = sites
        organization = (event.result.get("organization") or {}).get("record_id")
        for n, site in enumerate(sites):
            if site.get("record_id"):
                continue
            fields = {
                spec.key_field: site["key"],
                spec.name_field: site["location"][:NAME_LENGTH],
                spec.account_field: account,
            }
            if spec.location_field:
                fields[spec.location_field] = site["location"]
            if spec.organization_field and organization:
                fields[spec.organization_field] = organization
            writes.setdefault(site["key"], SharedWrite([], fields)).events.append(event)
            wanted.append((event, n, site["key"]))
    write(writer, spec.object, list(writes.values()), upsert_by=spec.key_field)
    for event, n, key in wanted:
        w = writes[key]
        if w.ok:
            event.result["sites"][n] |= {
                "action": _action(w),
                "record_id": w.saved_id,
                "reason": "a new location of the account"
                if w.created
                else "the account already has this site: updated",
            }
