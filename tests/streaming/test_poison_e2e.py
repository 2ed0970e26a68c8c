"""A poisoned channel keeps capturing: hostile messages sent on the local org's real stream
(its control API injects them verbatim) are stored as malformed, become failed entries, and
every change made after them is captured exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from bridge.devorg.testing import DevOrg
from bridge.store.models import InboundEvent, SalesEntry, SyncCursor
from bridge.streaming import stall
from tests.harness import ORG, Bridge, Writer, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

LEAD = "00Q000000000009AAA"
SOBJECT = '"SystemModstamp": "2026-01-05T10:00:00.000Z", "LastName": "Poison"'
EVENT = (
    '"event": {"createdDate": "2026-01-05T10:00:00.000Z", "replayId": {{replayId}}, '
    '"type": "updated"}'
)
#: data.* texts as a broken server might send them: JSON that Python's reader accepts.
POISON = {
    "Id a list": f'{{{EVENT}, "sobject": {{"Id": ["{LEAD}"], {SOBJECT}}}}}',
    "replayId Infinity": '{"event": {"replayId": Infinity, "type": "updated"}, '
    f'"sobject": {{"Id": "{LEAD}", "Title": "a", {SOBJECT}}}}}',
    "replayId 1e400": '{"event": {"replayId": 1e400, "type": "updated"}, '
    f'"sobject": {{"Id": "{LEAD}", "Title": "b", {SOBJECT}}}}}',
    "field NaN": f'{{{EVENT}, "sobject": {{"Id": "{LEAD}", "AnnualRevenue": NaN, {SOBJECT}}}}}',
    "NUL in a name": f'{{{EVENT}, "sobject": {{"Id": "{LEAD}", "FirstName": "A\\u0000B", '
    f'{SOBJECT}}}}}',
    "createdDate numeric": '{"event": {"createdDate": 1767607200, "replayId": {{replayId}}, '
    f'"type": "updated"}}, "sobject": {{"Id": "{LEAD}", {SOBJECT}}}}}',
    "Id of 30 characters": f'{{{EVENT}, "sobject": {{"Id": "{"0" * 30}", {SOBJECT}}}}}',
}  # fmt: skip


@pytest.fixture
def bridge(clean_devorg: DevOrg, redis_url: str, tmp_path: Path) -> Iterator[Bridge]:
    b = Bridge(tmp_path / "bridge", clean_devorg, redis_url).install()
    yield b
    b.close()


def test_a_poisoned_channel_keeps_capturing(bridge: Bridge) -> None:
    bridge.start("stream", "stream")
    bridge.start("worker", "worker")
    wait_until(
        lambda: "subscribed to /topic/SFB_Contact" in bridge.log("stream"),
        20,
        "the subscriptions",
        lambda: bridge.log("stream"),
    )
    writer = Writer(bridge.org)
    writer.create("Lead", 5, tag="before-")
    for text in POISON.values():
        bridge.org.control(
            "streaming", {"inject": {"channel": "/topic/SFB_Lead", "data_json": text}}
        )
    after = writer.create("Lead", 5, tag="after-")
    writer.update("Lead", after, Status="Working - Contacted")

    def settled() -> bool:
        states = bridge.event_states()
        return sum(states.values()) == writer.changes + len(POISON) and not (
            states.get("new") or states.get("processing")
        )

    wait_until(settled, 40, "every event stored and processed", lambda: bridge.log("stream"))
    stored = bridge.stored_keys()
    assert writer.org_keys() <= set(stored)
    assert all(n == 1 for n in stored.values())
    with bridge.reader.connect() as conn:
        failed = conn.execute(
            select(SalesEntry.error, SalesEntry.reasons).where(SalesEntry.outcome == "failed")
        ).all()
        last_lead = conn.execute(
            select(InboundEvent.replay_id)
            .where(InboundEvent.channel == "/topic/SFB_Lead", InboundEvent.source == "stream")
            .order_by(InboundEvent.replay_id.desc())
        ).first()
        cursor = conn.execute(
            select(SyncCursor.replay_id).where(SyncCursor.channel == "/topic/SFB_Lead")
        ).scalar()
    assert len(failed) == len(POISON)
    assert all(reasons == ["malformed_event"] for _e, reasons in failed)
    errors = " | ".join(str(e) for e, _r in failed)
    for words in ("the record's Id is list", "replayId is float inf", "not a finite number",
                  "NUL character", "createdDate is int", "not a 15- or 18-character"):  # fmt: skip
        assert words in errors, errors
    assert last_lead is not None and cursor == last_lead[0]  # the cursor went past the poison
    log = bridge.log("stream")
    assert "unexpected failure" not in log and "Traceback" not in log
    assert redis.Redis.from_url(bridge.redis_url).hgetall(stall.key(ORG)) == {}
