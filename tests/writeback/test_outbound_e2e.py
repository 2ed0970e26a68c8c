"""The outbound engine end to end: `sfbridge org pause/resume` and `sfbridge worker` as real
processes, Redis, SQLite and the local org over HTTPS.

- the on/off switch holds pushes as pending (no call reaches the org) and releases them;
- a drain above `writeback.bulk_threshold` writes through Bulk API 2.0, and each row's result
  lands on its push as a collection result would (a refused row fails its push only);
- `sfbridge worker --outbound-process` sends in a process of its own: a change streamed while
  a drain waits for the org becomes an entry at once, not after the drain.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from sqlalchemy import select

from bridge.devorg.testing import DevOrg
from bridge.store.models import OrgConnection, Program, Push, PushAttempt, Referral, SalesEntry
from bridge.writeback import queue_referral_add, request_drain
from tests.harness import ORG, Bridge, Writer, sfbridge_command, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def bridge(clean_devorg: DevOrg, redis_url: str, tmp_path: Path) -> Iterator[Bridge]:
    b = Bridge(tmp_path / "bridge", clean_devorg, redis_url, topics=["SFB_Lead"])
    config = yaml.safe_load(b.config_path.read_text())
    config["orgs"][ORG]["writeback"] = {"bulk_threshold": 5}
    b.config_path.write_text(yaml.safe_dump(config))
    b.install()
    with b.store.session() as s:
        org_id = s.scalar(select(OrgConnection.id).where(OrgConnection.name == ORG))
        s.add(Program(key="main", name="Main", org_connection_id=org_id))
    yield b
    b.close()


def queue(bridge: Bridge, tag: str, n: int, long_name_at: int | None = None) -> list[int]:
    with bridge.store.session() as s:
        conn = s.scalar(select(OrgConnection).where(OrgConnection.name == ORG))
        program = s.scalar(select(Program).where(Program.key == "main"))
        assert conn is not None and program is not None
        ids = []
        for i in range(n):
            referral = Referral(
                public_id=f"ref-{tag}-{i}", program_id=program.id, first_name="Ola",
                last_name="N" * 120 if i == long_name_at else f"{tag} {i}",
                email=f"{tag}{i}@example.com",
            )  # fmt: skip
            s.add(referral)
            s.flush()
            ids.append(queue_referral_add(s, conn, bridge.config.orgs[ORG], referral).id)
        return ids


def cli(bridge: Bridge, *args: str) -> str:
    done = subprocess.run(
        [*sfbridge_command(), *args], env=bridge.env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def run_worker(bridge: Bridge) -> None:
    worker = bridge.start("worker", "worker", "--burst")
    assert worker.wait(120) == 0, bridge.log("worker")
    bridge.procs.pop("worker")


def states(bridge: Bridge, ids: list[int]) -> list[str]:
    with bridge.store.session() as s:
        return [p.state for p in s.scalars(select(Push).where(Push.id.in_(ids)).order_by(Push.id))]


def leads(org: DevOrg, tag: str) -> list[str]:
    sf = org.sf("sales")
    soql = f"SELECT Referral_ID__c FROM Lead WHERE Referral_ID__c LIKE 'ref-{tag}-%'"
    return sorted(r["Referral_ID__c"] for r in sf.query_all(soql)["records"])


def test_a_paused_org_holds_its_pushes_and_sends_them_when_resumed(
    bridge: Bridge, redis_url: str
) -> None:
    assert "outbound paused, inbound on" in cli(bridge, "org", "pause", ORG, "--outbound")
    ids = queue(bridge, "held", 3)
    client = redis.Redis.from_url(redis_url)
    with bridge.store.session() as s:
        org_id = s.scalar(select(OrgConnection.id).where(OrgConnection.name == ORG))
    assert org_id is not None
    request_drain(client, org_id)
    run_worker(bridge)
    assert states(bridge, ids) == ["pending"] * 3
    assert leads(bridge.org, "held") == []  # nothing reached the org

    assert "outbound on, inbound on" in cli(bridge, "org", "resume", ORG, "--outbound")
    run_worker(bridge)  # the drain the resume asked for
    assert states(bridge, ids) == ["sent"] * 3
    assert leads(bridge.org, "held") == [f"ref-held-{i}" for i in range(3)]


def test_a_drain_above_the_bulk_threshold_writes_through_bulk_api_row_by_row(
    bridge: Bridge, redis_url: str
) -> None:
    ids = queue(bridge, "bulk", 8, long_name_at=3)
    with bridge.store.session() as s:
        org_id = s.scalar(select(OrgConnection.id).where(OrgConnection.name == ORG))
    assert org_id is not None
    before = bridge.org.control("stats", method="GET")["api_calls"]["by_endpoint"]
    request_drain(redis.Redis.from_url(redis_url), org_id)
    run_worker(bridge)
    after = bridge.org.control("stats", method="GET")["api_calls"]["by_endpoint"]
    used = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    assert used.get("POST jobs/ingest") == 1 and not any("composite/sobjects" in k for k in used)
    assert states(bridge, ids) == ["sent"] * 3 + ["failed"] + ["sent"] * 4
    with bridge.store.session() as s:
        failed = s.get(Push, ids[3])
        assert failed is not None
        assert (failed.error_code, failed.error_class) == ("STRING_TOO_LONG", "permanent")
        assert "LastName" in failed.error_fields
        sent = s.get(Push, ids[0])
        assert sent is not None and sent.sf_id and sent.sf_id.startswith("00Q")
        vias = set(s.scalars(select(PushAttempt.via).where(PushAttempt.push_id.in_(ids))))
        assert vias == {"bulk"}
    assert leads(bridge.org, "bulk") == sorted(f"ref-bulk-{i}" for i in range(8) if i != 3)


def test_a_change_streamed_while_a_drain_waits_for_the_org_is_taken_in_at_once(
    bridge: Bridge, redis_url: str
) -> None:
    bridge.start_subscribed()
    bridge.start("worker", "worker", "--outbound-process")
    # The referral add's upsert (a PATCH; the sales user's changes are POSTs) takes 8 s.
    slow = 8.0
    bridge.org.control(
        "faults",
        {"kind": "latency", "path": "/services/data/", "method": "PATCH",
         "latency_ms": int(slow * 1000), "count": 1},
    )  # fmt: skip
    [push_id] = queue(bridge, "slow", 1)
    with bridge.store.session() as s:
        org_id = s.scalar(select(OrgConnection.id).where(OrgConnection.name == ORG))
    assert org_id is not None
    request_drain(redis.Redis.from_url(redis_url), org_id)

    def claimed() -> bool:
        with bridge.store.session() as s:
            push = s.get(Push, push_id)
            return push is not None and push.claimed_until is not None

    wait_until(claimed, 30, "the drain to claim its push", lambda: bridge.log("worker")[-3000:])
    sent_at = time.monotonic()
    [lead] = Writer(bridge.org).create("Lead", 1, tag="during-drain-")

    def entry() -> SalesEntry | None:
        with bridge.store.session() as s:
            return s.scalar(select(SalesEntry).where(SalesEntry.record_id == lead))

    wait_until(entry, 30, "the change's entry", lambda: bridge.log("worker")[-3000:])
    assert time.monotonic() - sent_at < slow / 2, "the entry waited for the drain"
    assert states(bridge, [push_id]) == ["pending"]  # the drain is still waiting for the org
    wait_until(
        lambda: states(bridge, [push_id]) == ["sent"],
        30,
        "the drain to send its push",
        lambda: bridge.log("worker")[-3000:],
    )
