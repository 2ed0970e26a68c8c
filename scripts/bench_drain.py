"""The sender's own cost per push: what a drain spends claiming its pushes and saving their
results, beside the calls to the org.

Starts `sfbridge devorg`, connects as the integration user, and in a fresh store (SQLite, or
PostgreSQL with `--store postgres`) saves N referrals with a member, then sends, one phase at
a time, the pushes a drain sends most:

1. `referral`: the N referral adds (a lookup by email, Leads upserted by Referral_ID__c);
2. `link_back`: a field update of each new Lead naming its referral (what the receiver queues
   for an entry matched by email);
3. `activity`: a Task per referral, its WhoId from the referral's Lead.

For each phase it prints the sender's CPU per push (`time.process_time` around
`sender.send`: this process only, the org's work is its own process) and the SQL statements
per push (SQLAlchemy `before_cursor_execute`), best of `--runs` (each run a fresh store and
org state).

    scripts/bench_drain [--pushes 500] [--runs 3] [--store sqlite|postgres]

PostgreSQL comes from SFBRIDGE_BENCH_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test): a database of its own is created and dropped.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchorg import bench_org  # noqa: E402
from sqlalchemy import event, select, text  # noqa: E402

from bridge.config import OrgConfig  # noqa: E402
from bridge.devorg.testing import DevOrg  # noqa: E402
from bridge.store import Store  # noqa: E402
from bridge.store.models import Member, OrgConnection, Program, Push, Referral  # noqa: E402
from bridge.writeback import queue_activity, queue_field_update, queue_referral_add  # noqa: E402
from bridge.writeback.client import OrgWriter  # noqa: E402
from bridge.writeback.sender import send  # noqa: E402

PHASES = ("referral", "link_back", "activity")


def fresh_store(kind: str, tmp: str) -> tuple[Store, Callable[[], None]]:
    if kind == "sqlite":
        store = Store(f"sqlite:///{tmp}/drain-{uuid.uuid4().hex[:8]}.db")
        store.upgrade()
        return store, store.dispose
    url = os.environ.get("SFBRIDGE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    admin = Store(url, isolation_level="AUTOCOMMIT")
    name = f"sfbridge_bench_{uuid.uuid4().hex[:8]}"
    with admin.engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    store = Store(url.rsplit("/", 1)[0] + "/" + name)
    store.upgrade()

    def drop() -> None:
        store.dispose()
        with admin.engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return store, drop


def seed(store: Store, count: int) -> tuple[int, list[int]]:
    """The org connection, a program, a member and `count` referrals."""
    with store.session() as s:
        org = OrgConnection(
            name="bench", login_url="https://login.salesforce.com", auth_method="jwt"
        )
        program = Program(key="bench", name="Bench")
        s.add_all([org, program])
        s.flush()
        member = Member(program_id=program.id, name="Mia Member", email="mia@example.org")
        s.add(member)
        s.flush()
        referrals = [
            Referral(
                public_id=f"ref-drain-{n}",
                program_id=program.id,
                member_id=member.id,
                first_name="Riley",
                last_name=f"Drain{n}",
                email=f"riley.drain{n}@example.com",
                company=f"Drain Co {n}",
            )
            for n in range(count)
        ]
        s.add_all(referrals)
        s.flush()
        return org.id, [r.id for r in referrals]


def queue(
    store: Store, phase: str, org_id: int, config: OrgConfig, referral_ids: list[int]
) -> list[int]:
    with store.session() as s:
        org = s.get(OrgConnection, org_id)
        assert org is not None
        referrals = s.scalars(select(Referral).where(Referral.id.in_(referral_ids))).all()
        pushes: list[Push] = []
        for r in referrals:
            if phase == "referral":
                pushes.append(queue_referral_add(s, org, config, r))
            elif phase == "link_back":
                assert r.sf_lead_id, "the referral phase runs first"
                pushes.append(
                    queue_field_update(
                        s,
                        org,
                        "Lead",
                        {"Referral_ID__c": r.public_id, "Company": r.company},
                        record_id=r.sf_lead_id,
                        referral_id=r.id,
                        change="link_back",
                    )  # fmt: skip
                )
            else:
                pushes.append(
                    queue_activity(
                        s,
                        org,
                        config,
                        {
                            "id": f"drain-{r.id}",
                            "kind": "call",
                            "referral_id": r.id,
                            "subject": "Intro",
                            "occurred_at": "2026-11-20T10:00:00Z",
                        },
                    )  # fmt: skip
                )
        s.flush()
        return [p.id for p in pushes]


def measure(store: Store, writer: OrgWriter, config: OrgConfig, ids: list[int]) -> dict[str, Any]:
    statements = [0]

    def count(*_args: Any) -> None:
        statements[0] += 1

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        cpu = time.process_time()
        report = send(store, writer, config, ids, now=datetime.now(UTC))
        cpu = time.process_time() - cpu
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert len(report.sent) == len(ids), (len(report.sent), report)
    return {"cpu_ms": cpu * 1000 / len(ids), "statements": statements[0] / len(ids)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()

    results: dict[str, list[dict[str, Any]]] = {p: [] for p in PHASES}
    with DevOrg() as devorg, tempfile.TemporaryDirectory() as tmp:
        info = devorg.info
        config, org = bench_org(info)
        writer = OrgWriter.for_org(org)
        for _run in range(args.runs):
            devorg.control("reset")
            store, drop = fresh_store(args.store, tmp)
            try:
                org_id, referral_ids = seed(store, args.pushes)
                for phase in PHASES:
                    ids = queue(store, phase, org_id, config, referral_ids)
                    results[phase].append(measure(store, writer, config, ids))
            finally:
                drop()

    print(f"sender, {args.pushes} pushes a phase, {args.store}, load {os.getloadavg()[0]:.1f}")
    print(f"{'phase':<10} {'CPU per push, runs':<28} {'best':>8} {'statements per push':>20}")
    for phase in PHASES:
        runs = results[phase]
        cpus = " / ".join(f"{r['cpu_ms']:.2f}" for r in runs)
        best = min(r["cpu_ms"] for r in runs)
        print(f"{phase:<10} {cpus + ' ms':<28} {best:>6.2f} ms {runs[0]['statements']:>20.2f}")


if __name__ == "__main__":
    main()
