"""The scheduled value check of mapped formula fields (`value_check.every`, per org).

A formula field changes when what it reads changes — often another record — without a new
SystemModstamp on its own record, so neither streaming (PushTopics do not support formula
fields; Change Data Capture does not track them) nor SystemModstamp polling sees it. The
check reads, for every object whose mapped fields the org's describe marks ``calculated``,
the records the bridge tracks (the Salesforce ids its referrals carry) in batches of
`value_check.batch_size` with ``Id IN (...)`` (built with `format_soql`), compares the formula
values with the record as the bridge last saw it (its latest entry), and stores each record
whose formula values changed as an inbound event — the receiver takes it from there like any
other change (field sync included). The change is no one's edit: its record goes to the
receiver without LastModifiedById (the intake drops it for these channels), so a record the
bridge wrote last is not skipped as its own write.

Cost per run: one describe per object with read mappings, plus one query per batch of tracked
records; the run's report gives the figure (`calls`) and the poll process logs it. A record
never seen before counts as changed (the first run reads every tracked record's values once).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from simple_salesforce import format_soql
from sqlalchemy import select

from bridge.config import OrgConfig
from bridge.receiver.matching import SF_ID_COLUMNS
from bridge.salesforce.check import describe_objects
from bridge.store import Store
from bridge.store.models import Program, Referral, SalesEntry, utcnow
from bridge.streaming import inbox
from bridge.streaming.events import ChangeEvent, format_modstamp, from_polled_record
from bridge.streaming.poller import pages, poll_fields
from bridge.vocabulary import READ_SYNC_RULES, STREAMED_OBJECTS

log = logging.getLogger("sfbridge.valuecheck")

CHANNEL_PREFIX = inbox.VALUES_PREFIX
LAST_RUN = "values:last_run"  # the cursor channel whose modstamp is the last run's start


@dataclass(frozen=True)
class ValueChange(ChangeEvent):
    """A record whose formula values changed: keyed by the values, since its SystemModstamp
    did not move (a polled or streamed change of the same stamp is another change)."""

    digest: str = ""

    @property
    def change_key(self) -> str:
        stamp = format_modstamp(self.modstamp) if self.modstamp else "-"
        return f"{self.record_id}@{stamp}:values:{self.digest}"


@dataclass
class Report:
    """One run: API calls spent, and per object the records read and changed."""

    calls: int = 0
    read: dict[str, int] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{o} {self.read[o]} read / {self.changed.get(o, 0)} changed" for o in self.read]
        return (
            f"value check: {', '.join(parts) or 'no formula fields mapped'}; {self.calls} API calls"
        )


def mapped_read_fields(org: OrgConfig) -> dict[str, list[str]]:
    """Per object, the Salesforce fields its mappings read."""
    out: dict[str, list[str]] = {}
    for sobject, spec in org.writeback.objects.items():
        for m in spec.fields:
            if m.sync in READ_SYNC_RULES:
                out.setdefault(sobject, [])
                out[sobject] += [f for f in m.salesforce if f not in out[sobject]]
    return out


def formula_fields(
    mapped: Mapping[str, Sequence[str]], describes: Mapping[str, Any]
) -> dict[str, list[str]]:
    """The mapped fields the describes mark calculated, per object (pure)."""
    out: dict[str, list[str]] = {}
    for sobject, names in mapped.items():
        desc = describes.get(sobject)
        if not isinstance(desc, Mapping):
            continue
        calculated = {f["name"] for f in desc.get("fields", []) if f.get("calculated")}
        found = [n for n in names if n in calculated]
        if found:
            out[sobject] = found
    return out


def changed_records(
    records: Sequence[Mapping[str, Any]],
    seen: Mapping[str, Mapping[str, Any]],
    fields: Sequence[str],
) -> list[dict[str, Any]]:
    """The records whose values of `fields` differ from the record as last seen (pure)."""
    out = []
    for rec in records:
        before = seen.get(str(rec.get("Id")))
        if before is None or any(before.get(f) != rec.get(f) for f in fields):
            out.append(dict(rec))
    return out


def _digest(record: Mapping[str, Any], fields: Sequence[str]) -> str:
    values = json.dumps([record.get(f) for f in fields], default=str)
    return hashlib.sha256(values.encode()).hexdigest()[:16]


def tracked_ids(store: Store, org: OrgConfig, sobject: str) -> list[str]:
    """The Salesforce ids of `sobject` the referrals of the org's programs carry."""
    column = getattr(Referral, SF_ID_COLUMNS[sobject])
    keys = [p.key for p in org.programs]
    with store.session() as session:
        rows = session.scalars(
            select(column)
            .join(Program, Program.id == Referral.program_id)
            .where(Program.key.in_(keys), column.is_not(None))
            .distinct()
        )
        return sorted(str(r) for r in rows)


def last_seen(
    store: Store, org_connection_id: int, sobject: str, ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Each record as the latest entry the receiver took carried it: an echo of the bridge's
    own write is skipped before the receiver, so a formula value it carried was never read."""
    out: dict[str, dict[str, Any]] = {}
    with store.session() as session:
        rows = session.execute(
            select(SalesEntry.record_id, SalesEntry.records, SalesEntry.reasons)
            .where(
                SalesEntry.org_connection_id == org_connection_id,
                SalesEntry.sobject_type == sobject,
                SalesEntry.record_id.in_(list(ids)),
            )
            .order_by(SalesEntry.id)
        )
        for record_id, records, reasons in rows:
            if "own_write" in (reasons or []):
                continue
            record = (records or {}).get(sobject)
            if isinstance(record, Mapping):
                out[str(record_id)] = dict(record)
    return out


def run(
    store: Store,
    sforg: Any,
    org_connection_id: int,
    org: OrgConfig,
    *,
    enqueue: Callable[[list[int]], object],
) -> Report:
    """One value check of the org: read, compare, store the changes, enqueue them."""
    report = Report()
    started = utcnow()
    mapped = mapped_read_fields(org)
    describes = describe_objects(sforg, [o for o in STREAMED_OBJECTS if o in mapped])
    report.calls += len(describes)
    for sobject, fields in formula_fields(mapped, describes).items():
        ids = tracked_ids(store, org, sobject)
        report.read[sobject] = report.changed[sobject] = 0
        wanted = [f for f in poll_fields(org, sobject) if f != "LastModifiedById"]
        for start in range(0, len(ids), org.value_check.batch_size):
            part = ids[start : start + org.value_check.batch_size]
            soql = format_soql(
                "SELECT {fields:literal} FROM {sobject:literal} WHERE Id IN {ids}",
                fields=", ".join(wanted),
                sobject=sobject,
                ids=part,
            )
            records: list[dict[str, Any]] = []
            for page in pages(sforg, soql, org.value_check.batch_size):
                report.calls += 1
                records += [{k: v for k, v in r.items() if k != "attributes"} for r in page]
            report.read[sobject] += len(records)
            changed = changed_records(
                records, last_seen(store, org_connection_id, sobject, part), fields
            )
            events = [_event(sobject, rec, fields) for rec in changed]
            with store.session() as session:
                new_ids = inbox.store_events(session, org_connection_id, events)
            report.changed[sobject] += len(new_ids)
            if new_ids:
                enqueue(new_ids)
    with store.session() as session:
        inbox.advance_modstamp(session, org_connection_id, LAST_RUN, started)
    log.info(report.summary())
    return report


def _event(sobject: str, record: dict[str, Any], fields: Sequence[str]) -> ValueChange:
    base = from_polled_record(sobject, record, f"{CHANNEL_PREFIX}{sobject}")
    return ValueChange(
        channel=base.channel,
        replay_id=None,
        source="poll",
        sobject_type=sobject,
        record_id=base.record_id,
        change_type="updated",
        event_created_at=utcnow(),
        modstamp=base.modstamp,
        fields=base.fields,
        payload=base.payload,
        digest=_digest(record, fields),
    )


def due(store: Store, org_connection_id: int, org: OrgConfig) -> bool:
    """Whether the org's value check should run now (`value_check.every` since the last)."""
    if org.value_check.every is None:
        return False
    with store.session() as session:
        cursor = inbox.get_cursor(session, org_connection_id, LAST_RUN)
        last = cursor.modstamp if cursor is not None else None
    return last is None or utcnow() - last >= timedelta(seconds=org.value_check.every)
