"""The safety-net poll of `sfbridge stream`: Bulk API changes notify no PushTopic, so only the
poll beside the stream brings them; what the stream brought is not stored twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.devorg.testing import DevOrg
from tests.harness import Bridge, Writer, wait_until
from tests.streaming.test_faults import assert_every_change_once, start_streaming

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def bridge(devorg: DevOrg, redis_url: str, tmp_path: Path) -> Iterator[Bridge]:
    devorg.control("reset")
    b = Bridge(tmp_path / "bridge", devorg, redis_url, poll_every=5).install()
    yield b
    b.close()
    devorg.control("reset")


def test_bulk_api_changes_arrive_through_the_safety_net_once(bridge: Bridge) -> None:
    bridge.start("worker", "worker")
    start_streaming(bridge)
    writer = Writer(bridge.org)
    writer.create("Lead", 3, tag="rest")  # streamed (and polled again: absorbed)
    writer.sf.bulk2.Lead.insert(
        records=[
            {"LastName": f"Bulk{i}", "Company": "B", "Email": f"b{i}@x.test"} for i in range(4)
        ]
    )
    writer.changes += 4
    wait_until(
        lambda: bridge.sources().get("poll", 0) >= 4,
        40,
        "the safety net to read the Bulk API changes",
        lambda: bridge.log("stream")[-3000:],
    )
    assert_every_change_once(bridge, writer)
    assert bridge.sources()["stream"] == 3 and bridge.sources()["poll"] == 4
    assert "the safety net found" in bridge.log("stream")
