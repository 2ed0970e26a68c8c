"""Fault suite: the inbound side against the real local org, Redis and real processes.

Each test makes changes in the org as the sales user while something breaks, then compares
the org (every record's current SystemModstamp) and the changes made with the stored
entries: every change exactly once. Lapses are shortened through the environment (lease 2 s,
claim timeout 4 s, sweeper every second, Redis retried every second), see `harness.FAST_ENV`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bridge import defaults
from bridge.devorg.testing import DevOrg
from bridge.redis_embedded import EmbeddedRedis
from bridge.store.models import InboundEvent
from tests.harness import Bridge, Writer, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def fault_org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevOrg]:
    """An org of our own: these tests move its clock and expire its sessions."""
    org = DevOrg(tmp_path_factory.mktemp("fault-devorg"))
    org.start()
    yield org
    org.close()


def _bridge(org: DevOrg, redis_url: str, root: Path, **options: Any) -> Bridge:
    org.control("reset")
    return Bridge(root, org, redis_url, **options).install()


@pytest.fixture
def bridge(fault_org: DevOrg, redis_url: str, tmp_path: Path) -> Iterator[Bridge]:
    b = _bridge(fault_org, redis_url, tmp_path / "bridge")
    yield b
    b.close()


def start_streaming(bridge: Bridge, name: str = "stream") -> None:
    """Start a subscriber and wait until it has subscribed to every channel (PushTopics, or
    the Pub/Sub topics of a bridge configured with them)."""
    bridge.start(name, "stream")
    wanted = bridge.pubsub_topics or ["/topic/SFB_Contact"]
    wait_until(
        lambda: all(f"subscribed to {t}" in bridge.log(name) for t in wanted),
        20,
        f"{name} to subscribe",
        lambda: bridge.log(name),
    )


def assert_every_change_once(bridge: Bridge, writer: Writer, *, timeout: float = 60) -> None:
    """Every change the writer made became exactly one entry; nothing is left unprocessed."""
    expected = writer.org_keys()

    def settled() -> bool:
        states = bridge.event_states()
        stored = bridge.stored_keys()
        return (
            expected <= set(stored)
            and len(stored) >= writer.changes
            and not states.get("new")
            and not states.get("processing")
        )

    wait_until(
        settled,
        timeout,
        "every change to become an entry",
        lambda: (
            f"states {bridge.event_states()}, stored {len(bridge.stored_keys())} of "
            f"{writer.changes} changes, missing {len(expected - set(bridge.stored_keys()))}\n"
            f"--- stream\n{bridge.log('stream')[-3000:]}\n--- worker\n"
            f"{bridge.log('worker')[-3000:]}"
        ),
    )
    stored = bridge.stored_keys()
    twice = {k: n for k, n in stored.items() if n != 1}
    assert not twice, f"changes with more than one entry: {twice}"
    assert len(stored) == writer.changes  # each change made, once: no more, no fewer
    assert bridge.entry_count() == writer.changes
    for name in ("stream", "standby", "worker"):
        text = bridge.log(name)
        assert "Bearer" not in text and "PRIVATE KEY" not in text, f"a secret in the {name} log"
    print(
        f"\n  changes made {writer.changes}, records {len(expected)}, entries "
        f"{bridge.entry_count()}, events by source {bridge.sources()}, "
        f"states {bridge.event_states()}"
    )


def write_in_background(writer: Writer, rounds: int, pause: float = 0.05) -> threading.Thread:
    """Leads and contacts created and updated while the test breaks things."""

    def run() -> None:
        for r in range(rounds):
            leads = writer.create("Lead", 8, tag=f"r{r}-")
            writer.create("Contact", 4, tag=f"r{r}-")
            writer.update("Lead", leads[:3], Status="Working - Contacted")
            time.sleep(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_kill_9_subscriber_mid_stream_the_waiting_one_takes_over(bridge: Bridge) -> None:
    bridge.start("worker", "worker")
    start_streaming(bridge, "stream")
    bridge.start("standby", "stream")
    wait_until(lambda: "waiting" in bridge.log("standby"), 20, "the second subscriber to wait")
    writer = Writer(bridge.org)
    thread = write_in_background(writer, rounds=25)
    wait_until(lambda: sum(bridge.event_states().values()) >= 60, 30, "events to flow")
    bridge.kill("stream")  # kill -9 in the middle of the stream
    thread.join(60)
    wait_until(lambda: "lease taken" in bridge.log("standby"), 20, "the standby to take over")
    assert "subscribed to /topic/SFB_Lead from replay id -1" not in bridge.log("standby")
    assert_every_change_once(bridge, writer)


def test_dropped_stream_connections_and_a_forgotten_client(bridge: Bridge) -> None:
    bridge.start("worker", "worker")
    start_streaming(bridge)
    writer = Writer(bridge.org)
    thread = write_in_background(writer, rounds=20)
    wait_until(lambda: sum(bridge.event_states().values()) >= 20, 30, "events to flow")
    bridge.org.control("faults", {"kind": "drop", "path": "/cometd/", "count": 3})
    wait_until(lambda: "streaming request failed" in bridge.log("stream"), 20, "a drop")
    # The server forgets the client (as after 40 s without a reconnect): handshake again.
    bridge.org.control(
        "faults",
        {"kind": "error", "path": "/cometd/", "status": 403, "error_code": "UNKNOWN_CLIENT",
         "message": "Unknown client",
         "count": 1},
    )  # fmt: skip
    thread.join(60)
    assert_every_change_once(bridge, writer)
    assert "server forgot the client (403::Unknown client); handshaking again" in bridge.log(
        "stream"
    )


def test_expired_session_is_renewed(bridge: Bridge) -> None:
    bridge.start("worker", "worker")
    start_streaming(bridge)
    writer = Writer(bridge.org)
    thread = write_in_background(writer, rounds=20)
    wait_until(lambda: sum(bridge.event_states().values()) >= 20, 30, "events to flow")
    bridge.org.control("expire-tokens", {"user": "integration"})
    thread.join(60)
    assert_every_change_once(bridge, writer)
    assert "authentication invalid; re-authenticating" in bridge.log("stream")


def test_outage_longer_than_retention_is_backfilled(bridge: Bridge) -> None:
    bridge.start("worker", "worker")
    start_streaming(bridge)
    writer = Writer(bridge.org)
    before = writer.create("Lead", 30, tag="a")
    wait_until(lambda: bridge.event_states().get("done") == 30, 30, "the first changes")
    assert bridge.stop("stream") == 0  # SIGTERM: clean stop, lease released
    assert "lease released" in bridge.log("stream")
    # While the subscriber is down: changes, then more than a day passes, then more changes.
    writer.create("Lead", 20, tag="b")
    writer.update("Lead", before[:10], Status="Working - Contacted")
    bridge.org.control("clock", {"advance_seconds": 25 * 3600})
    writer.relogin()
    writer.update("Lead", before[10:20], Status="Working - Contacted")
    writer.create("Lead", 10, tag="c")
    start_streaming(bridge, "stream")
    wait_until(
        lambda: "backfill done" in bridge.log("stream"),
        30,
        "the gap backfill",
        lambda: bridge.log("stream"),
    )
    assert "is no longer retained" in bridge.log("stream")
    assert_every_change_once(bridge, writer)
    assert bridge.sources().get("poll", 0) > 0  # the gap came from the backfill


def test_redis_restart(fault_org: DevOrg, tmp_path: Path) -> None:
    check_redis_restart(fault_org, tmp_path)


def check_redis_restart(org: DevOrg, tmp_path: Path, **options: Any) -> None:
    """Redis goes away mid-stream, under a running batch, and comes back empty: the stream
    keeps storing, the worker lives on (rq's work loop ends when it cannot record the batch's
    result; the worker starts it again), the sweeper enqueues what was stored meanwhile
    (`options`: the Bridge's, e.g. its transport)."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    bridge = _bridge(org, server.url, tmp_path / "bridge", **options)
    try:
        bridge.start("worker", "worker")
        start_streaming(bridge)
        writer = Writer(bridge.org)
        writer.create("Lead", 20, tag="a")
        wait_until(lambda: bridge.event_states().get("done") == 20, 30, "the first changes")
        # Contacts need a contact-role lookup: held in the org until Redis is gone.
        slow_lookups = {"kind": "latency", "method": "GET", "latency_ms": 1500}
        bridge.org.control("faults", {"path": "/services/data/", **slow_lookups})
        writer.create("Contact", 10, tag="a")
        wait_until(
            lambda: bridge.event_states().get("processing", 0) > 0,
            30,
            "the worker to claim the contacts",
            lambda: bridge.log("worker"),
        )
        server.stop()  # Redis goes away (and its queue with it)
        bridge.org.control("faults", method="DELETE")
        wait_until(lambda: bridge.event_states().get("done") == 30, 30, "the contacts' batch")
        writer.create("Lead", 20, tag="b")
        wait_until(
            lambda: bridge.event_states().get("new", 0) >= 20,
            30,
            "the stream to keep storing without Redis",
        )
        server = EmbeddedRedis(tmp_path / "redis", port=server.port).start()
        writer.create("Lead", 20, tag="c")
        assert_every_change_once(bridge, writer)
        assert "the sweeper will pick them up" in bridge.log("stream")
        assert "starting rq's work loop again" in bridge.log("worker")
    finally:
        bridge.close()
        server.stop()


def test_kill_9_worker_mid_batch(bridge: Bridge) -> None:
    start_streaming(bridge)
    # Contacts need a contact-role lookup; make it slow so the worker dies inside the batch.
    bridge.org.control(
        "faults", {"kind": "latency", "path": "/services/data/", "latency_ms": 4000, "count": 2}
    )
    bridge.start("worker", "worker")
    writer = Writer(bridge.org)
    writer.create("Contact", 30)
    wait_until(
        lambda: bridge.event_states().get("processing", 0) > 0,
        30,
        "the worker to claim the batch",
        lambda: bridge.log("worker"),
    )
    bridge.kill("worker")
    bridge.org.control("faults", method="DELETE")
    bridge.start("worker", "worker")
    writer.create("Contact", 10, tag="after")
    assert_every_change_once(bridge, writer)


@pytest.mark.timeout(300)
def test_a_killed_workers_events_are_picked_up_within_a_minute(
    fault_org: DevOrg, redis_url: str, tmp_path: Path
) -> None:
    """kill -9 a worker mid-batch with the production claim timeout and sweep interval (not
    the short fault-suite ones): its events are taken over once the claim lapses and the next
    sweep runs — within a minute, not after the old 900 s. The bound is the claim expiry plus
    one sweep interval, measured on the claim times the database records."""
    fault_org.control("reset")
    production = {"SFBRIDGE_CLAIM_TIMEOUT_SECONDS": "", "SFBRIDGE_SWEEP_EVERY_SECONDS": ""}
    bridge = Bridge(tmp_path / "bridge", fault_org, redis_url, extra_env=production).install()
    try:
        start_streaming(bridge)
        bridge.org.control(
            "faults", {"kind": "latency", "path": "/services/data/", "latency_ms": 8000, "count": 2}
        )
        bridge.start("worker", "worker")
        writer = Writer(bridge.org)
        writer.create("Contact", 20)
        wait_until(
            lambda: bool(claims(bridge)),
            60,
            "the worker to claim a batch",
            lambda: bridge.log("worker"),
        )
        held = claims(bridge)
        bridge.kill("worker")
        last_beat = max(at for _token, at in held.values())
        bridge.org.control("faults", method="DELETE")
        bridge.start("worker", "worker")

        def taken_over() -> dict[int, tuple[str, datetime]]:
            now = {i: c for i, c in claims(bridge, done=True).items() if i in held}
            return now if all(now[i][0] != held[i][0] for i in held if i in now) else {}

        wait_until(
            lambda: len(taken_over()) == len(held), 90, "the dead worker's events to be taken over"
        )
        picked_up = min(at for _token, at in taken_over().values())
        delay = (picked_up - last_beat).total_seconds()
        bound = defaults.CLAIM_TIMEOUT_SECONDS + defaults.SWEEP_EVERY_SECONDS
        print(
            f"\n  taken over {delay:.1f} s after the dead worker's last heartbeat (bound {bound} s)"
        )
        assert delay >= defaults.CLAIM_TIMEOUT_SECONDS, "a live-looking claim was taken over"
        assert delay < 60
        assert_every_change_once(bridge, writer)
    finally:
        bridge.close()


def claims(bridge: Bridge, done: bool = False) -> dict[int, tuple[str, datetime]]:
    """Event id -> (claim token, claim time) of the claimed events (and finished ones)."""
    states = ("processing", "done", "skipped", "failed") if done else ("processing",)
    with bridge.reader.connect() as s:
        rows = s.execute(
            select(InboundEvent.id, InboundEvent.claimed_by, InboundEvent.claimed_at).where(
                InboundEvent.state.in_(states), InboundEvent.claimed_by.is_not(None)
            )
        ).all()
    return {i: (token, _utc(at)) for i, token, at in rows}


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)
