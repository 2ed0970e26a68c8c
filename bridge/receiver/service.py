"""Sales entries through the receiver: decide, apply the effects, save the explanation.

The caller owns the transaction (``with store.session() as session: process_entry(...)``):
the referral change, its status history, the entry's explanation and the audit record commit
together or not at all. Review notifications go out after that commit (see bridge.notify).

Entry ``records`` follow SPEC §6 (``{"Lead": {...}|None, "Contact": ..., "Account": ...,
"Opportunity": ...}``); with ``contact_matching: trigger_and_account_contacts`` the inbound
side adds ``"AccountContacts": [...]`` (see bridge.receiver.matching).

Longer than most modules on purpose: the entry-by-entry and the batched path share their
locking and applying steps and stay side by side, so they stay equivalent (the batch tests
compare the two).
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import bindparam, event, inspect, literal_column, select, union_all
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import NO_VALUE, set_committed_value

from bridge import audit, notify
from bridge.config import OrgConfig, Receiver, parse_field_ref
from bridge.errors import UsageError
from bridge.receiver.candidates import (
    CandidatePool,
    find_members,
    find_referrals,
    referral_candidate,
)
from bridge.receiver.decision import Decision, decide
from bridge.receiver.matching import (
    EntryInput,
    LookupPlan,
    MemberCandidate,
    ReferralCandidate,
    plan_lookups,
)
from bridge.store import get_or_create_program, reserve_ids, row_values
from bridge.store.arrays import insert_rows, update_rows
from bridge.store.models import (
    OrgConnection,
    Program,
    Referral,
    ReferralStatusChange,
    SalesEntry,
    overlong_values,
    refill_keys,
    utcnow,
)
from bridge.vocabulary import (
    FAILED,
    NEW,
    PENDING,
    PROCESSED,
    QUALIFYING,
    REVIEW,
    SKIPPED,
    STREAMED_OBJECTS,
)
from bridge.writeback import engagement, fieldsync, pushes

RULES_ACTOR = "rules"


def new_public_id() -> str:
    """A referral's public id (written to Salesforce's Referral_ID__c)."""
    return "R" + secrets.token_hex(8).upper()


# ---- the four actions ------------------------------------------------------------------------


def process_entry(
    session: Session,
    entry: SalesEntry,
    org: OrgConfig,
    *,
    integration_user_id: str | None = None,
) -> SalesEntry:
    """Decide a new entry and apply it. Idempotent: an entry already decided is left as it is
    (a redelivered job changes nothing), so only ``new`` entries are processed."""
    if entry.outcome != NEW:
        return entry
    _run(session, entry, org, actor=RULES_ACTOR, integration_user_id=integration_user_id)
    return entry


def process_entries(
    session: Session,
    entries: Sequence[SalesEntry],
    org: OrgConfig,
    *,
    integration_user_id: str | None = None,
    pools: Mapping[int, CandidatePool] | None = None,
    alongside: Sequence[SalesEntry] = (),
) -> list[SalesEntry]:
    """``process_entry`` for a batch of entries, in their order, with the lookups batched.

    The result is the same as processing the entries one after another — decisions, referral
    changes, status history and audit records alike — but the database is asked once per
    batch instead of once per entry: the entries are inserted together, their previous
    values come from one query, and the referrals and members they can reach from one
    query each (``CandidatePool``). A referral the batch changes or creates is updated in the
    pool, so a later entry about the same referral sees the earlier entry's effect.
    Idempotent like ``process_entry``: entries already decided are left as they are.

    ``pools`` (by program id, from ``candidate_pools``) are pools read before the caller's
    write transaction began, so that on SQLite the write lock is not held while they are
    read; one that does not cover the entries' keys is read again here. Referrals the batch
    will change are locked and compared with the pool's copy either way.

    ``alongside``: unsaved entries the caller has decided (own writes, failed ones), their
    ids given, to be written with the batch's (an earlier one counts as a later entry's
    previous values): so nothing is written before the batch's reads, and a read-first
    transaction (bridge.store.readfirst) takes the write lock only for the writes.
    """
    todo = [e for e in entries if e.outcome == NEW]
    if not todo:
        session.add_all(alongside)
        return list(entries)
    unsaved = [e for e in todo if not inspect(e).persistent]
    for entry in unsaved:
        if inspect(entry).pending:
            session.expunge(entry)  # written below, once, with its decision
    session.flush()  # whatever the caller added goes first
    missing = [e for e in unsaved if e.id is None]
    ids = reserve_ids(session, SalesEntry, len(missing))
    for entry, entry_id in zip(missing, ids, strict=True):
        entry.id = entry_id
    by_program: dict[int, list[SalesEntry]] = {}
    programs: dict[int | None, Program] = {}
    for entry in todo:
        if entry.program_id not in programs:
            programs[entry.program_id] = _program(session, entry, org)
        program = programs[entry.program_id]
        entry.program_id = program.id
        by_program.setdefault(program.id, []).append(entry)
    users = _integration_users(session, todo, integration_user_id)
    # Loaded once for the batch and kept referenced, so the session's identity map (which
    # holds objects weakly) gives them to every entry instead of loading them again.
    connections = [session.get(OrgConnection, i) for i in users if i is not None]
    receiver = org.receiver
    written = sorted([*unsaved, *alongside], key=lambda e: e.id)  # the batch's order
    writer = _EntryWriter(session, written)
    # From here on nothing is flushed before a query (the batch's changes go out together at
    # the end): the queries below read referrals and members the batch has not changed yet,
    # and every step that needs its own writes visible flushes them itself.
    with audit.batched(session), pushes.batched(session), writer, session.no_autoflush:
        previous = _previous_of(session, [e for e in todo if not e.previous], written)
        for entry in todo:
            if not entry.previous:
                entry.previous = previous.get(entry.id, {})
        for program_id, group in by_program.items():
            inputs = [_entry_input(e) for e in group]
            pool = (pools or {}).get(program_id)
            planned = pool.planned if pool is not None else {}
            plans = [
                planned.get(id(e)) or plan_lookups(data, receiver)
                for e, data in zip(group, inputs, strict=True)
            ]
            # A pool covers the plans it was read for; only a plan made here needs checking.
            read_for = all(id(e) in planned for e in group)
            if pool is None or not (read_for or pool.covers(plans)):
                pool = CandidatePool.fetch(session, program_id, plans)
            users_of = [users.get(e.org_connection_id) for e in group]
            held, early = _lock_likely_targets(session, receiver, inputs, plans, users_of, pool)
            locked = {r.id for r in held}
            for i, (entry, data, plan) in enumerate(zip(group, inputs, plans, strict=True)):
                writer.deciding(entry)
                _run_pooled(
                    session,
                    entry,
                    org,
                    data,
                    plan,
                    pool,
                    locked,
                    early.get(i),
                    program_id=program_id,
                    integration_user_id=users.get(entry.org_connection_id),
                )
                writer.decided(entry)
        for entry in todo:  # the pushes written, each entry listing the saved ones
            _relink_pushes(session, entry)
    del connections
    return list(entries)


def candidate_pools(
    session: Session, entries: Sequence[SalesEntry], org: OrgConfig
) -> dict[int, CandidatePool]:
    """The candidate pool of each program the (unsaved) entries belong to, for
    ``process_entries(..., pools=...)``; entries without a program yet are left out."""
    plans: dict[int, dict[int, LookupPlan]] = {}
    for entry in entries:
        if entry.program_id is not None and entry.outcome == NEW:
            plan = plan_lookups(_entry_input(entry), org.receiver)
            plans.setdefault(entry.program_id, {})[id(entry)] = plan
    pools = {}
    for pid, planned in plans.items():
        pools[pid] = CandidatePool.fetch(session, pid, planned.values())
        pools[pid].planned = planned
    return pools


def approve_entry(session: Session, entry: SalesEntry, org: OrgConfig, *, actor: str) -> SalesEntry:
    """Apply what an entry in review proposed. The rules run again on the current state of the
    referral (it may have changed meanwhile), with the proposal as the forced target."""
    if entry.outcome != REVIEW:
        raise UsageError(f"entry {entry.id} is {entry.outcome}, not in review: nothing to approve")
    proposal = entry.decision or {}
    referral_id = proposal.get("referral_id")
    member_id = proposal.get("member_id") if proposal.get("create_referral") is not None else None
    if referral_id is None and member_id is None:
        raise UsageError(
            f"entry {entry.id} has no proposed referral ({', '.join(entry.reasons)}): "
            "pick a referral or edit its fields and retry"
        )
    _run(
        session,
        entry,
        org,
        actor=actor,
        forced_referral_id=referral_id,
        forced_member_id=member_id,
        reviewed=True,
        action="entry.approved",
    )
    return entry


def reject_entry(
    session: Session, entry: SalesEntry, *, actor: str, note: str | None = None
) -> SalesEntry:
    """Close an entry in review (or failed) without touching any referral."""
    if entry.outcome not in (REVIEW, FAILED):
        raise UsageError(
            f"entry {entry.id} is {entry.outcome}: only entries in review or failed can be rejected"
        )
    entry.outcome = SKIPPED
    entry.reasons = [*entry.reasons, "rejected"]
    entry.decision = {**(entry.decision or {}), "rejected": {"by": actor, "note": note}}
    entry.decided_by = actor
    entry.processed_at = utcnow()
    audit.record(session, actor, "entry.rejected", "sales_entry", entry.id, note=note)
    return entry


def retry_entry(
    session: Session,
    entry: SalesEntry,
    org: OrgConfig,
    *,
    actor: str,
    fields: Mapping[str, Any] | None = None,
    referral_id: int | None = None,
) -> SalesEntry:
    """Run the rules again after a reviewer edited the entry's fields and/or picked a referral.

    ``fields``: ``{"Contact.Email": "jane@example.com", ...}`` (or ``{"Contact": {...}}``),
    merged into ``records``; the original payload stays in ``raw``. A picked referral is a
    reviewer's decision, so the review rules do not apply to it again; edits alone re-run the
    rules as for a new entry.
    """
    if entry.outcome == PROCESSED:
        raise UsageError(f"entry {entry.id} is already processed; nothing to retry")
    edits = _normalize_edits(fields or {})
    if edits:
        records = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in entry.records.items()}
        for obj, values in edits.items():
            current = records.get(obj)
            records[obj] = {**(current if isinstance(current, Mapping) else {}), **values}
        entry.records = records
    _run(
        session,
        entry,
        org,
        actor=actor,
        forced_referral_id=referral_id,
        reviewed=referral_id is not None,
        action="entry.retried",
        extra={"edits": edits, "chosen_referral_id": referral_id},
    )
    return entry


# ---- internals -------------------------------------------------------------------------------


def _normalize_edits(fields: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    edits: dict[str, dict[str, Any]] = {}
    for key, value in fields.items():
        if key in STREAMED_OBJECTS and isinstance(value, Mapping):
            for name, v in value.items():
                edits.setdefault(key, {})[str(name)] = v
            continue
        try:
            obj, name = parse_field_ref(str(key))
        except ValueError as exc:
            raise UsageError(f"cannot edit '{key}': {exc}", fields=[str(key)]) from None
        edits.setdefault(obj, {})[name] = value
    return edits


def _program(session: Session, entry: SalesEntry, org: OrgConfig) -> Program:
    """The receiver's program row (created from the config the first time it is needed)."""
    if entry.program_id is not None:
        program = session.get(Program, entry.program_id)
        if program is not None:
            return program
    key = org.receiver.program
    spec = next(p for p in org.programs if p.key == key)
    program = get_or_create_program(session, key, spec.name, entry.org_connection_id)
    entry.program_id = program.id
    return program


def previous_values(session: Session, entry: SalesEntry) -> dict[str, Any]:
    """The trigger record as it was in the most recent earlier entry for the same record.

    Inbound entries carry whole records (PushTopic and polling send current values, not
    deltas), so the record as we last saw it is the best "before" for ``changed_to``. Earlier
    means a lower entry id (arrival order). No earlier entry: {} — the value counts as changed.
    """
    if not entry.record_id:
        return {}
    query = (
        select(SalesEntry.records)
        .where(
            SalesEntry.record_id == entry.record_id,
            SalesEntry.sobject_type == entry.sobject_type,
            SalesEntry.org_connection_id.is_(None)
            if entry.org_connection_id is None
            else SalesEntry.org_connection_id == entry.org_connection_id,
        )
        .order_by(SalesEntry.id.desc())
        .limit(1)
    )
    if entry.id is not None:
        query = query.where(SalesEntry.id < entry.id)
    records = session.scalar(query) or {}
    before = records.get(entry.sobject_type)
    return dict(before) if isinstance(before, Mapping) else {}


def _integration_users(
    session: Session, entries: Sequence[SalesEntry], given: str | None
) -> dict[int | None, str | None]:
    """Each entry's integration user: the one given, else its org connection's (as
    process_entry looks it up)."""
    org_ids = {e.org_connection_id for e in entries}
    if given is not None:
        return dict.fromkeys(org_ids, given)
    users: dict[int | None, str | None] = dict.fromkeys(org_ids)
    known = [i for i in org_ids if i is not None]
    if known:
        rows = session.execute(
            select(OrgConnection.id, OrgConnection.integration_user_id).where(
                OrgConnection.id.in_(known)
            )
        )
        users.update({oid: uid for oid, uid in rows})
    return users


@functools.lru_cache(maxsize=64)
def _previous_statement(count: int) -> Any:
    """For `count` entries (bound as r<i>, s<i>, o<i>, below<i>: record id, object, org and
    entry id), the records of the latest saved entry before each: one indexed lookup each,
    in one round trip. Built once per count."""
    arms = []
    for i in range(count):
        arm = (
            select(literal_column(str(i)).label("arm"), SalesEntry.id, SalesEntry.records)
            .where(
                SalesEntry.record_id == bindparam(f"r{i}"),
                SalesEntry.sobject_type == bindparam(f"s{i}"),
                SalesEntry.org_connection_id.is_not_distinct_from(bindparam(f"o{i}")),
                SalesEntry.id < bindparam(f"below{i}"),
            )
            .order_by(SalesEntry.id.desc())
            .limit(1)
        )
        arms.append(select(arm.subquery()))
    return union_all(*arms) if count > 1 else arms[0]


_PREVIOUS_POSTGRESQL = """SELECT wanted.arm - 1, earlier.id, earlier.records
FROM unnest(%(record_ids)b::varchar[], %(sobjects)b::varchar[], %(orgs)b::bigint[],
            %(below)b::bigint[])
  WITH ORDINALITY AS wanted (record_id, sobject_type, org_id, below, arm)
CROSS JOIN LATERAL (
  SELECT sales_entries.id, sales_entries.records FROM sales_entries
  WHERE sales_entries.record_id = wanted.record_id
    AND sales_entries.sobject_type = wanted.sobject_type
    AND sales_entries.org_connection_id IS NOT DISTINCT FROM wanted.org_id
    AND sales_entries.id < wanted.below
  ORDER BY sales_entries.id DESC LIMIT 1) AS earlier"""
"""`_previous_statement` on PostgreSQL: the entries as one array per column, each looked up
by the same lateral query. Its text is the same for any number of entries, so psycopg
converts it once and the server plans it once; the union of one arm per entry (200
parameters for a chunk of 50) was parsed by psycopg and planned by the server for every
chunk."""


def _previous_rows(
    session: Session, wanted: Sequence[tuple[int, tuple[str, str, int | None]]]
) -> Any:
    """(index in `wanted`, id, records) of the latest saved entry before each of `wanted`
    (entry id, (record id, object, org)) that has one."""
    if session.get_bind().dialect.name == "postgresql":
        columns = list(zip(*(key for _id, key in wanted), strict=True))
        arrays = {
            "record_ids": list(columns[0]),
            "sobjects": list(columns[1]),
            "orgs": list(columns[2]),
            "below": [entry_id for entry_id, _key in wanted],
        }
        return session.connection().exec_driver_sql(_PREVIOUS_POSTGRESQL, arrays)
    params: dict[str, Any] = {}
    for i, (entry_id, (record_id, sobject, org_id)) in enumerate(wanted):
        params[f"r{i}"], params[f"s{i}"], params[f"o{i}"] = record_id, sobject, org_id
        params[f"below{i}"] = entry_id
    return session.execute(_previous_statement(len(wanted)), params)


def _previous_of(
    session: Session, entries: Sequence[SalesEntry], unsaved: Sequence[SalesEntry] = ()
) -> dict[int, dict[str, Any]]:
    """``previous_values`` of many entries (all with ids, some perhaps `unsaved`, written
    later) in one query: for each, the trigger record of the latest earlier entry (lower id)
    of the same record, org and object, saved or among the unsaved."""
    # Each entry's attributes read once (an instrumented attribute costs a call each time).
    wanted = [
        (e.id, (e.record_id, e.sobject_type, e.org_connection_id)) for e in entries if e.record_id
    ]
    if not wanted:
        return {}
    # The latest earlier entry of each entry's record: (its id, its records), saved ...
    found: dict[int, tuple[int, Any]] = {}
    for arm, earlier_id, records in _previous_rows(session, wanted):
        found[wanted[arm][0]] = (earlier_id, records)
    # ... or among the unsaved, if later.
    if unsaved:
        by_record: dict[tuple[Any, ...], list[tuple[int, SalesEntry]]] = {}
        for other in unsaved:
            key = (other.record_id, other.sobject_type, other.org_connection_id)
            by_record.setdefault(key, []).append((other.id, other))
        for entry_id, key in wanted:
            earlier = [(i, o) for i, o in by_record.get(key, ()) if i < entry_id]
            if earlier:
                latest_id, latest = max(earlier, key=lambda pair: pair[0])
                saved = found.get(entry_id)
                if saved is None or latest_id > saved[0]:
                    found[entry_id] = (latest_id, latest.records)
    out: dict[int, dict[str, Any]] = {}
    for entry_id, (_record_id, sobject, _org_id) in wanted:
        saved = found.get(entry_id)
        before = ((saved[1] if saved else None) or {}).get(sobject)
        out[entry_id] = dict(before) if isinstance(before, Mapping) else {}
    return out


class _EntryWriter:
    """Writes a batch's unsaved entries once each, with their decision: one INSERT of many
    rows (their ids were reserved, so the batch's other rows refer to them meanwhile).

    Entries are written when the batch ends, or earlier when something flushes the session
    (a referral created, a notification scheduled): rows the ORM writes may refer to the
    entries decided so far, so those go first — and the entry being decided too if a row
    being written refers to it already (it is then updated once decided, the one case of an
    `UPDATE`). Entries written before the end join the session as saved.
    """

    _TABLE: Any = SalesEntry.__table__

    def __init__(self, session: Session, entries: Sequence[SalesEntry]) -> None:
        self.session = session
        self.unwritten = {e.id: e for e in entries}
        self.ready: list[SalesEntry] = []
        self.current: SalesEntry | None = None  # the entry being decided

    def deciding(self, entry: SalesEntry) -> None:
        self.current = entry

    def decided(self, entry: SalesEntry) -> None:
        self.current = None
        if entry.id in self.unwritten:
            self.ready.append(entry)

    def write(self, *, last: bool = False) -> None:
        """Write the entries ready. `last`: the batch's end, after which nothing changes them,
        so they need not join the session (they stay as written)."""
        ready, self.ready = self.ready, []
        if not ready:
            return
        # Their rows made first: the pushes' INSERT below may be the transaction's first
        # write, which takes SQLite's write lock (bridge.store.readfirst).
        rows = [row_values(e) for e in ready]
        for i, entry in enumerate(ready):
            if _relink_pushes(self.session, entry):
                rows[i] = row_values(entry)
        with self.session.no_autoflush:  # before the rows that refer to them
            insert_rows(self.session, self._TABLE, rows)
        for entry in ready:
            del self.unwritten[entry.id]
            if not last:
                make_transient_to_detached(entry)
                self.session.add(entry)

    def _before_flush(self, session: Session, *_args: Any) -> None:
        current = self.current
        if (
            current is not None
            and current.id in self.unwritten
            and any(getattr(row, "entry_id", None) == current.id for row in session.new)
        ):
            self.ready.append(current)
        self.write()
        _write_referrals(session)

    def __enter__(self) -> _EntryWriter:
        event.listen(self.session, "before_flush", self._before_flush)
        return self

    def __exit__(self, exc_type: Any, *_exc: Any) -> None:
        event.remove(self.session, "before_flush", self._before_flush)
        if exc_type is None:
            self.ready = list(self.unwritten.values())  # any not decided is written as it is
            # The referrals' rows made before the first write too (the entries' or pushes'
            # INSERT: read first, the write lock is taken there).
            referrals = _referral_rows(self.session)
            self.write(last=True)
            _write_referrals(self.session, referrals)
            self.session.flush()


_REFERRALS: Any = Referral.__table__
_REFERRAL_COLUMNS = frozenset(c.key for c in _REFERRALS.columns)


_ReferralRows = tuple[
    dict[tuple[str, ...], list[dict[str, Any]]], list[tuple[Referral, tuple[str, ...]]]
]


def _write_referrals(session: Session, rows: _ReferralRows | None = None) -> None:
    """Write the referrals the batch changed, before the ORM's flush, with one UPDATE (an
    executemany) per set of columns changed, and mark them saved: the flush wrote one per run
    of id-neighbours changing the same columns, so a chunk whose referrals changed different
    columns cost about one statement (on PostgreSQL a round trip) per referral. Writes what
    the flush would: the changed columns, new matching keys if a field they are made of
    changed, `updated_at`. `rows`: `_referral_rows` made before (none changed since)."""
    groups, written = rows if rows is not None else _referral_rows(session)
    with session.no_autoflush:  # the ORM would write them first
        for group in groups.values():
            update_rows(session, _REFERRALS, group)
    for referral, columns in written:
        state = inspect(referral)
        if _REFERRAL_COLUMNS.issuperset(state.committed_state):
            # Saved as a flush leaves it (what make_transient_to_detached does too): the
            # flush then has nothing to do for it (it ran its update hooks for each before).
            state._commit_all(state.dict, session.identity_map)
        else:  # a relationship changed too: the flush writes that
            for key in columns:
                set_committed_value(referral, key, getattr(referral, key))


def _referral_rows(session: Session) -> _ReferralRows:
    """The UPDATE rows of the referrals the batch changed, by the columns each changed, and
    the referrals with their columns (stamped `updated_at`, their keys refilled)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    written: list[tuple[Referral, tuple[str, ...]]] = []
    now = utcnow()
    changed_referrals = [r for r in session.dirty if type(r) is Referral]
    for referral in sorted(changed_referrals, key=lambda r: r.id):  # in id order, as the ORM
        refill_keys(referral)
        state = inspect(referral)
        values = state.dict
        changed = [
            key
            for key, before in state.committed_state.items()
            if key in _REFERRAL_COLUMNS and (before is NO_VALUE or before != values.get(key))
        ]
        if not changed:
            continue
        referral.updated_at = now
        columns = tuple(sorted({*changed, "updated_at"}))
        row = {key: values.get(key) for key in columns}
        row["id"] = referral.id
        groups.setdefault(columns, []).append(row)
        written.append((referral, columns))
    return groups, written


def _relink_pushes(session: Session, entry: SalesEntry) -> bool:
    """Write the batch's pushes queued so far (before the entries that list them), and list
    on the entry the saved push of each key that was saved before (True if one was)."""
    listed = (entry.decision or {}).get("pushes")
    ids = pushes.write_batched(session, listed or [])
    if listed and ids != listed:
        entry.decision = {**(entry.decision or {}), "pushes": ids}
        return True
    return False


class _Early(NamedTuple):
    """A batch entry's decision made before the batch ran, with what it was made on."""

    decision: Decision
    candidates: list[ReferralCandidate]
    members: list[MemberCandidate]


def _lock_likely_targets(
    session: Session,
    receiver: Receiver,
    inputs: Sequence[EntryInput],
    plans: Sequence[LookupPlan],
    users: Sequence[str | None],
    pool: CandidatePool,
) -> tuple[list[Referral], dict[int, _Early]]:
    """Lock, in one statement, the referrals the batch's entries would change as the pool
    reads them (an entry that changes nothing else may sync fields into its referral: those
    too), and bring the pool up to date with what is locked.

    Saves a lock query per entry; an entry that ends up changing another referral (because
    of an earlier entry of the batch) locks that one itself. Locked in id order, so two
    workers locking overlapping sets wait for each other instead of deadlocking. The
    referrals are returned to keep them in the session until the batch is done, with the
    decisions made to find them (by entry index): an entry whose candidates are still the
    same when its turn comes keeps its decision instead of being decided twice.
    """
    ids: set[int] = set()
    early: dict[int, _Early] = {}
    for i, (data, plan, user) in enumerate(zip(inputs, plans, users, strict=True)):
        candidates = pool.referrals(plan)
        if not candidates:
            continue  # nothing to change (a referral created for a member is new)
        members = pool.members(plan)
        decision = decide(
            data,
            receiver,
            candidates=candidates,
            members=members,
            integration_user_id=user,
            plan=plan,
        )
        early[i] = _Early(decision, candidates, members)
        if decision.referral_id is not None and (
            decision.outcome == PROCESSED or _unchanged(decision)
        ):
            ids.add(decision.referral_id)
    if not ids:
        return [], early
    referrals = list(
        session.scalars(
            select(Referral)
            .where(Referral.id.in_(sorted(ids)))
            .order_by(Referral.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    for referral in referrals:
        if referral_candidate(referral) != pool.candidate(referral.id):
            pool.update(referral)  # another worker changed it after the pool was read
    return referrals, early


def _entry_input(entry: SalesEntry) -> EntryInput:
    return EntryInput(
        sobject=entry.sobject_type,
        record_id=entry.record_id,
        change_type=entry.change_type,
        records=entry.records or {},
        previous=entry.previous or {},
    )


def _run_pooled(
    session: Session,
    entry: SalesEntry,
    org: OrgConfig,
    data: EntryInput,
    plan: LookupPlan,
    pool: CandidatePool,
    locked: set[int],
    early: _Early | None,
    *,
    program_id: int,
    integration_user_id: str | None,
) -> None:
    """One entry of a batch: ``_run`` with its candidates taken from the batch's pool.

    `early` is the entry's decision from before the batch ran; it holds while the pool still
    gives the entry the same candidates (an earlier entry of the batch, or another worker,
    may have changed one of them since: then it is decided again)."""
    receiver = org.receiver
    candidates, members = pool.referrals(plan), pool.members(plan)
    if early is not None and (early.candidates, early.members) == (candidates, members):
        decision = early.decision
    else:
        decision = decide(
            data,
            receiver,
            candidates=candidates,
            members=members,
            integration_user_id=integration_user_id,
            plan=plan,
        )
    target_id = decision.referral_id if decision.outcome == PROCESSED else None
    if target_id is not None and target_id not in locked:
        # First time this batch touches the referral: lock it and check that it is still what
        # the pool says (another worker may have changed it since the pool was read). The
        # session holds no unflushed change of it, so nothing needs flushing before the query.
        target = _lock_target(session, decision)
        if target is not None:
            locked.add(target.id)
            if referral_candidate(target) != pool.candidate(target.id):
                pool.update(target)
                # Decide again on fresh lookups, as _run does when it loses that race.
                session.flush()
                decision = _decide_locked(
                    session,
                    data,
                    receiver,
                    plan,
                    lambda: (
                        find_referrals(session, program_id, plan),
                        find_members(session, program_id, plan),
                    ),
                    integration_user_id=integration_user_id,
                )
                if decision.outcome == PROCESSED and decision.referral_id is not None:
                    locked.add(decision.referral_id)
    _apply(session, entry, decision, program_id=program_id, actor=RULES_ACTOR)
    synced = _sync_fields(session, entry, decision, org, actor=RULES_ACTOR)
    if (
        entry.referral_id is not None
        and (decision.create_referral is not None or decision.changes_referral or synced)
        and decision.outcome == PROCESSED
    ):
        referral = session.get(Referral, entry.referral_id)
        if referral is not None:
            pool.update(referral)
            locked.add(referral.id)
    _finish_run(session, entry, decision, org, actor=RULES_ACTOR, action="entry.processed")


def _run(
    session: Session,
    entry: SalesEntry,
    org: OrgConfig,
    *,
    actor: str,
    integration_user_id: str | None = None,
    forced_referral_id: int | None = None,
    forced_member_id: int | None = None,
    reviewed: bool = False,
    action: str = "entry.processed",
    extra: Mapping[str, Any] | None = None,
) -> Decision:
    receiver = org.receiver
    if entry.id is None:
        session.add(entry)
        session.flush()
    if integration_user_id is None and entry.org_connection_id is not None:
        # A retry or an approval checks for the bridge's own write like the first run did.
        conn = session.get(OrgConnection, entry.org_connection_id)
        integration_user_id = conn.integration_user_id if conn else None
    program = _program(session, entry, org)
    if not entry.previous:
        entry.previous = previous_values(session, entry)
    data = _entry_input(entry)
    plan = plan_lookups(data, receiver)
    forced_ids = [forced_referral_id] if forced_referral_id is not None else []
    forced_members = [forced_member_id] if forced_member_id is not None else []
    decision = _decide_locked(
        session,
        data,
        receiver,
        plan,
        lambda: (
            find_referrals(session, program.id, plan, referral_ids=forced_ids),
            find_members(session, program.id, plan, member_ids=forced_members),
        ),
        integration_user_id=integration_user_id,
        forced_referral_id=forced_referral_id,
        forced_member_id=forced_member_id,
        reviewed=reviewed,
    )
    _apply(session, entry, decision, program_id=program.id, actor=actor)
    _sync_fields(session, entry, decision, org, actor=actor)
    _finish_run(session, entry, decision, org, actor=actor, action=action, extra=extra)
    return decision


def _decide_locked(
    session: Session,
    data: EntryInput,
    receiver: Receiver,
    plan: LookupPlan,
    lookup: Callable[[], tuple[list[ReferralCandidate], list[MemberCandidate]]],
    *,
    integration_user_id: str | None,
    forced_referral_id: int | None = None,
    forced_member_id: int | None = None,
    reviewed: bool = False,
) -> Decision:
    """Look up, decide, and lock the referral the decision changes."""
    for _attempt in range(3):
        candidates, members = lookup()
        decision = decide(
            data,
            receiver,
            candidates=candidates,
            members=members,
            integration_user_id=integration_user_id,
            forced_referral_id=forced_referral_id,
            forced_member_id=forced_member_id,
            reviewed=reviewed,
            plan=plan,
        )
        target = _lock_target(session, decision)
        # Another worker may have changed the referral between the lookup and the lock
        # (PostgreSQL, read committed): decide again on what is now there.
        if target is None or referral_candidate(target) == next(
            c for c in candidates if c.id == target.id
        ):
            break
    return decision


def _finish_run(
    session: Session,
    entry: SalesEntry,
    decision: Decision,
    org: OrgConfig,
    *,
    actor: str,
    action: str,
    extra: Mapping[str, Any] | None = None,
) -> None:
    audit.record(
        session,
        actor,
        action,
        "sales_entry",
        entry.id,
        outcome=decision.outcome,
        reasons=decision.reasons,
        referral_id=entry.referral_id,
        **dict(extra or {}),
    )
    notify_on_review = org.receiver.process.notify_on_review
    if decision.outcome == REVIEW and notify_on_review is not None:
        notify.schedule(session, entry, notify_on_review)


def _unchanged(decision: Decision) -> bool:
    """Skipped as changing nothing: the entry may still sync fields into its referral."""
    return decision.outcome == SKIPPED and "no_change" in decision.reasons


def _sync_fields(
    session: Session, entry: SalesEntry, decision: Decision, org: OrgConfig, *, actor: str
) -> bool:
    """The field-sync effects of an entry about a referral (bridge.writeback.fieldsync): the
    record's mapped fields into the referral, and the link-back for a match without an id.
    An entry that changed nothing else but synced fields is processed (`fields_synced`). The
    pushes queued are listed on the entry's decision (`pushes`), for the caller to enqueue.
    Returns whether the referral or its member changed."""
    unchanged = _unchanged(decision)
    if not (decision.outcome == PROCESSED or unchanged) or entry.referral_id is None:
        return False
    connection = session.get(OrgConnection, entry.org_connection_id or 0)
    referral = session.get(Referral, entry.referral_id)
    if connection is None or referral is None:
        return False
    target = fieldsync.Target(connection, org)
    synced_pushes, synced = fieldsync.from_salesforce(session, entry, referral, target, actor=actor)
    linked = fieldsync.link_back(session, entry, decision.match, referral, target)
    engaged = engagement.from_salesforce(session, entry, referral, org, actor=actor)
    if unchanged and (synced or engaged.changed or engaged.reasons):
        decision.outcome = PROCESSED
        decision.reasons = [r for r in decision.reasons if r != "no_change"]
        decision.reasons += ["fields_synced"] if synced else []
        decision.reasons += ["engagement_synced"] if engaged.changed and not synced else []
    if engaged.reasons:
        decision.reasons = [*decision.reasons, *engaged.reasons]
    if engaged.reasons or (unchanged and decision.outcome == PROCESSED):
        entry.outcome, entry.reasons = decision.outcome, list(decision.reasons)
        entry.decision = decision.to_dict()
    notify_on_review = org.receiver.process.notify_on_review
    if engaged.notify and notify_on_review is not None:
        notify.schedule(session, entry, notify_on_review)  # as a review would be
    ids = [p.id for p in synced_pushes] + ([linked.id] if linked else [])
    if ids:
        entry.decision = {**(entry.decision or {}), "pushes": ids}
    return synced


def _lock_target(session: Session, decision: Decision) -> Referral | None:
    if decision.outcome != PROCESSED or decision.referral_id is None:
        return None
    return session.scalars(
        select(Referral)
        .where(Referral.id == decision.referral_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def _history(
    session: Session, referral: Referral, old: str | None, new: str, entry: SalesEntry, actor: str
) -> None:
    session.add(
        ReferralStatusChange(
            referral_id=referral.id, from_status=old, to_status=new, entry_id=entry.id, actor=actor
        )
    )
    audit.record(
        session,
        actor,
        "referral.status_changed",
        "referral",
        referral.id,
        from_status=old,
        to_status=new,
        entry_id=entry.id,
    )


def _apply(
    session: Session, entry: SalesEntry, decision: Decision, *, program_id: int, actor: str
) -> None:
    """Make the decision true in the database and save it on the entry."""
    if decision.outcome == PROCESSED and decision.create_referral is not None:
        _refuse_overlong(decision)
    referral: Referral | None = None
    if decision.outcome == PROCESSED:
        if decision.create_referral is not None:
            referral = _create_referral(session, entry, decision, program_id, actor)
        elif decision.referral_id is not None:
            referral = session.get(Referral, decision.referral_id)
            assert referral is not None  # it was just found and locked
            if decision.to_status and referral.status != decision.to_status:
                old = referral.status
                referral.status = decision.to_status
                referral.ever_qualified = referral.ever_qualified or (
                    decision.to_status in QUALIFYING
                )
                _history(session, referral, old, decision.to_status, entry, actor)
            if decision.field_updates:
                referral.fields = {**(referral.fields or {}), **decision.field_updates}
            for column, value in decision.links.items():
                if getattr(referral, column) is None:
                    setattr(referral, column, value)
    entry.outcome = decision.outcome
    entry.reasons = list(decision.reasons)
    # A reviewer's choice is decided without looking candidates up again: keep the evidence
    # (the candidates, their scores and how the entry first matched) for whoever reads it later.
    before = entry.decision or {}
    entry.candidates = list(decision.candidates) or list(entry.candidates or [])
    entry.decision = decision.to_dict()
    if decision.match == "reviewer":
        entry.decision["matched_before"] = before.get("matched_before") or {
            k: before.get(k) for k in ("match", "match_source")
        }
    entry.error = decision.error
    entry.referral_id = referral.id if referral is not None else decision.referral_id
    entry.member_id = decision.member_id
    entry.attempts = (entry.attempts or 0) + 1
    entry.processed_at = utcnow()
    entry.decided_by = actor


def _refuse_overlong(decision: Decision) -> None:
    """A value longer than its referral column fails the entry with the reason, saved on it:
    SQLite would store it silently, PostgreSQL would refuse the whole transaction."""
    too_long = overlong_values(Referral, decision.create_referral or {})
    if too_long:
        decision.outcome = FAILED
        decision.reasons.append("value_too_long")
        decision.error = (
            f"a new referral cannot hold this: {'; '.join(too_long)}; edit the entry's fields "
            "and retry"
        )


def _create_referral(
    session: Session, entry: SalesEntry, decision: Decision, program_id: int, actor: str
) -> Referral:
    # An entry creates at most one referral: reuse it if this entry already made one.
    if entry.referral_id is not None:
        existing = session.get(Referral, entry.referral_id)
        if existing is not None and existing.member_id == decision.member_id:
            return existing
    values = dict(decision.create_referral or {})
    status = decision.to_status or PENDING
    referral = Referral(
        public_id=new_public_id(),
        program_id=program_id,
        member_id=decision.member_id,
        status=status,
        ever_qualified=status in QUALIFYING,
        fields=dict(decision.field_updates),
        **values,
        **decision.links,
    )
    referral.fill_keys()
    session.add(referral)
    session.flush()
    _history(session, referral, None, status, entry, actor)
    audit.record(
        session,
        actor,
        "referral.created",
        "referral",
        referral.id,
        member_id=decision.member_id,
        entry_id=entry.id,
    )
    return referral
