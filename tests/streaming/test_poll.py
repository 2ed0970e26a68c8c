"""`sfbridge poll` and CDC against the local org: polling, overlap, backfill, dedupe."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bridge.devorg.testing import DevOrg
from bridge.store.models import SalesEntry
from tests.harness import Bridge, Writer, sfbridge_command, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def bridge(clean_devorg: DevOrg, redis_url: str, tmp_path: Path) -> Iterator[Bridge]:
    b = Bridge(tmp_path / "bridge", clean_devorg, redis_url, overlap_seconds=120).install()
    yield b
    b.close()


def sfbridge(bridge: Bridge, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*sfbridge_command(), *args], env=bridge.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result


def test_polling_stores_each_change_once_and_streaming_absorbs_it(bridge: Bridge) -> None:
    writer = Writer(bridge.org)
    leads = writer.create("Lead", 30)
    writer.create("Contact", 5)
    first = sfbridge(bridge, "poll")
    assert "Lead 30 read / 30 new" in first.stdout
    assert "Contact 5 read / 5 new" in first.stdout
    # Again: the overlap window reads them again, nothing new is stored.
    again = sfbridge(bridge, "poll", "--object", "Lead")
    assert "Lead 30 read / 0 new" in again.stdout
    writer.update("Lead", leads[:5], Status="Working - Contacted")
    third = sfbridge(bridge, "poll", "--object", "Lead")
    assert "/ 5 new" in third.stdout
    # The subscriber replays nothing polled twice: start it and make one more change.
    bridge.start("stream", "stream")
    wait_until(
        lambda: "subscribed to /topic/SFB_Contact" in bridge.log("stream"), 20, "the subscriber"
    )
    writer.update("Lead", leads[5:6], Status="Working - Contacted")
    wait_until(lambda: bridge.sources().get("stream") == 1, 20, "the streamed change")
    sfbridge(bridge, "poll", "--object", "Lead")  # sees that change too: absorbed
    assert bridge.sources() == {"poll": 40, "stream": 1}
    # Every change becomes one entry.
    sfbridge(bridge, "worker", "--burst", "--queue", "inbound")
    stored = bridge.stored_keys()
    assert writer.org_keys() <= set(stored)
    assert len(stored) == writer.changes == 41
    assert set(stored.values()) == {1}


def test_backfill_from_a_time_prints_progress(bridge: Bridge) -> None:
    writer = Writer(bridge.org)
    writer.create("Lead", 1200)
    since = (datetime.now(UTC) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = sfbridge(bridge, "poll", "--since", since, "--object", "Lead")
    assert "Lead: 1000 records read, 1000 new" in result.stdout
    assert "backfill done: 1200 records read, 1200 new changes stored" in result.stdout
    assert bridge.sources() == {"poll": 1200}


def test_a_bad_since_is_a_clear_error(bridge: Bridge) -> None:
    result = subprocess.run(
        [*sfbridge_command(), "poll", "--since", "yesterday"],
        env=bridge.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "--since 'yesterday' is not an ISO date-time" in result.stderr
    assert "Traceback" not in result.stderr


def test_change_data_capture_channels(clean_devorg: DevOrg, redis_url: str, tmp_path: Path) -> None:
    bridge = Bridge(tmp_path / "cdc", clean_devorg, redis_url, topics=[], cdc=True).install()
    try:
        bridge.start("stream", "stream")
        wait_until(
            lambda: "subscribed to /data/OpportunityChangeEvent" in bridge.log("stream"),
            20,
            "the CDC subscriptions",
            lambda: bridge.log("stream"),
        )
        writer = Writer(bridge.org)
        leads = writer.create("Lead", 3)
        writer.update("Lead", leads, Status="Working - Contacted")
        wait_until(
            lambda: bridge.sources().get("stream") == 6,
            20,
            "six change events",
            lambda: bridge.log("stream"),
        )
        sfbridge(bridge, "worker", "--burst", "--queue", "inbound")
        assert bridge.event_states() == {"done": 6}
        with bridge.reader.connect() as conn:
            records = [r for (r,) in conn.execute(select(SalesEntry.records))]
        # UPDATE events carry only the changed fields: the rest was read back in one query.
        assert all(r["Lead"]["LastName"] and r["Lead"]["Email"] for r in records)
    finally:
        bridge.close()
