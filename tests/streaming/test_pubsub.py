"""The Pub/Sub subscriber's own writes, without an org: a fake Subscribe stream."""

from __future__ import annotations

from typing import Any

import redis
from sqlalchemy import event

from bridge.store import FIRST_TURN, Store
from bridge.streaming import inbox
from bridge.streaming.pubsub import PubSubSubscriber
from tests.test_jobs import ORG

TOPIC = "/data/LeadChangeEvent"


class _Call:
    """A Subscribe stream that answers with `responses` and ends."""

    def __init__(self, responses: list[Any]) -> None:
        self.responses = responses

    def initial_metadata(self) -> tuple[()]:
        return ()

    def __iter__(self) -> Any:
        return iter(self.responses)

    def cancel(self) -> None:
        pass


def test_a_keepalive_moves_the_cursor_first_among_the_writers(
    store: Store, redis_client: redis.Redis, org_id: int
) -> None:
    """The cursor write of a keepalive asks for the first turn, as a delivery's does (on
    SQLite a worker waiting for its turn lets it go before: bridge.store.writelock)."""
    org = ORG.model_copy(
        update={"streaming": ORG.streaming.model_copy(
            update={"transport": "pubsub", "pubsub_topics": [TOPIC]})}
    )  # fmt: skip
    sub = PubSubSubscriber(
        store=store, redis_client=redis_client, org_name="acme", org=org,
        org_connection_id=org_id, open_org=lambda: None, enqueue=lambda ids: None,
        backfill=lambda sobject: None,
    )  # fmt: skip
    keepalive = sub.pb2.FetchResponse(latest_replay_id=b"\x00\x07", pending_num_requested=100)

    class Stub:
        def Subscribe(self, requests: Any, metadata: Any) -> _Call:  # noqa: N802 - gRPC's name
            return _Call([keepalive])

    class Org:
        access_token, instance_url, org_id = "token", "https://org.example.test", "00D"

    first_turn: list[bool] = []

    def on_statement(conn: Any, _cur: Any, statement: str, *_a: Any) -> None:
        writes = statement.lstrip().startswith(("UPDATE", "INSERT", "WITH"))
        if writes and "sync_cursors" in statement and "replay_bytes" in statement:
            first_turn.append(bool(conn.get_execution_options().get(FIRST_TURN)))

    with store.session() as session:  # subscribed before: the stream starts at EARLIEST
        inbox.mark_subscribed(session, org_id, inbox.PUBSUB_PREFIX + TOPIC)
    event.listen(store.engine, "before_cursor_execute", on_statement)
    try:
        sub._subscribe_once(TOPIC, Org(), Stub())
    finally:
        event.remove(store.engine, "before_cursor_execute", on_statement)
    with store.session() as session:
        cursor = inbox.get_cursor(session, org_id, inbox.PUBSUB_PREFIX + TOPIC)
        assert cursor is not None and bytes(cursor.replay_bytes or b"") == b"\x00\x07"
    assert first_turn and all(first_turn)
