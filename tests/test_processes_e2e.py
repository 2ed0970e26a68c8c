"""The worker process runs inbound and outbound jobs in one context: one login per org.

Real parts: the local org over HTTPS (its call stats count the access tokens it issues),
`sfbridge worker --burst` as a process, Redis, SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from bridge import jobs
from bridge.devorg.testing import DevOrg
from bridge.store.models import OrgConnection, Program, Push, Referral, SalesEntry
from bridge.streaming import inbox
from bridge.streaming.events import from_bayeux
from bridge.writeback import enqueue_push, queue_referral_add
from tests.factories import pushtopic_message
from tests.harness import ORG, Bridge

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def bridge(clean_devorg: DevOrg, redis_url: str, tmp_path: Path) -> Iterator[Bridge]:
    b = Bridge(tmp_path / "bridge", clean_devorg, redis_url, topics=["SFB_Contact"])
    b.install()
    with b.store.session() as session:
        session.add(Program(key="main", name="Main"))
    yield b
    b.close()


def integration_logins(org: DevOrg) -> int:
    stats = org.control("stats", method="GET")
    username = org.info["users"]["integration"]["username"]
    return int(stats["logins"]["by_user"].get(username, 0))


def integration_calls(org: DevOrg) -> int:
    stats = org.control("stats", method="GET")
    username = org.info["users"]["integration"]["username"]
    return int(stats["api_calls"]["by_user"].get(username, 0))


def store_contact_change(bridge: Bridge, conn_id: int, n: int) -> list[int]:
    """A Contact change as a PushTopic delivers it, without the fields the receiver reads: the
    worker must read the Contact and its Account from the org."""
    sales = bridge.org.sf("sales")
    account = sales.Account.create({"Name": f"Acme {n}"})["id"]
    contact = sales.Contact.create({"LastName": f"Lee{n}", "AccountId": account})["id"]
    saved: dict[str, Any] = sales.Contact.get(contact)
    record = {k: saved[k] for k in ("Id", "AccountId", "LastModifiedById", "SystemModstamp")}
    with bridge.store.session() as s:
        return inbox.store_and_advance(
            s, conn_id, from_bayeux(pushtopic_message("/topic/SFB_Contact", n, record), {})
        )


def queue_referral(bridge: Bridge, n: int) -> int:
    with bridge.store.session() as s:
        conn = s.scalar(select(OrgConnection).where(OrgConnection.name == ORG))
        program = s.scalar(select(Program).where(Program.key == "main"))
        assert conn is not None and program is not None
        referral = Referral(
            public_id=f"ref-once-{n}", program_id=program.id, first_name="Rita",
            last_name=f"Once{n}", email=f"rita.once{n}@example.com",
        )  # fmt: skip
        s.add(referral)
        s.flush()
        return queue_referral_add(s, conn, bridge.config.orgs[ORG], referral).id


def test_a_worker_logs_in_to_each_org_once_for_inbound_and_outbound_jobs(
    bridge: Bridge, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    with bridge.store.session() as s:
        conn_id = s.scalar(select(OrgConnection.id).where(OrgConnection.name == ORG))
    assert conn_id is not None
    # Two jobs of each family, each of which needs the org: a login per job or per family
    # would show in the org's count.
    for n in (1, 2):
        assert jobs.enqueue_events(client, store_contact_change(bridge, conn_id, n)) == 1
    push_ids = [queue_referral(bridge, n) for n in (1, 2)]
    for push_id in push_ids:
        enqueue_push(client, [push_id])
    logins, calls = integration_logins(bridge.org), integration_calls(bridge.org)

    worker = bridge.start("worker", "worker", "--burst")
    assert worker.wait(90) == 0, bridge.log("worker")

    with bridge.store.session() as s:
        saved = s.scalars(select(SalesEntry).order_by(SalesEntry.id)).all()
        pushes = s.scalars(select(Push).where(Push.id.in_(push_ids)).order_by(Push.id)).all()
        assert [e.outcome != "failed" for e in saved] == [True, True], [e.error for e in saved]
        # read from the org
        assert [e.records["Account"]["Name"] for e in saved] == ["Acme 1", "Acme 2"]
        assert [p.state for p in pushes] == ["sent", "sent"], [p.error_message for p in pushes]
    assert integration_calls(bridge.org) > calls  # both families did call the org ...
    assert integration_logins(bridge.org) == logins + 1  # ... on one login
