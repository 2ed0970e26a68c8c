"""Every hot query uses an index that fits it, on SQLite and PostgreSQL, in a store with
realistic statistics (issue #16).

The statements are captured while the real code runs (the subscriber's insert and cursor,
the worker's claim, re-check, previous values and candidate pool, the lock, the sweeper, the
API lists and the review queue), then explained with their own parameters: a full scan or a
temporary B-tree over referrals, entries or events fails the test. The store has 20,000
referrals with mostly-NULL Salesforce ids (the column statistics that misled SQLite), as many
events and entries, and fresh statistics from the product's own `Store.analyze()`.
``SFBRIDGE_PRINT_PLANS=1 pytest -s tests/test_query_plans.py`` prints every plan.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.engine import Engine

from bridge import context, jobs
from bridge.config import BridgeConfig, OrgConfig
from bridge.context import WorkerContext
from bridge.matchkeys import referral_keys
from bridge.processes import refresh_statistics
from bridge.receiver.relational import record_fields
from bridge.store import Store
from bridge.store.models import (
    InboundEvent,
    Member,
    OrgConnection,
    Program,
    Referral,
    SalesEntry,
    utcnow,
)
from bridge.streaming import inbox
from bridge.streaming.events import from_bayeux
from bridge.users import create_user
from tests.web.conftest import AuthActions, make_app
from tests.web.seed import CONFIG_YAML, FAST_HASH, PASSWORD, token

REFERRALS = 20_000
HOT_TABLES = ("referrals", "sales_entries", "inbound_events")
SALES = "005SALES0000000001"

ORG = OrgConfig.model_validate(
    {
        "programs": [{"key": "main", "name": "Main"}, {"key": "partners", "name": "Partners"}],
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

FIRST = [
    "Anna",
    "Ben",
    "Chloe",
    "David",
    "Elif",
    "Farid",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Karl",
    "Lena",
    "Mia",
    "Noah",
    "Olga",
]
SYLLABLES = [
    "ber",
    "ka",
    "lin",
    "mo",
    "ner",
    "ost",
    "pa",
    "ri",
    "sch",
    "tan",
    "vel",
    "wu",
    "son",
    "ley",
    "ford",
]


def _surname(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def _sf_id(prefix: str, n: int) -> str:
    return f"{prefix}{n:015d}"


def _seed(store: Store) -> dict[str, Any]:
    """A store that looks like a year of use: two programs (one holds nearly everything),
    referrals whose Salesforce ids are mostly NULL, done events and their entries."""
    rng = random.Random(16)
    now = utcnow()
    with store.session() as s:
        conn = OrgConnection(
            name="acme",
            org_id="00D000000000001AAA",
            login_url="https://x",
            instance_url="https://acme.example",
            auth_method="jwt",
            integration_user_id="005INTEGRATION0001",
        )
        s.add(conn)
        s.flush()
        main = Program(key="main", name="Main", org_connection_id=conn.id)
        partners = Program(key="partners", name="Partners", org_connection_id=conn.id)
        s.add_all([main, partners])
        s.flush()
        ids = {"org": conn.id, "main": main.id, "partners": partners.id}
        create_user(s, "reviewer@example.com", PASSWORD, "reviewer", hash_method=FAST_HASH)
        create_user(s, "admin@example.com", PASSWORD, "admin", hash_method=FAST_HASH)
    members = [
        {
            "program_id": ids["main"],
            "external_id": f"m-{n}",
            "referral_code": f"CODE{n}",
            "name": f"Member {n}",
            "email": f"member{n}@members.test",
            "email_key": f"member{n}@members.test",
            "created_at": now,
        }
        for n in range(500)
    ]
    referrals = []
    for n in range(REFERRALS):
        first, last = rng.choice(FIRST), _surname(rng)
        email = f"{first.lower()}.{last.lower()}{n}@example.test"
        phone = f"+1 555 {n % 1000:03d} {n % 10000:04d}" if n % 2 else None
        referrals.append(
            {
                "public_id": f"R{n:08d}",
                "program_id": ids["partners"] if n % 20 == 0 else ids["main"],
                "member_id": 1 + n % 500 if n % 3 else None,
                "first_name": first,
                "last_name": last,
                "email": email,
                "phone": phone,
                "status": ("pending", "qualified", "approved", "denied")[n % 4],
                "ever_qualified": False,
                "fields": {},
                # Mostly NULL: only the referrals already seen in Salesforce carry an id.
                "sf_lead_id": _sf_id("00Q", n) if n % 50 == 0 else None,
                "sf_contact_id": _sf_id("003", n) if n % 100 == 1 else None,
                "sf_account_id": _sf_id("001", n) if n % 200 == 2 else None,
                "sf_opportunity_id": _sf_id("006", n) if n % 200 == 3 else None,
                "created_at": now,
                "updated_at": now,
                **referral_keys(first_name=first, last_name=last, email=email, phone=phone),
            }
        )
    events, entries = [], []
    outcomes = ["processed"] * 4 + ["no_match"] * 4 + ["review", "skipped"]
    for n in range(REFERRALS):
        record_id = _sf_id("00Q", n % 7000)
        events.append(
            {
                "org_connection_id": ids["org"],
                "channel": "/topic/SFB_Lead",
                "replay_id": n + 1,
                "change_key": f"{record_id}@{n}",
                "source": "stream",
                "sobject_type": "Lead",
                "record_id": record_id,
                "change_type": "updated",
                "event_created_at": now,
                "payload": {},
                "state": "done",
                "attempts": 1,
                "received_at": now - timedelta(days=1),
                "processed_at": now - timedelta(days=1),
            }
        )
        entries.append(
            {
                "org_connection_id": ids["org"],
                "program_id": ids["main"],
                "inbound_event_id": n + 1,
                "source": "stream",
                "sobject_type": ("Lead", "Contact", "Opportunity")[n % 3],
                "record_id": record_id,
                "change_type": "updated",
                "raw": {},
                "records": {"Lead": {"Id": record_id, "Status": "Open"}},
                "previous": {},
                "candidates": [],
                "decision": {},
                "outcome": outcomes[n % len(outcomes)],
                "reasons": [],
                "attempts": 1,
                "created_at": now - timedelta(days=1),
                "updated_at": now - timedelta(days=1),
            }
        )
    with store.engine.begin() as c:
        c.execute(insert(Member), members)
        c.execute(insert(Referral), referrals)
        c.execute(insert(InboundEvent), events)
        c.execute(insert(SalesEntry), entries)
    store.analyze()
    return ids


def _lead_message(replay_id: int, n: int, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = dict.fromkeys(record_fields(ORG, "Lead"))
    record.update(
        Id=_sf_id("00Q", 900_000 + n),
        FirstName="Jane",
        LastName=f"Doe{n}",
        Email=f"jane{n}@example.test",
        Status="Qualified",
        SystemModstamp=f"2026-01-05T10:00:{n % 60:02d}.{n % 1000:03d}Z",
        LastModifiedById=SALES,
    )
    record.update(fields)
    return {
        "channel": "/topic/SFB_Lead",
        "data": {
            "event": {
                "createdDate": "2026-01-05T10:00:00.000Z",
                "replayId": replay_id,
                "type": "updated",
            },
            "sobject": record,
        },
    }


class Captured:
    """Every statement the engines run (with its parameters), by the code path that ran it."""

    def __init__(self) -> None:
        self.path = ""
        self.statements: dict[str, tuple[str, Any, str]] = {}

    def __call__(
        self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, many: bool
    ) -> None:
        if (
            many
            and isinstance(parameters, (list, tuple))
            and parameters
            and isinstance(parameters[0], (list, tuple, dict))
        ):
            parameters = parameters[0]
        if isinstance(parameters, list):
            parameters = tuple(parameters)
        self.statements.setdefault(statement, (statement, parameters, self.path))


@pytest.fixture
def captured() -> Iterator[Captured]:
    capture = Captured()
    event.listen(Engine, "before_cursor_execute", capture)
    yield capture
    event.remove(Engine, "before_cursor_execute", capture)


def _touches_hot_table(statement: str) -> bool:
    return any(re.search(rf"\b{t}\b", statement) for t in HOT_TABLES)


def _is_hot(statement: str) -> bool:
    head = statement.lstrip().split(None, 1)[0].upper()
    if head not in ("SELECT", "UPDATE", "DELETE", "INSERT", "WITH"):
        return False
    if not _touches_hot_table(statement):
        return False
    # The dashboards' counts per outcome/state read a whole index by nature (one
    # covering-index scan); they are not on the inbound path.
    return not re.search(r"GROUP BY \w+\.(outcome|state)\b", statement)


def _newest_rows(statement: str) -> bool:
    """The first page of a list: the newest N rows, no filter (reads N rows in id order)."""
    return " WHERE " not in statement and bool(
        re.search(r"ORDER BY \w+\.id DESC\s+LIMIT", statement)
    )


def _page_of_a_list(statement: str) -> bool:
    """A page of a list, newest first: read in index order up to its LIMIT."""
    return bool(re.search(r"ORDER BY \w+\.id DESC\s+LIMIT", statement))


def _sqlite_problems(store: Store, statement: str, params: Any) -> list[str]:
    raw = store.engine.raw_connection()
    try:
        rows = raw.cursor().execute("EXPLAIN QUERY PLAN " + statement, params).fetchall()
    finally:
        raw.close()
    plan = [str(r[-1]) for r in rows]
    if os.environ.get("SFBRIDGE_PRINT_PLANS"):
        print(" ".join(statement.split())[:200], "\n   ", " | ".join(plan))
    bad = []
    for line in plan:
        scan = re.match(r"SCAN (\w+)", line)
        hot_scan = scan is not None and scan.group(1).rstrip("_0123456789") in HOT_TABLES
        if hot_scan and not (line == f"SCAN {scan.group(1)}" and _newest_rows(statement)):
            bad.append(line)
        if "TEMP B-TREE" in line:
            bad.append(line)
        # A search by program alone reads the whole program (most of the table).
        search = re.match(r"SEARCH (\w+) .*\(program_id=\?\)$", line)
        hot_search = search is not None and search.group(1).rstrip("_0123456789") in HOT_TABLES
        if hot_search and not _page_of_a_list(statement):
            bad.append(line)
    return [f"{b}  (plan: {' | '.join(plan)})" for b in bad]


def _postgres_problems(store: Store, statement: str, params: Any) -> list[str]:
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("EXPLAIN " + statement, params)
        plan = [str(r[0]) for r in cur.fetchall()]
        if os.environ.get("SFBRIDGE_PRINT_PLANS"):
            print(" ".join(statement.split())[:200], "\n   ", " | ".join(p.strip() for p in plan))
    finally:
        raw.rollback()
        raw.close()
    bad = [
        line.strip() for line in plan if re.search(rf"Seq Scan on ({'|'.join(HOT_TABLES)})\b", line)
    ]
    if not _page_of_a_list(statement):  # by program alone: the whole program
        bad += [line.strip() for line in plan if re.search(r"\bix_referrals_program\b", line)]
    return [f"{b}  (plan: {' | '.join(p.strip() for p in plan)})" for b in bad]


def _run_hot_paths(store: Store, ids: dict[str, Any], capture: Captured, tmp_path: Path) -> None:
    # A few referrals the new changes reach by each key: a Salesforce id, an email, a name.
    with store.session() as s:
        known = s.scalars(select(Referral).where(Referral.sf_lead_id.is_not(None)).limit(3)).all()
        by_email = s.scalars(select(Referral).where(Referral.id.in_([7, 8, 9]))).all()
    messages = []
    for n, r in enumerate(known):
        messages.append(_lead_message(100_000 + n, n, Id=r.sf_lead_id))
    for n, r in enumerate(by_email, start=10):
        messages.append(_lead_message(100_000 + n, n, Email=r.email))
    for n, r in enumerate(by_email, start=20):  # a typo'd surname: the fuzzy arms
        messages.append(
            _lead_message(100_000 + n, n, FirstName=r.first_name, LastName=r.last_name + "x")
        )
    for n, r in enumerate(by_email, start=30):  # a Referral ID: the direct arms by id
        messages.append(_lead_message(100_000 + n, n, Referral_ID__c=r.public_id))
    for n in range(40, 80):
        messages.append(_lead_message(100_000 + n, n))

    capture.path = "subscriber: store_and_advance"
    with store.session() as s:
        new_ids = inbox.store_and_advance(
            s, ids["org"], [e for m in messages for e in from_bayeux(m, {})]
        )
    assert len(new_ids) == len(messages)

    def no_org(*_a: Any) -> Any:
        raise AssertionError("the events carry every field: no Salesforce call")

    capture.path = "worker: process_inbound_batch"
    context.set_context(
        WorkerContext(store=store, config=BridgeConfig(orgs={"acme": ORG}), open_org=no_org)
    )
    try:
        counts = jobs.process_inbound_batch(new_ids)
    finally:
        context.set_context(None)
    assert sum(counts.values()) == len(messages), counts

    capture.path = "sweeper: pending_events, mark_queued"
    now = utcnow()
    with store.session() as s:
        pending = inbox.pending_events(s, new_before=now, claimed_before=now)
        inbox.mark_queued(s, pending or [1])

    capture.path = "web: API lists and the review queue"
    config_file = tmp_path / "sfbridge.yaml"
    config_file.write_text(CONFIG_YAML, encoding="utf-8")
    app = make_app(store, config_file, tmp_path)
    try:
        client = app.test_client()
        secret = token(store, ["referrals:read", "entries:read", "pushes:read"])
        headers = {"Authorization": f"Bearer {secret}"}
        for url in (
            "/api/v1/referrals",
            "/api/v1/referrals?status=qualified",
            "/api/v1/referrals?email=anna.bermo7@example.test",
            "/api/v1/referrals?program=partners",
            "/api/v1/entries",
            "/api/v1/entries?outcome=review",
            "/api/v1/entries?sobject_type=Contact",
        ):
            page = client.get(url, headers=headers)
            assert page.status_code == 200, (url, page.get_data(as_text=True))
            cursor = page.get_json()["next_cursor"]
            if cursor:
                sep = "&" if "?" in url else "?"
                assert client.get(f"{url}{sep}cursor={cursor}", headers=headers).status_code == 200
        auth = AuthActions(client)
        assert auth.login().status_code in (302, 303)
        for url in ("/queue/review", "/queue/review?page=2", "/queue/failed"):
            assert client.get(url).status_code == 200, url
    finally:
        app.extensions["sfbridge"].store.dispose()


def test_every_hot_query_uses_an_index_that_fits_it(
    store: Store, captured: Captured, tmp_path: Path
) -> None:
    ids = _seed(store)
    captured.statements.clear()
    _run_hot_paths(store, ids, captured, tmp_path)
    hot = [c for c in captured.statements.values() if c[2] and _is_hot(c[0])]
    paths = {path for _s, _p, path in hot}
    assert len(paths) == 4, paths  # every code path was captured
    problems_of = _sqlite_problems if store.engine.dialect.name == "sqlite" else _postgres_problems
    problems = []
    for statement, params, path in hot:
        for problem in problems_of(store, statement, params):
            problems.append(f"[{path}] {' '.join(statement.split())[:300]}\n    {problem}")
    assert not problems, "\n".join(problems)


def test_statistics_are_refreshed_after_migrations_and_once_per_interval(
    sqlite_store: Store, redis_client: Any
) -> None:
    """A migrated store has statistics; the sweeper's refresh runs once per interval across
    workers and counts what was added since (the partial index counts only the ids)."""
    with sqlite_store.engine.connect() as c:
        tables = "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"
        assert c.exec_driver_sql(tables).scalar() == 1
    _seed(sqlite_store)
    with sqlite_store.engine.begin() as c:
        c.exec_driver_sql("DELETE FROM sqlite_stat1")
    assert refresh_statistics(sqlite_store, redis_client) is True
    assert refresh_statistics(sqlite_store, redis_client) is False  # within the interval
    with sqlite_store.engine.connect() as c:
        stats = dict(c.exec_driver_sql("SELECT idx, stat FROM sqlite_stat1").all())
    assert stats["ix_referrals_program_sf_lead"].split()[0] == str(REFERRALS // 50)
    # Sampled (analysis_limit): about the table's size, not counted row by row.
    assert int(stats["ix_referrals_email"].split()[0]) > REFERRALS // 2


def test_the_migration_fills_the_prefix_block_of_stored_referrals(sqlite_store: Store) -> None:
    from alembic import command

    from bridge.store import alembic_config

    config = alembic_config(sqlite_store.url)
    command.downgrade(config, "0001")
    with sqlite_store.engine.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO programs (id, key, name, created_at) VALUES (1, 'm', 'M', 0)"
        )
        c.exec_driver_sql(
            "INSERT INTO referrals (public_id, program_id, first_name, last_name, status, "
            "ever_qualified, fields, created_at, updated_at) "
            "VALUES ('R1', 1, 'Charlotte', 'Rosada', 'pending', 0, '{}', 0, 0)"
        )
    sqlite_store.upgrade()
    with sqlite_store.engine.connect() as c:
        block = c.exec_driver_sql("SELECT name_pblock FROM referrals").scalar()
    assert block == referral_keys(first_name="Charlotte", last_name="Rosada")["name_pblock"]
