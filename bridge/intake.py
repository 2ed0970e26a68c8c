"""Intake: a claimed batch of stored inbound events becomes saved sales entries.

The job claims its events (`claims.claim`, which gives back their rows) and `load`s them into
an `IntakeBatch` in the claim's transaction; `take_in` runs the steps over it:

1. `load` reads, per org connection, its config, integration user and version;
2. `relate` reads what the events lack from Salesforce in bulk (the relational rules), per
   org; own writes go no further, so no lookup is spent on them;
3. `save` saves one entry per event and hands them to the receiver a chunk at a time
   (`process_entries`: one transaction, lookups batched); if a chunk fails it is redone event
   by event, each in its own savepoint, so the failing event alone is saved failed. The entry
   is unique per event, so no event ever becomes two entries.

Events caused by the bridge's own writes (LastModifiedById = the integration user) are saved
as entries with outcome `skipped`, reason `own_write`. Every failure is judged by
`bridge.errors.failure_of`: transient ones propagate (the job gives the events back and rq
retries), any other is saved on the entry with its reason, ready to retry once fixed.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, cast

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from bridge import defaults
from bridge.config import BridgeConfig, OrgConfig
from bridge.context import WorkerContext
from bridge.errors import Action, Failure, failure_of
from bridge.receiver.candidates import CandidatePool
from bridge.receiver.decision import is_own_write
from bridge.receiver.relational import Trigger, related_records
from bridge.receiver.service import candidate_pools, process_entries, process_entry
from bridge.salesforce.lookup import SalesforceLookup
from bridge.store import Store, readfirst, reserve_ids, unsaved
from bridge.store.models import OrgConnection, Program, SalesEntry, utcnow
from bridge.streaming import claims, inbox
from bridge.streaming.claims import ClaimedEvent
from bridge.streaming.events import cdc_values
from bridge.writeback import known

log = logging.getLogger("sfbridge.intake")


@dataclass
class OrgInfo:
    """What the intake needs of an event's org connection."""

    name: str
    config: OrgConfig | None  # None: the org is not (any more) in the config file
    integration_user_id: str | None
    version: datetime | None  # the connection's updated_at: which login the context reuses


@dataclass
class IntakeBatch:
    """One job's claimed events on their way to entries, and what was learnt about them."""

    token: str  # the claim: only events still claimed with it are acted on
    events: list[ClaimedEvent]
    orgs: dict[int, OrgInfo]  # by org connection id
    records: dict[int, dict[str, Any]] = field(default_factory=dict)  # event id -> related
    failures: dict[int, Failure] = field(default_factory=dict)  # event id -> why lookups failed
    programs: dict[str, int] = field(default_factory=dict)  # each org's receiver program by key
    counts: Counter[str] = field(default_factory=Counter)
    pushes: set[int] = field(default_factory=set)  # orgs whose pushes the entries queued
    _triggers: dict[int, Trigger | None] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, int]:
        return {k: v for k, v in self.counts.items() if v}

    def trigger(self, event: ClaimedEvent) -> Trigger | None:
        """`trigger_of(event)`, read once per batch (every step of the intake asks)."""
        if event.id not in self._triggers:
            self._triggers[event.id] = trigger_of(event)
        return self._triggers[event.id]


def take_in(ctx: WorkerContext, batch: IntakeBatch) -> IntakeBatch:
    """Turn the batch's claimed events into saved entries; `summary()` says how many ended
    how, and `pushes` names the org connections whose pushes their effects queued
    (committed: their drains are to be asked for)."""
    relate(ctx, batch)
    save(ctx.store, batch)
    known.learn_changes(ctx.redis, _changes(batch))  # the ids an outbound push may reuse
    return batch


def _changes(batch: IntakeBatch) -> list[known.Change]:
    out: list[known.Change] = []
    for ev in batch.events:
        trigger = batch.trigger(ev)
        if trigger is not None:
            out.append((ev.org_connection_id, trigger.sobject, trigger.record, trigger.deleted))
    return out


def load(
    session: Session, config: BridgeConfig, events: list[ClaimedEvent], token: str
) -> IntakeBatch:
    """The batch of the claimed `events`, with what it needs of their orgs, read in the
    claim's transaction (two indexed reads: no transaction of their own)."""
    if not events:
        return IntakeBatch(token, events, {})
    org_ids = sorted({e.org_connection_id for e in events})
    orgs = {
        org_id: OrgInfo(name, config.orgs.get(name), user_id, version)
        for org_id, name, user_id, version in session.execute(_ORGS, {"ids": org_ids})
    }
    # Each org's receiver program, looked up once a batch (the receiver would per entry).
    keys = sorted({i.config.receiver.program for i in orgs.values() if i.config is not None})
    programs = dict(session.execute(_PROGRAMS, {"keys": keys}).all())
    return IntakeBatch(token, events, orgs, programs=programs)


_ORGS = select(
    OrgConnection.id, OrgConnection.name, OrgConnection.integration_user_id,
    OrgConnection.updated_at,
).where(OrgConnection.id.in_(bindparam("ids", expanding=True)))  # fmt: skip
"""What `load` reads of the events' org connections (built once, as `_PROGRAMS`: building a
statement costs more CPU than running one of these)."""

_PROGRAMS = select(Program.key, Program.id).where(
    Program.key.in_(bindparam("keys", expanding=True))
)


def trigger_of(event: ClaimedEvent) -> Trigger | None:
    """The changed record as the event carries it; None for an event that could not be read."""
    payload = event.payload or {}
    if event.change_type == "malformed" or "_error" in payload:
        return None
    if "record" in payload:  # polled
        carried = payload["record"]
    else:
        data = payload.get("data") or {}
        if isinstance(data.get("sobject"), dict):
            carried = data["sobject"]
        else:  # CDC: the values this event carries (all for CREATE, the changed for UPDATE)
            carried = cdc_values(data.get("payload") or {})
    record = {k: v for k, v in carried.items() if k != "attributes"}
    record["Id"] = event.record_id or record.get("Id")
    return Trigger(event.sobject_type, record, deleted=event.change_type == "deleted")


def _own_write(trigger: Trigger, info: OrgInfo) -> bool:
    return is_own_write(trigger.record.get("LastModifiedById"), info.integration_user_id)


# ---- 2. related records ------------------------------------------------------------------------


def relate(ctx: WorkerContext, batch: IntakeBatch) -> None:
    """Fill `batch.records` (or `batch.failures`) for every event that goes to the receiver."""
    by_org: dict[int, list[ClaimedEvent]] = defaultdict(list)
    for ev in batch.events:
        by_org[ev.org_connection_id].append(ev)
    for org_id, group in by_org.items():
        info = batch.orgs[org_id]
        if info.config is None:
            continue
        pairs = [(ev, batch.trigger(ev)) for ev in group]
        wanted = [(ev, t) for ev, t in pairs if t is not None and not _own_write(t, info)]
        if not wanted:
            continue
        lookup = SalesforceLookup(partial(ctx.org, info.name, info.version))
        try:
            related = related_records(info.config, [t for _ev, t in wanted], lookup)
        except Exception as exc:
            failure = failure_of(
                exc, unexpected="lookup_error", doing="reading the related records"
            )
            if failure.action is not Action.FAIL:
                raise
            # Every entry of this org's events is saved failed with the reason (permissions, a
            # field the org lacks…), ready to retry once fixed.
            for ev, _t in wanted:
                batch.failures[ev.id] = failure
            continue
        for (ev, _t), recs in zip(wanted, related, strict=True):
            if ev.channel.startswith(inbox.VALUES_PREFIX):
                _no_author(recs, ev.sobject_type)
            batch.records[ev.id] = recs


def _no_author(records: dict[str, Any], sobject: str) -> None:
    """A formula value changed by no one's edit: the record's last author (perhaps the
    bridge) did not make this change, so it must not be judged an own write."""
    trigger = records.get(sobject)
    if isinstance(trigger, dict):
        records[sobject] = {k: v for k, v in trigger.items() if k != "LastModifiedById"}


# ---- 3. entries ---------------------------------------------------------------------------------


def save(store: Store, batch: IntakeBatch) -> None:
    """Save every event's entry, SAVE_CHUNK events per transaction.

    Several short transactions rather than one per batch: on SQLite a write transaction locks
    out the subscriber, which must store its next delivery promptly.
    """
    ids = [e.id for e in batch.events]
    for start in range(0, len(ids), defaults.SAVE_CHUNK):
        _save_chunk(store, batch, ids[start : start + defaults.SAVE_CHUNK])


def _save_chunk(store: Store, batch: IntakeBatch, ids: list[int]) -> None:
    """Save a chunk in one transaction. First read first: its reads and decisions before the
    transaction takes SQLite's write lock, only its writes after, if what it read still
    holds then (`bridge.store.readfirst`); if not, again with the lock held from the start.
    Both without a savepoint per event (one round trip less each); if any event fails, again
    with one, so that event alone is saved failed."""
    counts: Counter[str] = Counter()
    pushes: set[int] = set()
    try:
        try:
            _save_chunk_once(store, batch, ids, counts, pushes, isolate=False, read_first=True)
        except readfirst.Stale as stale:
            log.debug("chunk redone under the write lock: %s", stale)
            counts, pushes = Counter(), set()  # rolled back: redone below
            _save_chunk_once(store, batch, ids, counts, pushes, isolate=False)
    except Exception as exc:
        if failure_of(exc).action is Action.RETRY:
            raise
        counts, pushes = Counter(), set()  # rolled back: redone below, event by event
        _save_chunk_once(store, batch, ids, counts, pushes, isolate=True)
    batch.counts.update(counts)
    batch.pushes |= pushes


def _read_pools(
    store: Store, batch: IntakeBatch, ids: list[int]
) -> tuple[dict[int, dict[int, CandidatePool]], dict[int, SalesEntry]]:
    """The candidate pools of the chunk's entries by org connection, read before the chunk's
    write transaction (on SQLite a read then holds no write lock, so the subscriber can
    store its next delivery meanwhile), and those entries by event id, for the write
    transaction to save (the pools know their lookup plans)."""
    wanted = set(ids)
    with store.reading() as session:
        by_org: dict[int, list[SalesEntry]] = defaultdict(list)
        for ev in batch.events:
            info = batch.orgs[ev.org_connection_id]
            if ev.id not in wanted or info.config is None or ev.id in batch.failures:
                continue
            trigger = batch.trigger(ev)
            if trigger is None or _own_write(trigger, info):
                continue
            by_org[ev.org_connection_id].append(
                _entry(ev, trigger, batch.records.get(ev.id), _program_id(info, batch.programs))
            )
        pools = {
            org_id: candidate_pools(session, entries, cast(OrgConfig, batch.orgs[org_id].config))
            for org_id, entries in by_org.items()
        }
    entries = {e.inbound_event_id: e for group in by_org.values() for e in group}
    return pools, cast(dict[int, SalesEntry], entries)


def _save_chunk_once(
    store: Store,
    batch: IntakeBatch,
    ids: list[int],
    counts: Counter[str],
    pushes: set[int],
    *,
    isolate: bool,
    read_first: bool = False,
) -> None:
    pools, prepared = ({}, {}) if isolate else _read_pools(store, batch, ids)
    events = {ev.id: ev for ev in batch.events}
    # How each event ends (state, reason), written with one UPDATE per state at the end.
    ends: dict[int, tuple[str, str | None]] = {}
    with store.session(read_first=read_first) as session:
        # Re-check in one read: still ours, and no entry yet (entries and event states commit
        # together, so this only catches an entry made outside the claim, e.g. submitted
        # through the API). Read first, the claim is checked again when the events are ended,
        # and an entry made meanwhile fails the chunk's INSERT (the entry is unique per event).
        claimed = claims.still_claimed(session, ids, batch.token)
        mine = [events[i] for i in claimed]
        have_entry = {i for i, has_entry in claimed.items() if has_entry}
        counts["not_ours"] += len(ids) - len(mine)
        programs = batch.programs
        # Without isolation the receiver takes the chunk's entries together, per org, and
        # writes each once, decided; every entry of the chunk gets its id now, in the
        # events' order (the receiver's "previous" entry of a record is the one before).
        for_receiver: dict[int, list[tuple[ClaimedEvent, SalesEntry]]] = defaultdict(list)
        fresh: list[SalesEntry] = []
        settled: list[SalesEntry] = []  # those that go no further (own writes, failed)
        for ev in mine:
            if ev.id in have_entry:
                ends[ev.id] = ("done", None)
                counts["already"] += 1
                continue
            info = batch.orgs[ev.org_connection_id]
            goes_no_further = _settle(batch, ev, info, programs, ends)
            if goes_no_further is not None:
                outcome, entry = goes_no_further
                counts[outcome] += 1
                fresh.append(entry)
                settled.append(entry)
                if isolate:
                    session.add(entry)
            elif isolate:
                counts[_decide_alone(session, batch, ev, info, programs, ends, pushes)] += 1
            else:
                # Any exception rolls back the whole chunk, which is then redone isolated.
                entry = prepared.get(ev.id) or _entry(
                    ev, batch.trigger(ev), batch.records.get(ev.id), _program_id(info, programs)
                )
                fresh.append(entry)
                for_receiver[ev.org_connection_id].append((ev, entry))
        if not isolate:
            for entry, entry_id in zip(
                fresh, reserve_ids(session, SalesEntry, len(fresh)), strict=True
            ):
                entry.id = entry_id
            if not for_receiver:
                session.add_all(settled)
        for org_id, pairs in for_receiver.items():
            info = batch.orgs[org_id]
            assert info.config is not None
            # The settled entries are written with the first org's (none is written before
            # the receiver's reads: read first, the first write takes the lock).
            alongside, settled = settled, []
            process_entries(
                session,
                [entry for _ev, entry in pairs],
                info.config,
                integration_user_id=info.integration_user_id,
                pools=pools.get(org_id),
                alongside=alongside,
            )
            for ev, entry in pairs:
                ends[ev.id] = ("done", None)
                counts[str(entry.outcome)] += 1
                if (entry.decision or {}).get("pushes"):
                    pushes.add(org_id)  # an entry's pushes go to its org (fieldsync.Target)
        ended = claims.finish(session, ends, batch.token if read_first else None)
        if read_first and ended != len(ends):
            raise readfirst.Stale("a claim was taken over before the first write")


def _program_id(info: OrgInfo, programs: dict[str, int]) -> int | None:
    return programs.get(info.config.receiver.program) if info.config is not None else None


_Ends = dict[int, tuple[str, str | None]]


def _settle(
    batch: IntakeBatch,
    ev: ClaimedEvent,
    info: OrgInfo,
    programs: dict[str, int],
    ends: _Ends,
) -> tuple[str, SalesEntry] | None:
    """The outcome and the unsaved entry of an event that goes no further (failed, own
    write); None when the receiver is to decide it."""
    trigger = batch.trigger(ev)
    if info.config is None:
        message = f"org '{info.name}' is not in the config file"
        return "failed", _failed(ev, trigger, ends, "org_not_configured", message)
    if trigger is None:
        error = (ev.payload or {}).get("_error", "the event could not be read")
        return "failed", _failed(ev, trigger, ends, "malformed_event", str(error))
    failure = batch.failures.get(ev.id)
    if failure is not None:
        return "failed", _failed(ev, trigger, ends, failure.code, failure.message)
    if _own_write(trigger, info):
        entry = _entry(ev, trigger, batch.records.get(ev.id), _program_id(info, programs))
        entry.outcome = "skipped"
        entry.reasons = ["own_write"]
        entry.decision = {"outcome": "skipped", "reasons": ["own_write"]}
        entry.processed_at = utcnow()
        ends[ev.id] = ("skipped", "own_write")
        return "own_write", entry
    return None


def _decide_alone(
    session: Session,
    batch: IntakeBatch,
    ev: ClaimedEvent,
    info: OrgInfo,
    programs: dict[str, int],
    ends: _Ends,
    pushes: set[int],
) -> str:
    """The receiver decides one entry in its own savepoint; a failure is saved on it."""
    assert info.config is not None
    try:
        with session.begin_nested():
            entry = _entry(
                ev, batch.trigger(ev), batch.records.get(ev.id), _program_id(info, programs)
            )
            session.add(entry)
            process_entry(session, entry, info.config, integration_user_id=info.integration_user_id)
            ends[ev.id] = ("done", None)
            if (entry.decision or {}).get("pushes"):
                pushes.add(ev.org_connection_id)
            return str(entry.outcome)
    except Exception as exc:
        failure = failure_of(exc, unexpected="receiver_error")
        if failure.action is not Action.FAIL:
            raise
        log.warning("inbound event %s saved failed (%s): %s", ev.id, failure.code, failure.message)
        session.add(_failed(ev, batch.trigger(ev), ends, failure.code, failure.message))
        return "failed"


def _entry(
    ev: ClaimedEvent,
    trigger: Trigger | None,
    records: dict[str, Any] | None,
    program_id: int | None = None,
) -> SalesEntry:
    """The event's entry: its related `records`, or else the record it carries (`trigger`);
    its `raw` is the event's payload as stored (written as that text again)."""
    return unsaved(
        SalesEntry,
        {
            "org_connection_id": ev.org_connection_id,
            "program_id": program_id,
            "inbound_event_id": ev.id,
            "source": ev.source,
            "sobject_type": ev.sobject_type or "unknown",
            "record_id": ev.record_id,
            "change_type": ev.change_type,
            "raw": ev.payload or {},
            "records": records or ({ev.sobject_type: dict(trigger.record)} if trigger else {}),
            "outcome": "new",
            "reasons": [],
        },
    )


def _failed(
    ev: ClaimedEvent, trigger: Trigger | None, ends: _Ends, code: str, message: str
) -> SalesEntry:
    """The event's entry saved failed with the reason (unsaved)."""
    entry = _entry(ev, trigger, None)
    entry.outcome = "failed"
    entry.reasons = [code]
    entry.error = message
    ends[ev.id] = ("failed", code)
    return entry
