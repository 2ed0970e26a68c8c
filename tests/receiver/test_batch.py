"""The receiver's batched path (`process_entries`) against the per-entry path (`process_entry`).

A mixed batch — direct, fuzzy, member and no match, own writes, a delete, several entries about
the same referral and the same record — is processed once as a batch and once entry by entry on
the same starting data; everything the receiver writes must come out identical: entries
(decision, candidates, previous values), referrals, status history and audit records.
Runs on SQLite and PostgreSQL (the `store` fixture).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import event, func, select, text, update

from bridge import context, jobs
from bridge.config import BridgeConfig, OrgConfig
from bridge.context import WorkerContext
from bridge.receiver import candidates, service
from bridge.receiver.candidates import CandidatePool, find_members, find_referrals
from bridge.receiver.matching import EntryInput, ReferralCandidate, plan_lookups
from bridge.receiver.relational import record_fields
from bridge.receiver.service import process_entries, process_entry
from bridge.store import Store
from bridge.store.models import (
    AuditLog,
    Base,
    Member,
    Program,
    Push,
    Referral,
    ReferralStatusChange,
    SalesEntry,
)
from bridge.store.pgarrays import PgArray
from bridge.streaming import inbox
from bridge.streaming.events import from_bayeux
from tests import factories
from tests.receiver.test_service import INTEGRATION, SALES, org_config
from tests.roundtrips import traced

ORG = org_config()  # the same rules as the entry-by-entry tests


def seed(store: Store) -> int:
    with store.session() as s:
        conn = factories.connected_org(s, integration_user_id=INTEGRATION)
        program, other = factories.programs(s, "main", "other")
        s.add_all(
            [
                Member(program_id=program.id, name="Max", referral_code="MAX25"),
                Member(program_id=program.id, name="Mia", email="mia@members.example"),
                Member(program_id=other.id, name="Max elsewhere", referral_code="MAX25"),
            ]
        )
        people = [
            ("R1", "Jane", "Doe", "jane.doe@example.com", "pending"),
            ("R2", "Bob", "Stone", "bob@example.com", "denied"),
            ("R3", "Carla", "Cruz", "carla.cruz@example.com", "pending"),
            ("R4", "Tom", "Miller", "tom.miller@example.com", "pending"),
            ("R5", "Tom", "Miller", "t.miller@example.net", "pending"),  # same name as R4
        ]
        s.add_all(
            Referral(
                public_id=pid,
                program_id=program.id,
                first_name=first,
                last_name=last,
                email=email,
                status=status,
            )
            for pid, first, last, email, status in people
        )
        s.add(
            Referral(
                public_id="X1",
                program_id=other.id,
                first_name="Carla",
                last_name="Cruz",
                email="carla.cruz@example.com",
            )
        )
        return conn.id


def lead(lead_id: str, first: str, last: str, email: str | None, **fields: Any) -> dict[str, Any]:
    return {
        "Id": lead_id,
        "FirstName": first,
        "LastName": last,
        "Email": email,
        "Company": "Acme",
        "Phone": None,
        "Status": "Open",
        "Referral_ID__c": None,
        "Referral_Code__c": None,
        "Referring_Member_Email__c": None,
        "Referring_Member_External_ID__c": None,
        "LastModifiedById": SALES,
        **fields,
    }


def opp(stage: str, amount: int) -> dict[str, Any]:
    return {
        "Id": "006000000000001AAA",
        "StageName": stage,
        "Amount": amount,
        "LastModifiedById": SALES,
    }


JANE = "00Q000000000001AAA"
CARLA = "00Q000000000002AAA"
NEWBIE = "00Q000000000003AAA"


def changes() -> list[tuple[str, str, dict[str, Any]]]:
    """(object, change type, records) of a mixed batch, in arrival order."""
    jane = lead(JANE, "Jane", "Doe", "jane.doe@example.com", Referral_ID__c="R1")
    return [
        ("Lead", "updated", {"Lead": {**jane, "Status": "Qualified"}}),  # direct, qualifies R1
        ("Lead", "updated", {"Lead": lead(CARLA, "Karla", "Cruz", "carla.cruz@example.com")}),
        (
            "Lead",
            "updated",
            {"Lead": lead(NEWBIE, "Ann", "New", "ann@new.example", Referral_Code__c="max25")},
        ),  # fmt: skip
        ("Lead", "updated", {"Lead": lead("00Q000000000004AAA", "Zed", "Nobody", None)}),
        (
            "Lead",
            "updated",
            {"Lead": lead("00Q000000000005AAA", "Tom", "Miller", None, Status="Qualified")},
        ),  # fmt: skip
        (
            "Lead",
            "updated",
            {
                "Lead": lead(
                    "00Q000000000006AAA", "Bob", "Stone", "bob@example.com", Status="Qualified"
                )
            },
        ),  # fmt: skip
        # Two more entries about R1 in the same batch: already qualified by the first.
        ("Lead", "updated", {"Lead": {**jane, "Status": "Qualified"}}),
        # The referral created by the third entry, found again by its remembered Lead id.
        (
            "Lead",
            "updated",
            {"Lead": lead(NEWBIE, "Ann", "New", "ann@new.example", Status="Qualified")},
        ),  # fmt: skip
        # An opportunity of Jane: amount first, then Closed Won (changed_to needs the
        # previous entry of the same record, made in this batch), then Closed Won again.
        ("Opportunity", "updated", {"Opportunity": opp("Prospecting", 1000), "Lead": jane}),
        ("Opportunity", "updated", {"Opportunity": opp("Closed Won", 1200), "Lead": jane}),
        ("Opportunity", "updated", {"Opportunity": opp("Closed Won", 1200), "Lead": jane}),
        (
            "Lead",
            "updated",
            {
                "Lead": {
                    **lead(CARLA, "Karla", "Cruz", "carla.cruz@example.com"),
                    "LastModifiedById": INTEGRATION,
                }
            },
        ),  # fmt: skip
        ("Lead", "deleted", {"Lead": lead(CARLA, "Karla", "Cruz", "carla.cruz@example.com")}),
        (
            "Lead",
            "updated",
            {
                "Lead": lead(
                    "00Q000000000007AAA",
                    "Mia",
                    "Referred",
                    None,
                    Referring_Member_Email__c="MIA@members.example",
                )
            },
        ),  # fmt: skip
    ]


def new_entries(org_id: int) -> list[SalesEntry]:
    return [
        SalesEntry(
            org_connection_id=org_id,
            source="stream",
            sobject_type=sobject,
            record_id=records[sobject]["Id"],
            change_type=change,
            raw={"sobject": records[sobject]},
            records=records,
            outcome="new",
            reasons=[],
        )
        for sobject, change, records in changes()
    ]


def reset(store: Store) -> None:
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "postgresql":
            names = ", ".join(t.name for t in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())


def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the receiver writes, without timestamps."""
    with store.session() as s:
        return {
            "entries": [
                tuple(row)
                for row in s.execute(
                    select(
                        SalesEntry.id,
                        SalesEntry.outcome,
                        SalesEntry.reasons,
                        SalesEntry.candidates,
                        SalesEntry.decision,
                        SalesEntry.previous,
                        SalesEntry.referral_id,
                        SalesEntry.member_id,
                        SalesEntry.program_id,
                        SalesEntry.error,
                        SalesEntry.attempts,
                        SalesEntry.decided_by,
                    ).order_by(SalesEntry.id)
                )
            ],
            "referrals": [
                tuple(row)
                for row in s.execute(
                    select(
                        Referral.id,
                        Referral.public_id,
                        Referral.program_id,
                        Referral.member_id,
                        Referral.status,
                        Referral.ever_qualified,
                        Referral.fields,
                        Referral.first_name,
                        Referral.last_name,
                        Referral.email,
                        Referral.email_key,
                        Referral.name_block,
                        Referral.sf_lead_id,
                        Referral.sf_opportunity_id,
                    ).order_by(Referral.id)
                )
            ],
            "history": [
                tuple(row)
                for row in s.execute(
                    select(
                        ReferralStatusChange.id,
                        ReferralStatusChange.referral_id,
                        ReferralStatusChange.from_status,
                        ReferralStatusChange.to_status,
                        ReferralStatusChange.entry_id,
                        ReferralStatusChange.actor,
                    ).order_by(ReferralStatusChange.id)
                )
            ],
            "audit": [
                tuple(row)
                for row in s.execute(
                    select(
                        AuditLog.id,
                        AuditLog.actor,
                        AuditLog.action,
                        AuditLog.object_type,
                        AuditLog.object_id,
                        AuditLog.detail,
                    ).order_by(AuditLog.id)
                )
            ],
        }


@pytest.fixture
def public_ids(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Predictable public ids for created referrals, restarted for each run."""

    def restart() -> None:
        counter = itertools.count(1)
        monkeypatch.setattr(service, "new_public_id", lambda: f"RNEW{next(counter)}")

    restart()
    return restart


def run(store: Store, batched: bool, integration_user_id: str | None = None) -> None:
    reset(store)
    org_id = seed(store)
    entries = new_entries(org_id)
    with store.session() as s:
        if batched:
            process_entries(s, entries, ORG, integration_user_id=integration_user_id)
        else:
            for entry in entries:
                s.add(entry)
                process_entry(s, entry, ORG, integration_user_id=integration_user_id)


@pytest.mark.parametrize("integration_user_id", [None, INTEGRATION])
def test_a_mixed_batch_ends_exactly_as_entry_by_entry(
    store: Store, public_ids: Any, integration_user_id: str | None
) -> None:
    run(store, batched=False, integration_user_id=integration_user_id)
    one_by_one = snapshot(store)
    public_ids()
    run(store, batched=True, integration_user_id=integration_user_id)
    batched = snapshot(store)
    for part in ("entries", "referrals", "history", "audit"):
        assert batched[part] == one_by_one[part], part

    # And the batch did what the cases say (so the comparison is not of two wrong runs).
    outcomes = [(e[1], e[2]) for e in batched["entries"]]
    assert outcomes == [
        ("processed", ["status_rule:0", "direct_match"]),
        ("processed", ["fuzzy_match", "no_status_rule"]),  # Karla ~ Carla, same email
        ("processed", ["member_match", "member_by:referral_code", "referral_created"]),
        ("skipped", ["no_match"]),
        ("review", ["status_rule:0", "ambiguous_match"]),  # R4 and R5 are both Tom Miller
        # a denied referral Salesforce would qualify: a person decides (the defaults)
        ("review", ["status_rule:0", "fuzzy_match", "denied_upgrade_needs_review"]),
        ("skipped", ["status_rule:0", "direct_match", "status_unchanged", "no_change"]),
        ("processed", ["status_rule:0", "direct_match"]),
        ("processed", ["direct_match", "no_status_rule", "fields_updated"]),
        ("processed", ["status_rule:1", "direct_match", "fields_updated"]),
        ("skipped", ["direct_match", "terminal_referral"]),
        ("skipped", ["own_write"]),
        ("skipped", ["record_deleted"]),
        ("processed", ["member_match", "member_by:member_email", "referral_created"]),
    ]
    statuses = {r[1]: r[4] for r in batched["referrals"]}
    assert statuses == {
        "R1": "approved",
        "R2": "denied",
        "R3": "pending",
        "R4": "pending",
        "R5": "pending",
        "X1": "pending",
        "RNEW1": "qualified",
        "RNEW2": "pending",
    }
    transitions = [(h[2], h[3]) for h in batched["history"]]
    assert transitions == [
        ("pending", "qualified"),  # R1, once: the second entry saw the first's change
        (None, "pending"),  # RNEW1 created
        ("pending", "qualified"),  # RNEW1 qualified by the batch's later entry
        ("qualified", "approved"),  # R1
        (None, "pending"),  # RNEW2 created
    ]


def test_a_flush_while_an_entry_is_decided_writes_it_first(
    store: Store, public_ids: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step that flushes the session after rows referring to the entry being decided were
    made (as scheduling a notification does) writes that entry first, then updates it once
    decided: the batch still ends exactly as entry by entry."""
    real_link_back = service.fieldsync.link_back

    def link_back_then_flush(session: Any, *args: Any, **kw: Any) -> Any:
        linked = real_link_back(session, *args, **kw)
        session.flush()
        return linked

    monkeypatch.setattr(service.fieldsync, "link_back", link_back_then_flush)
    run(store, batched=False)
    one_by_one = snapshot(store)
    public_ids()
    run(store, batched=True)
    batched = snapshot(store)
    for part in ("entries", "referrals", "history", "audit"):
        assert batched[part] == one_by_one[part], part


def test_processing_a_batch_again_changes_nothing(store: Store) -> None:
    org_id = seed(store)
    entries = new_entries(org_id)
    with store.session() as s:
        process_entries(s, entries, ORG)
    before = snapshot(store)
    with store.session() as s:
        again = list(s.scalars(select(SalesEntry).order_by(SalesEntry.id)))
        process_entries(s, again, ORG)
    assert snapshot(store) == before


@pytest.mark.parametrize("keys_per_query", [2000, 3])
def test_the_pool_gives_each_entry_what_its_own_lookup_finds(
    store: Store, monkeypatch: pytest.MonkeyPatch, keys_per_query: int
) -> None:
    monkeypatch.setattr(candidates, "POOL_KEYS_PER_QUERY", keys_per_query)
    org_id = seed(store)
    with store.session() as s:
        program_id = s.scalar(select(Program.id).where(Program.key == "main"))
        assert program_id is not None
        plans = [
            plan_lookups(
                EntryInput(
                    sobject=e.sobject_type,
                    record_id=e.record_id,
                    change_type=e.change_type,
                    records=e.records,
                ),
                ORG.receiver,
            )  # fmt: skip
            for e in new_entries(org_id)
        ]
        for limit in (1, 200):  # a cap of one: the same referral kept either way
            pool = CandidatePool.fetch(s, program_id, plans, limit=limit)
            for plan in plans:
                own = find_referrals(s, program_id, plan, limit=limit)
                assert sorted(c.id for c in pool.referrals(plan)) == sorted(c.id for c in own)
                assert pool.members(plan) == find_members(s, program_id, plan)
        # Each candidate as the dataclass itself would build it from the stored referral.
        for c in pool.referrals(plans[0]) + pool.referrals(plans[-1]):
            referral = s.get(Referral, c.id)
            values = {f.name: getattr(referral, f.name) for f in dataclasses.fields(c)}
            assert c == ReferralCandidate(**{**values, "fields": referral.fields or {}})


def test_the_pool_reads_each_referral_it_reaches_once(store: Store) -> None:
    """A referral that several keys of the chunk reach (email, name, name blocks) is one row
    of the pool's statement, not one per key."""
    org_id = seed(store)
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_a: Any) -> None:
        if "FROM referrals" in statement:
            statements.append((statement, parameters))

    with store.session() as s:
        program_id = s.scalar(select(Program.id).where(Program.key == "main"))
        assert program_id is not None
        plans = [
            plan_lookups(
                EntryInput(e.sobject_type, e.record_id, e.change_type, e.records), ORG.receiver
            )
            for e in new_entries(org_id)
        ]
        event.listen(store.engine, "before_cursor_execute", capture)
        try:
            pool = CandidatePool.fetch(s, program_id, plans)
        finally:
            event.remove(store.engine, "before_cursor_execute", capture)
        (statement, parameters), *_members = statements
        ids = [row[0] for row in s.connection().exec_driver_sql(statement, parameters)]
    reached = {c.id for plan in plans for c in pool.referrals(plan)}
    assert len(reached) > 1
    assert sorted(ids) == sorted(reached)  # each once


# ---- through the inbound job ------------------------------------------------------------------


def rows_of(params: Any, many: bool) -> int:
    """The rows a statement writes: an executemany's parameter sets, or the length of the
    arrays of a statement of arrays (PostgreSQL: bridge.store.arrays)."""
    if many:
        return len(params)
    arrays = (
        [v for v in params.values() if isinstance(v, list | PgArray)]
        if isinstance(params, dict)
        else []
    )
    return len(arrays[0]) if arrays else 1


def lead_event(replay_id: int, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = dict.fromkeys(record_fields(JOB_ORG, "Lead"))
    record.update(
        Id=JANE,
        FirstName="Jane",
        LastName="Doe",
        Email="jane.doe@example.com",
        SystemModstamp=f"2026-01-05T10:00:0{replay_id}.000Z",
        LastModifiedById=SALES,
    )
    record.update(fields)
    return {
        "channel": "/topic/SFB_Lead",
        "data": {
            "event": {"createdDate": "2026-01-05T10:00:00.000Z", "replayId": replay_id,
                      "type": "updated"},
            "sobject": record,
        },
    }  # fmt: skip


JOB_ORG = OrgConfig.model_validate(
    {
        "programs": [{"key": "main", "name": "Main"}],
        "receiver": {
            "program": "main",
            "status_rules": [
                {
                    "status": "qualified",
                    "object": "Lead",
                    "field": "Status",
                    "op": "changed_to",
                    "value": "Qualified",
                }
            ],
        },
    }
)


def test_an_own_write_in_the_batch_is_the_next_entrys_previous_state(store: Store) -> None:
    """Open (sales) -> Qualified (the bridge's own write) -> Qualified (sales): the last one
    did not change Status to Qualified, because the entry before it already had it."""
    org_id = seed(store)
    messages = [
        lead_event(1, Status="Open"),
        lead_event(2, Status="Qualified", LastModifiedById=INTEGRATION),
        lead_event(3, Status="Qualified"),
        lead_event(4, Status="Working"),
        lead_event(5, Status="Qualified"),
    ]
    with store.session() as s:
        ids = inbox.store_and_advance(s, org_id, [e for m in messages for e in from_bayeux(m, {})])

    def no_org(*_a: Any) -> Any:
        raise AssertionError("no Salesforce call expected")

    context.set_context(
        WorkerContext(store=store, config=BridgeConfig(orgs={"acme": JOB_ORG}), open_org=no_org)
    )
    try:
        counts = jobs.process_inbound_batch(ids)
    finally:
        context.set_context(None)
    assert counts == {"own_write": 1, "processed": 2, "skipped": 2}
    with store.session() as s:
        saved = list(s.scalars(select(SalesEntry).order_by(SalesEntry.id)))
        r1 = s.scalar(select(Referral).where(Referral.public_id == "R1"))
        assert r1 is not None and r1.status == "qualified"
    assert [e.inbound_event_id for e in saved] == ids
    assert [e.previous.get("Status") for e in saved] == [None, None, "Qualified", "Qualified",
                                                          "Working"]  # fmt: skip
    assert [("status_rule:0" in e.reasons) for e in saved] == [False, False, False, False, True]


def test_a_batch_writes_each_entry_once_decided_and_its_audit_rows_together(
    store: Store,
) -> None:
    """Through the job: every entry is written by one INSERT, with its decision (no UPDATE of
    an entry), the chunk's audit rows by one INSERT, the events' states by one UPDATE
    whatever their ends. A referral created mid-batch (its id is needed) writes the entries
    decided so far first, still once each."""
    org_id = seed(store)
    messages = [
        lead_event(1, Status="Qualified"),  # Jane by email: R1 qualifies, a link-back push
        lead_event(2, Id=CARLA, FirstName="Carla", LastName="Cruz", Email="carla.cruz@example.com"),
        lead_event(3, Id=NEWBIE, LastName="Zed", Email=None),  # no match
        lead_event(4, Id=CARLA, LastModifiedById=INTEGRATION),  # own write
        lead_event(5, Id=NEWBIE, FirstName="Ann", LastName="New", Email="ann@new.example",
                   Referral_Code__c="MAX25"),  # a member's code: a referral is created
        lead_event(6, Status="Working"),  # Jane again, by her Lead id: nothing to change
    ]  # fmt: skip
    with store.session() as s:
        ids = inbox.store_and_advance(s, org_id, [e for m in messages for e in from_bayeux(m, {})])
    written: list[tuple[str, str, int]] = []  # (verb, table, rows)

    def count(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        words = statement.split()[:3]
        if words[:1] == ["INSERT"] and len(words) == 3:
            written.append(("INSERT", words[2], rows_of(params, many)))
        elif words[:1] == ["UPDATE"] and len(words) > 1:
            written.append(("UPDATE", words[1], rows_of(params, many)))

    def no_org(*_a: Any) -> Any:
        raise AssertionError("no Salesforce call expected")

    context.set_context(
        WorkerContext(store=store, config=BridgeConfig(orgs={"acme": JOB_ORG}), open_org=no_org)
    )
    event.listen(store.engine, "before_cursor_execute", count)
    try:
        counts = jobs.process_inbound_batch(ids)
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
        context.set_context(None)
    assert counts == {"own_write": 1, "processed": 3, "skipped": 2}

    def statements(verb: str, table: str) -> list[int]:
        return [rows for v, t, rows in written if (v, t) == (verb, table)]

    assert statements("UPDATE", "sales_entries") == []
    assert sum(statements("INSERT", "sales_entries")) == len(ids)
    # The entries decided before the referral was created, the rest (the own write among
    # them) at the end.
    assert len(statements("INSERT", "sales_entries")) == 2
    assert len(statements("INSERT", "audit_log")) == 1
    # The claim, then one for every end (done, skipped: a CASE by the events' ids).
    assert len(statements("UPDATE", "inbound_events")) == 2
    with store.session() as s:
        saved = list(s.scalars(select(SalesEntry).order_by(SalesEntry.id)))
        audit_rows = s.scalar(select(func.count()).select_from(AuditLog))
    assert [e.inbound_event_id for e in saved] == ids  # in the events' order
    assert [e.outcome for e in saved] == [
        "processed", "processed", "skipped", "skipped", "processed", "skipped"
    ]  # fmt: skip
    assert all(e.processed_at is not None and e.decision for e in saved)
    # entry.processed for each decided entry; R1's status change twice; the new referral.
    assert audit_rows == sum(statements("INSERT", "audit_log")) >= 5


def test_on_postgresql_a_jobs_statements_run_once_each_whatever_their_rows(
    postgres_store: Store,
) -> None:
    """The chunk's entries, audit rows, pushes and referral changes go as one array per
    column (bridge.store.arrays): the server runs each statement once, where an executemany
    ran it once per row (a Bind and an Execute each)."""
    store = postgres_store
    org_id = seed(store)
    replay = itertools.count(1)
    people = [
        {"Id": CARLA, "FirstName": "Carla", "LastName": "Cruz", "Email": "carla.cruz@example.com"},
        {},  # Jane, by email
    ]

    def job(n: int) -> tuple[int, Any]:
        messages = [
            lead_event(r, SystemModstamp=f"2026-01-05T10:{r:02d}:00.000Z", **people[i % 2])
            for i, r in zip(range(n), replay, strict=False)
        ]
        with store.session() as s:
            ids = inbox.store_and_advance(
                s, org_id, [e for m in messages for e in from_bayeux(m, {})]
            )
        statements = 0

        def count(*_a: Any) -> None:
            nonlocal statements
            statements += 1

        event.listen(store.engine, "before_cursor_execute", count)
        try:
            with traced(store) as trips:
                jobs.process_inbound_batch(ids)
        finally:
            event.remove(store.engine, "before_cursor_execute", count)
        return statements, trips

    context.set_context(WorkerContext(store=store, config=BridgeConfig(orgs={"acme": JOB_ORG})))
    try:
        small, small_trips = job(2)  # both linked: referral changes, link-back pushes, audit
        large, large_trips = job(8)  # the rest changes nothing: entries and audit rows
    finally:
        context.set_context(None)
    with store.session() as s:
        written = s.scalar(select(func.count()).select_from(SalesEntry))
    assert written == 10
    # One Execute per statement (an executemany of the 8 entries ran 8, of 2 audit rows 2).
    assert small_trips.executed == small
    assert large_trips.executed == large


def test_a_referral_changed_after_the_pool_was_read_is_decided_on_as_it_is_now(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the batch's lookup and its lock another worker approves R1: the entry that
    would have qualified R1 sees the approval (terminal), as process_entry's re-check does."""
    org_id = seed(store)
    fetch = CandidatePool.fetch.__func__  # type: ignore[attr-defined]

    def fetch_then_approve(cls: Any, session: Any, *args: Any, **kw: Any) -> CandidatePool:
        pool = fetch(cls, session, *args, **kw)
        session.execute(
            update(Referral).where(Referral.public_id == "R1").values(status="approved")
        )
        return pool

    monkeypatch.setattr(CandidatePool, "fetch", classmethod(fetch_then_approve))
    jane = lead(JANE, "Jane", "Doe", "jane.doe@example.com", Referral_ID__c="R1")
    entries = new_entries(org_id)[:1]
    assert entries[0].records == {"Lead": {**jane, "Status": "Qualified"}}
    with store.session() as s:
        process_entries(s, entries, ORG)
    snap = snapshot(store)
    assert [(e[1], e[2]) for e in snap["entries"]] == [
        ("skipped", ["status_rule:0", "direct_match", "terminal_referral"])
    ]
    assert snap["history"] == []


def test_each_entry_is_decided_once(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch decides every entry once to know which referrals to lock, and keeps that
    decision when the entry's turn comes (its candidates unchanged); entry by entry, once
    each too. (The batch used to decide every entry with a candidate twice.)"""
    calls: list[str | None] = []
    real_decide = service.decide

    def counting_decide(entry: EntryInput, *args: Any, **kw: Any) -> Any:
        calls.append(entry.record_id)
        return real_decide(entry, *args, **kw)

    monkeypatch.setattr(service, "decide", counting_decide)
    people = [("R1", JANE, "Jane"), ("R3", CARLA, "Carla"), ("R4", NEWBIE, "Tom")]

    def entries(org_id: int) -> list[SalesEntry]:
        return [
            SalesEntry(
                org_connection_id=org_id,
                source="stream",
                sobject_type="Lead",
                record_id=lead_id,
                change_type="updated",
                records={
                    "Lead": lead(lead_id, first, "X", None, Referral_ID__c=ref, Status="Qualified")
                },
                outcome="new",
            )
            for ref, lead_id, first in people
        ]

    for batched in (True, False):
        reset(store)
        batch = entries(seed(store))
        calls.clear()
        with store.session() as s:
            if batched:
                process_entries(s, batch, ORG)
            else:
                for entry in batch:
                    s.add(entry)
                    process_entry(s, entry, ORG)
            assert [e.outcome for e in batch] == ["processed"] * 3
        assert calls == [JANE, CARLA, NEWBIE], "batched" if batched else "entry by entry"


def test_a_chunks_link_back_pushes_are_one_insert_and_a_saved_key_keeps_its_push(
    store: Store,
) -> None:
    """Three entries matched by email queue a link-back push each: the chunk writes them with
    one INSERT. One of them was saved before (same key): it inserts nothing, and the entry
    lists the saved push, which stays as it was."""
    org_id = seed(store)

    def chunk() -> list[SalesEntry]:
        people = [
            ("00Q000000000011AAA", "Karla", "Cruz", "carla.cruz@example.com"),  # R3
            ("00Q000000000012AAA", "Tom", "Miller", "tom.miller@example.com"),  # R4
            ("00Q000000000013AAA", "Jane", "Doe", "jane.doe@example.com"),  # R1
        ]
        return [
            SalesEntry(
                org_connection_id=org_id,
                source="stream",
                sobject_type="Lead",
                record_id=lead_id,
                change_type="updated",
                raw={},
                records={"Lead": lead(lead_id, first, last, email)},
                outcome="new",
                reasons=[],
            )
            for lead_id, first, last, email in people
        ]

    with store.sessions() as s:  # not committed: only to learn the key Tom's link-back has
        tom = process_entries(s, chunk(), ORG)[1]
        tom_push = s.get(Push, tom.decision["pushes"][0])
        assert tom_push is not None
        key, payload = tom_push.idempotency_key, tom_push.payload
    with store.session() as s:
        saved = Push(
            kind="field_update",
            idempotency_key=key,
            sobject_type="Lead",
            payload=payload,
            org_connection_id=org_id,
            state="sent",
        )
        s.add(saved)
        s.flush()
        saved_id = saved.id
    inserts: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.split()[:3] == ["INSERT", "INTO", "pushes"]:
            inserts.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        with store.session() as s:
            done = process_entries(s, chunk(), ORG)
            listed = [e.decision.get("pushes", []) for e in done]
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert len(inserts) == 1
    assert [len(ids) for ids in listed] == [1, 1, 1]
    assert listed[1] == [saved_id]
    with store.session() as s:
        pushes = {p.id: p for p in s.scalars(select(Push))}
        entries = {e.record_id: e.decision["pushes"] for e in s.scalars(select(SalesEntry))}
    assert sorted(pushes) == sorted(i for ids in listed for i in ids)
    assert pushes[saved_id].state == "sent"  # the saved push is left as it was
    assert {pushes[ids[0]].payload["record_id"] for ids in listed} == {
        "00Q000000000011AAA", "00Q000000000012AAA", "00Q000000000013AAA"
    }  # fmt: skip
    assert list(entries.values()) == listed  # what the entries were saved with


def test_a_jobs_round_trips_on_postgresql_do_not_grow_with_its_unchanged_entries(
    postgres_store: Store,
) -> None:
    """Edits that change nothing of linked referrals: the job's statements and round trips
    are the same for 2 entries and for 8 (the referrals they sync fields into are locked
    with the others, not read one by one), no pre-ping, no ROLLBACK (tests/roundtrips.py)."""
    store = postgres_store
    org_id = seed(store)
    replay = itertools.count(1)

    def job(messages: list[dict[str, Any]]) -> tuple[Counter[str], Any]:
        with store.session() as s:
            events = [e for m in messages for e in from_bayeux(m, {})]
            ids = inbox.store_and_advance(s, org_id, events)
        statements: Counter[str] = Counter()

        def count(_conn: Any, _cursor: Any, statement: str, *_a: Any) -> None:
            statements[" ".join(statement.split()[:1])] += 1
            if "FROM referrals" in statement:
                statements["FROM referrals"] += 1

        event.listen(store.engine, "before_cursor_execute", count)
        try:
            with traced(store) as trips:
                jobs.process_inbound_batch(ids)
        finally:
            event.remove(store.engine, "before_cursor_execute", count)
        return statements, trips

    def edits(n: int) -> list[dict[str, Any]]:
        people = [{}, {"Id": CARLA, "FirstName": "Carla", "LastName": "Cruz",
                       "Email": "carla.cruz@example.com"}]  # fmt: skip
        return [
            lead_event(r, SystemModstamp=f"2026-01-05T10:{r:02d}:00.000Z", **people[i % 2])
            for i, r in zip(range(n), replay, strict=False)
        ]

    context.set_context(WorkerContext(store=store, config=BridgeConfig(orgs={"acme": JOB_ORG})))
    try:
        job(edits(2))  # matched by email: linked
        small, small_trips = job(edits(2))
        large, large_trips = job(edits(8))
    finally:
        context.set_context(None)
    with store.session() as s:
        outcomes = s.scalars(select(SalesEntry.outcome).order_by(SalesEntry.id)).all()
    assert outcomes[2:] == ["skipped"] * 10  # nothing to change
    assert large == small and large["FROM referrals"] <= 3
    assert large_trips.executions == small_trips.executions
    assert ";" not in large_trips.commands and "ROLLBACK" not in large_trips.commands
    assert large_trips.commands.count("BEGIN") == large_trips.commands.count("COMMIT")


def test_the_referrals_a_chunk_changes_are_written_with_one_update_per_set_of_columns(
    store: Store,
) -> None:
    """R1 and R4 get their Lead linked, R3 also qualifies between them (in id order): the ORM
    wrote the runs of neighbours changing the same columns, three statements; the chunk
    writes one per set of columns changed, two, and every referral holds what it was given."""
    org_id = seed(store)
    tom = "00Q000000000008AAA"
    records = [
        lead(JANE, "Jane", "Doe", "jane.doe@example.com"),  # R1 by email: linked
        lead(CARLA, "Carla", "Cruz", "carla.cruz@example.com", Status="Qualified"),  # R3
        lead(tom, "Tom", "Miller", "tom.miller@example.com"),  # R4 by email: linked
    ]
    entries = [
        SalesEntry(
            org_connection_id=org_id,
            source="stream",
            sobject_type="Lead",
            record_id=r["Id"],
            change_type="updated",
            raw={"sobject": r},
            records={"Lead": r},
            outcome="new",
            reasons=[],
        )  # fmt: skip
        for r in records
    ]
    updates: list[int] = []  # rows of each UPDATE referrals

    def count(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        if statement.split()[:2] == ["UPDATE", "referrals"]:
            updates.append(rows_of(params, many))

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        with store.session() as s:
            process_entries(s, entries, ORG)
            assert not s.dirty
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert [e.outcome for e in entries] == ["processed"] * 3
    assert sorted(updates) == [1, 2]
    with store.session() as s:
        saved = {
            r.public_id: (r.status, r.ever_qualified, r.sf_lead_id, r.updated_at > r.created_at)
            for r in s.scalars(select(Referral).where(Referral.public_id.in_(["R1", "R3", "R4"])))
        }
    assert saved == {
        "R1": ("pending", False, JANE, True),
        "R3": ("qualified", True, CARLA, True),
        "R4": ("pending", False, tom, True),
    }
