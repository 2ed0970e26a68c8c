"""Pub/Sub API capture end to end: the local org with its Pub/Sub port, `sfbridge stream`
(transport: pubsub) and `sfbridge worker` as real processes, the fault classes of
test_faults.py (kill -9 of the subscriber or of a worker, dropped streams, expired session,
outage past retention, Redis restart), a poisoned event and gap events: every change exactly
once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.devorg.testing import DevOrg
from tests.harness import Bridge, Writer, wait_until
from tests.streaming.test_faults import (
    assert_every_change_once,
    check_redis_restart,
    start_streaming,
    write_in_background,
)
from tests.streaming.test_faults import (
    test_kill_9_worker_mid_batch as test_kill_9_worker_mid_batch,  # with this module's bridge
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

TOPICS = ["/data/LeadChangeEvent", "/data/ContactChangeEvent"]


@pytest.fixture(scope="module")
def pubsub_org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevOrg]:
    """An org of our own with the Pub/Sub API: these tests move its clock and sessions."""
    with DevOrg(tmp_path_factory.mktemp("pubsub-devorg"), pubsub=True) as org:
        yield org


@pytest.fixture
def bridge(pubsub_org: DevOrg, redis_url: str, tmp_path: Path) -> Iterator[Bridge]:
    pubsub_org.control("reset")
    b = Bridge(tmp_path / "bridge", pubsub_org, redis_url, pubsub_topics=TOPICS).install()
    yield b
    b.close()


def test_a_lead_becomes_one_entry_through_pubsub(bridge: Bridge) -> None:
    bridge.start("worker", "worker")
    start_streaming(bridge)
    assert "from LATEST (new events only)" in bridge.log("stream")
    writer = Writer(bridge.org)
    writer.create("Lead", 1)
    assert_every_change_once(bridge, writer, timeout=30)
    assert bridge.sources() == {"stream": 1}


def test_kill_9_then_restart_resumes_from_the_stored_replay_id(bridge: Bridge) -> None:
    bridge.start("worker", "worker")
    start_streaming(bridge)
    writer = Writer(bridge.org)
    thread = write_in_background(writer, rounds=15)
    wait_until(lambda: sum(bridge.event_states().values()) >= 40, 40, "events to flow")
    bridge.kill("stream")  # kill -9 in the middle of the stream
    start_streaming(bridge, "stream2")
    thread.join(60)
    assert "from replay id " in bridge.log("stream2")
    assert_every_change_once(bridge, writer)


def test_expired_session_is_renewed(bridge: Bridge) -> None:
    bridge.start("worker", "worker")
    start_streaming(bridge)
    writer = Writer(bridge.org)
    thread = write_in_background(writer, rounds=12)
    wait_until(lambda: sum(bridge.event_states().values()) >= 20, 30, "events to flow")
    bridge.org.control("expire-tokens", {"user": "integration"})
    thread.join(60)
    assert_every_change_once(bridge, writer)
    assert "authentication invalid; re-authenticating" in bridge.log("stream")


def test_replay_id_past_retention_falls_back_to_a_read_back(bridge: Bridge) -> None:
    bridge.start("worker", "worker")
    start_streaming(bridge)
    writer = Writer(bridge.org)
    before = writer.create("Lead", 20, tag="a")
    wait_until(lambda: bridge.event_states().get("done") == 20, 30, "the first changes")
    assert bridge.stop("stream") == 0
    writer.create("Lead", 10, tag="b")
    writer.update("Lead", before[:5], Status="Working - Contacted")
    bridge.org.control("clock", {"advance_seconds": 73 * 3600})  # past the 72-hour retention
    writer.relogin()
    writer.create("Lead", 5, tag="c")
    start_streaming(bridge, "stream2")
    wait_until(
        lambda: "backfill done" in bridge.log("stream2"),
        40,
        "the gap backfill",
        lambda: bridge.log("stream2"),
    )
    assert "is no longer retained" in bridge.log("stream2")
    assert_every_change_once(bridge, writer)
    assert bridge.sources().get("poll", 0) > 0  # the gap came from the read-back


def test_redis_restart(pubsub_org: DevOrg, tmp_path: Path) -> None:
    check_redis_restart(pubsub_org, tmp_path, pubsub_topics=TOPICS)


def test_dropped_streams_are_resubscribed_from_the_cursor(bridge: Bridge) -> None:
    bridge.start("worker", "worker")
    start_streaming(bridge)
    writer = Writer(bridge.org)
    thread = write_in_background(writer, rounds=12)
    wait_until(lambda: sum(bridge.event_states().values()) >= 20, 30, "events to flow")
    for _ in range(2):
        assert bridge.org.control("pubsub", {"drop_streams": True})["dropped"] == len(TOPICS)
        wait_until(
            lambda: bridge.org.control("pubsub", method="GET")["streams"] == len(TOPICS),
            20,
            "the subscriber to resubscribe",
        )
    thread.join(60)
    assert_every_change_once(bridge, writer)
    assert "StatusCode.UNAVAILABLE" in bridge.log("stream")
    assert "from replay id " in bridge.log("stream")


def test_a_poisoned_event_is_stored_for_review_and_the_topic_keeps_capturing(
    bridge: Bridge,
) -> None:
    bridge.start("worker", "worker")
    start_streaming(bridge)
    writer = Writer(bridge.org)
    writer.create("Lead", 3, tag="before")
    bridge.org.control("pubsub", {"inject": {"topic": TOPICS[0], "payload_hex": "ffffffff00"}})
    writer.create("Lead", 3, tag="after")
    expected = writer.org_keys()
    wait_until(
        lambda: expected <= set(bridge.stored_keys()) and bridge.event_states().get("failed") == 1,
        30,
        "the changes and the malformed event",
        lambda: f"{bridge.event_states()}\n{bridge.log('stream')[-2000:]}",
    )
    stored = bridge.stored_keys()
    (poisoned,) = [k for k in stored if k.startswith("malformed:")]
    assert all(n == 1 for n in stored.values()) and len(stored) == writer.changes + 1
    assert "unreadable event stored for review" in bridge.log("stream")


def test_gap_events_are_read_back_and_an_overflow_is_backfilled(bridge: Bridge) -> None:
    bridge.start("worker", "worker")
    start_streaming(bridge)
    writer = Writer(bridge.org)
    ids = writer.create("Lead", 2)
    assert_every_change_once(bridge, writer, timeout=30)
    bridge.org.control(
        "pubsub", {"gap": {"sobject": "Lead", "change_type": "GAP_UPDATE", "record_ids": ids}}
    )
    wait_until(
        lambda: bridge.event_states().get("done") == 4, 30, "the gap events to become entries"
    )
    bridge.org.control(
        "pubsub", {"gap": {"sobject": "Lead", "change_type": "GAP_OVERFLOW", "record_ids": []}}
    )
    wait_until(
        lambda: "backfill done" in bridge.log("stream"),
        30,
        "the overflow's backfill",
        lambda: bridge.log("stream")[-3000:],
    )
    assert "overflow event" in bridge.log("stream")
    assert bridge.event_states() == {"done": 4}  # the backfill re-read what was stored
