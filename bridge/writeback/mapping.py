"""Field mappings, sync rules, sync modes and dedupe keys (pure: no I/O).

A mapping ties one local field to one or more Salesforce fields of an object, with a sync rule
(who is the source of truth) and a strategy (whether a value already on the destination side
may be replaced):

=========================  ==================================================================
rule                       effect
=========================  ==================================================================
``read_only``              Salesforce → local only; the bridge never writes the field
``read_write``             local → Salesforce; a blank local value is filled from Salesforce
``salesforce_unless_blank`` Salesforce wins; the bridge writes only where Salesforce is blank
``ours``                   local → Salesforce only; Salesforce values are never read back
``none``                   not synced
=========================  ==================================================================

``override`` replaces a different value on the destination side; ``if_empty`` writes only where
the destination is blank. The strategy applies to whichever side is being written (Salesforce
for outbound writes, the local record for values read back).

Blank handling: ``None``, empty or whitespace-only strings and empty lists are blank; ``0`` and
``False`` are values. A blank local value never clears a Salesforce field (an absent value is
not an instruction to erase the customer's data). A blank Salesforce value clears a local one
only under ``read_only`` with ``override``, where Salesforce is the only source of truth.

Several Salesforce fields per local field: each is written independently; when reading back,
the first non-blank one in the listed order wins.

Sync triggers: a mapping is written only at the events its ``on`` names (``create_update``: a
referral's add or edit; ``demo_set``; ``sale``); reading back does not depend on them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from publicsuffix2 import get_sld, get_tld

from bridge.config import FieldMapping
from bridge.vocabulary import SyncMode, SyncTrigger

SyncAction = Literal["create", "update", "skip"]


def is_blank(value: Any) -> bool:
    """True for None, empty/whitespace strings and empty collections; 0 and False are values."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple, set, dict)):
        return len(value) == 0
    return False


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()
    return bool(a == b)


@dataclass(frozen=True)
class FieldPlan:
    """What to do with one record: Salesforce fields to write, local fields to take from it."""

    writes: dict[str, Any] = field(default_factory=dict)
    local_updates: dict[str, Any] = field(default_factory=dict)


def _write_allowed(strategy: str, destination: Any, value: Any) -> bool:
    if strategy == "if_empty":
        return is_blank(destination)
    return not _same(destination, value)


def plan_fields(
    local: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    mappings: Sequence[FieldMapping],
    event: SyncTrigger = "create_update",
) -> FieldPlan:
    """Decide the Salesforce writes and local updates for one record.

    `local` holds the local values by local field name; `current` the record's current
    Salesforce values by field name, or None when the record does not exist yet (a create: every
    Salesforce field is blank and nothing is read back). A Salesforce field missing from
    `current` was not read, so it is treated as blank for writes and never read back. When two
    mappings write the same Salesforce field, the first one listed wins. Only mappings whose `on`
    names `event` are written.
    """
    writes: dict[str, Any] = {}
    updates: dict[str, Any] = {}
    exists = current is not None
    sf_now: Mapping[str, Any] = current or {}

    for m in mappings:
        ours = local.get(m.local)
        known = [f for f in m.salesforce if f in sf_now]
        theirs = next((sf_now[f] for f in known if not is_blank(sf_now[f])), None)
        # (value, strategy) to read back into the local field, and the fields to write
        read: tuple[Any, str] | None = None
        write_to: list[str] = []
        write_strategy = m.strategy

        if m.sync == "read_only":
            if theirs is not None:
                read = (theirs, m.strategy)
            elif m.strategy == "override":
                read = (None, "override")  # Salesforce cleared it: the mirror follows
        elif m.sync == "ours":
            if not is_blank(ours):
                write_to = list(m.salesforce)
        elif m.sync == "read_write":
            if not is_blank(ours):
                write_to = list(m.salesforce)
            elif theirs is not None:
                read = (theirs, "if_empty")
        elif m.sync == "salesforce_unless_blank":
            if theirs is not None:
                read = (theirs, m.strategy)
            if not is_blank(ours):
                write_to = [f for f in m.salesforce if is_blank(sf_now.get(f))]
                write_strategy = "if_empty"

        for name in write_to if event in m.on else []:
            if name in writes:
                continue
            if exists and not _write_allowed(write_strategy, sf_now.get(name), ours):
                continue
            writes[name] = ours
        if read is not None and exists and known and m.local not in updates:
            value, strategy = read
            if strategy == "if_empty" and not is_blank(ours):
                continue
            if not _same(ours, value) and not (is_blank(ours) and is_blank(value)):
                updates[m.local] = value
    return FieldPlan(writes=writes, local_updates=updates)


def sync_action(mode: SyncMode, existing_id: str | None) -> SyncAction:
    """`create_update`: create or update; `update_only`: only existing records; `disabled`."""
    if mode == "disabled":
        return "skip"
    if existing_id:
        return "update"
    return "create" if mode == "create_update" else "skip"


# --------------------------------------------------------------------------------------------
# Dedupe keys
# --------------------------------------------------------------------------------------------

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def salesforce_email(email: str | None) -> str | None:
    """The email as Salesforce compares it: trimmed and lower-cased (Contacts and Leads dedupe
    on it). Unlike the stored matching key (bridge.matchkeys.email_key) it keeps Gmail's dots
    and +tags: to Salesforce those are different addresses."""
    if is_blank(email):
        return None
    value = str(email).strip().lower()
    return value if _EMAIL.match(value) else None


def _host(value: str) -> str | None:
    text = value.strip().lower()
    if not text:
        return None
    if "@" in text and "/" not in text:
        text = text.rsplit("@", 1)[1]
    if "//" not in text:
        text = "//" + text
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return None
    if not host:
        return None
    return host.rstrip(".")


def root_domain(value: str | None) -> str | None:
    """The registrable domain of a URL, host name or email address, public-suffix aware.

    ``https://www.foo.co.uk/about`` and ``foo.co.uk`` give ``foo.co.uk``; ``a.github.io`` and
    ``b.github.io`` stay apart because ``github.io`` is a public suffix. IP addresses and
    single-label hosts are returned as they are; anything without a host gives None.
    """
    if value is None:
        return None
    host = _host(str(value))
    if host is None:
        return None
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if "." not in host:
        return host
    if get_tld(host, strict=True) == host:
        return None  # a bare public suffix ("co.uk", "github.io") names no one company
    sld = get_sld(host, strict=True)
    if sld is None:
        # A suffix the list does not know (an intranet TLD): the last two labels.
        return ".".join(host.split(".")[-2:])
    return str(sld)


def find_account(
    domain: str | None, accounts: Iterable[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """The oldest account whose Website has this root domain (accounts dedupe on root domain)."""
    key = root_domain(domain)
    if key is None:
        return None
    matches = [dict(a) for a in accounts if root_domain(a.get("Website")) == key]
    matches.sort(key=lambda a: (str(a.get("CreatedDate") or ""), str(a.get("Id") or "")))
    return matches[0] if matches else None
