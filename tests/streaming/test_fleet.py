"""Many orgs per process, many processes per fleet: three local orgs, two `sfbridge stream`
processes sharing them through the leases, a new org picked up from the config without a
restart, one process killed with -9, and every change of every org stored exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from sqlalchemy import func, select

from bridge.devorg.testing import DevOrg
from bridge.store.models import InboundEvent, OrgConnection, SalesEntry, SyncCursor
from bridge.streaming.subscriber import lease_key, topic_channels
from tests.harness import ORG, Bridge, Writer, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

NAMES = (ORG, "beta", "gamma")
FLEET_ENV = {
    "SFBRIDGE_FLEET_ROUND_SECONDS": "0.2",
    "SFBRIDGE_FLEET_CONFIG_EVERY_SECONDS": "0.5",
    "SFBRIDGE_FLEET_RETRY_SECONDS": "1",
}


@pytest.fixture(scope="module")
def devorgs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, DevOrg]]:
    started = {name: DevOrg(tmp_path_factory.mktemp(f"devorg-{name}")) for name in NAMES}
    for org in started.values():
        org.start()
    yield started
    for org in started.values():
        org.close()


def holders(bridge: Bridge) -> dict[str, str | None]:
    """org -> the stream process (its pid) holding the org's lease."""
    client = redis.Redis.from_url(bridge.redis_url)
    out: dict[str, str | None] = {}
    for name, org in bridge.config.orgs.items():
        value = client.get(lease_key(name, list(topic_channels(org))))
        out[name] = value.decode().split(":")[1] if value else None
    return out


def subscribed(bridge: Bridge) -> set[str]:
    """The orgs whose two channels have a cursor (set once subscribed)."""
    with bridge.reader.connect() as conn:
        rows = conn.execute(
            select(OrgConnection.name, func.count(SyncCursor.channel))
            .join(SyncCursor, SyncCursor.org_connection_id == OrgConnection.id)
            .group_by(OrgConnection.name)
        ).all()
    return {name for name, n in rows if n == 2}


def entries_per_change(bridge: Bridge) -> Counter[tuple[str, str]]:
    with bridge.reader.connect() as conn:
        rows = conn.execute(
            select(OrgConnection.name, InboundEvent.change_key, func.count(SalesEntry.id))
            .join(InboundEvent, InboundEvent.org_connection_id == OrgConnection.id)
            .join(SalesEntry, SalesEntry.inbound_event_id == InboundEvent.id)
            .group_by(OrgConnection.name, InboundEvent.change_key)
        ).all()
    return Counter({(name, key): n for name, key, n in rows})


def test_two_processes_share_three_orgs_and_survive_a_kill(
    devorgs: dict[str, DevOrg], redis_url: str, tmp_path: Path
) -> None:
    for org in devorgs.values():
        org.control("reset")
    bridge = Bridge(tmp_path / "fleet", devorgs[ORG], redis_url, extra_env=FLEET_ENV).install()
    try:
        bridge.add_org("beta", devorgs["beta"])
        config = yaml.safe_load(bridge.config_path.read_text())
        config["stream"] = {"capacity": 2}
        bridge.write_config(config)
        first = bridge.start("stream", "stream")
        wait_until(lambda: set(holders(bridge).values()) == {str(first.pid)}, 20, "A's orgs")
        second = bridge.start("standby", "stream")
        wait_until(lambda: "is served by" in bridge.log("standby"), 20, "B to wait")
        bridge.start("worker", "worker")

        # A new org in the config: the process with room (B; A is at capacity) takes it.
        bridge.add_org("gamma", devorgs["gamma"])
        wait_until(
            lambda: holders(bridge).get("gamma") == str(second.pid),
            20,
            "B to pick up the new org",
            lambda: bridge.log("standby"),
        )
        assert sorted(holders(bridge).values()) == sorted([str(first.pid)] * 2 + [str(second.pid)])
        # A channel without a cursor starts with new events: write once all are subscribed.
        wait_until(lambda: subscribed(bridge) == set(NAMES), 20, "every org to subscribe")

        writers = {name: Writer(org) for name, org in devorgs.items()}
        done = threading.Event()

        def write() -> None:
            for r in range(12):
                for w in writers.values():
                    leads = w.create("Lead", 4, tag=f"r{r}-")
                    w.update("Lead", leads[:2], Status="Working - Contacted")
                time.sleep(0.1)
            done.set()

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        time.sleep(1.0)
        config = yaml.safe_load(bridge.config_path.read_text())
        config["stream"] = {"capacity": 3}  # so that B alone can serve them all
        bridge.write_config(config)
        time.sleep(1.0)
        killed_at = time.monotonic()
        bridge.kill("stream")  # kill -9 of A, holding two orgs, mid-stream
        wait_until(
            lambda: set(holders(bridge).values()) == {str(second.pid)},
            20,
            "B to take A's orgs over",
            lambda: bridge.log("standby")[-3000:],
        )
        print(f"\n  takeover after kill -9: {time.monotonic() - killed_at:.1f}s")
        thread.join(60)
        assert done.is_set()

        expected = {(n, k) for n, w in writers.items() for k in w.org_keys()}
        changes = sum(w.changes for w in writers.values())

        def settled() -> bool:
            stored = entries_per_change(bridge)
            states = bridge.event_states()
            return expected <= set(stored) and not (states.get("new") or states.get("processing"))

        wait_until(
            settled,
            60,
            "every change of every org to become an entry",
            lambda: (
                f"missing {sorted(expected - set(entries_per_change(bridge)))}\n"
                f"states {bridge.event_states()}\n--- A\n{bridge.log('stream')[-1500:]}\n--- B\n"
                + bridge.log("standby")[-3000:]
            ),
        )
        stored = entries_per_change(bridge)
        assert {k: n for k, n in stored.items() if n != 1} == {}
        assert len(stored) == changes
        assert {name for name, _k in stored} == set(NAMES)
        log = bridge.log("standby")
        assert "Bearer" not in log and "PRIVATE KEY" not in log
    finally:
        bridge.close()
