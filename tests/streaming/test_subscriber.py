"""The subscriber stores a delivery's events and moves the channel's cursor in one
transaction, and hands the new events to the workers only after it committed."""

from __future__ import annotations

import json
import re
from typing import Any

import redis
import requests
import responses
from sqlalchemy import event, select

from bridge import metrics
from bridge.store import Store
from bridge.store.models import InboundEvent, SyncCursor
from bridge.streaming import stall, subscriber
from bridge.streaming.bayeux import BayeuxClient
from tests.factories import pushtopic_message
from tests.test_jobs import ORG

CHANNEL = "/topic/SFB_Lead"


def _message(replay_id: int) -> dict[str, Any]:
    stamp = f"2026-01-05T10:00:{replay_id % 60:02d}.000Z"
    lead = f"00Q{replay_id:012d}AAA"
    return pushtopic_message(CHANNEL, replay_id, {"Id": lead, "SystemModstamp": stamp})


def test_events_and_cursor_are_committed_in_one_transaction_then_enqueued(
    store: Store, redis_client: redis.Redis, org_id: int
) -> None:
    log: list[str] = []
    enqueued: list[list[int]] = []

    def on_begin(_conn: Any) -> None:
        log.append("begin")

    def on_commit(_conn: Any) -> None:
        log.append("commit")

    def on_statement(_conn: Any, _cur: Any, statement: str, *_a: Any) -> None:
        words = statement.split()
        if words[0] == "WITH":  # PostgreSQL: the events and the cursor's upsert in one
            log.append("+".join(f"INSERT {t}" for t in re.findall(r"INSERT INTO (\w+)", statement)))
        elif words[0] == "INSERT":
            log.append(f"INSERT {words[2]}")
        elif words[0] == "UPDATE":
            log.append(f"UPDATE {words[1]}")

    def enqueue(ids: list[int]) -> None:
        with store.session() as s:  # what a worker would see
            stored = s.scalars(select(InboundEvent.id).where(InboundEvent.id.in_(ids))).all()
            cursor = s.get(SyncCursor, (org_id, CHANNEL))
        assert sorted(stored) == sorted(ids) and cursor is not None and cursor.replay_id == 12
        enqueued.append(ids)

    sub = subscriber.Subscriber(
        store=store, redis_client=redis_client, org_name="acme", org=ORG,
        org_connection_id=org_id, open_org=lambda: None, enqueue=enqueue,
        backfill=lambda sobject: None,
    )  # fmt: skip
    for name, fn in (("begin", on_begin), ("commit", on_commit)):
        event.listen(store.engine, name, fn)
    event.listen(store.engine, "before_cursor_execute", on_statement)
    try:
        sub._store([_message(n) for n in range(1, 13)])
    finally:
        for name, fn in (("begin", on_begin), ("commit", on_commit)):
            event.remove(store.engine, name, fn)
        event.remove(store.engine, "before_cursor_execute", on_statement)
    assert len(enqueued) == 1 and len(enqueued[0]) == 12
    # one transaction: begin, the events, the cursor, commit (then the enqueue reads them)
    first = log[: log.index("commit")]
    assert first[0] == "begin" and first.count("begin") == 1
    if store.engine.dialect.name == "postgresql":
        assert first[1:] == ["INSERT inbound_events+INSERT sync_cursors"]
    else:  # the events, then the cursor's upsert (one statement, whether or not it exists)
        assert first[1:] == ["INSERT inbound_events", "INSERT sync_cursors"]


def test_a_delivered_message_is_stored_as_its_own_json_text(
    store: Store, redis_client: redis.Redis, org_id: int
) -> None:
    """The stored payload is the message's text as the server sent it (the Bayeux client
    keeps it), not the message decoded and encoded again."""
    messages = [
        '{"channel": "/topic/SFB_Lead",  "data": {"event": {"createdDate": '
        f'"2026-01-05T10:00:0{n}.000Z", "replayId": {n}, "type": "updated"}}, "sobject": '
        f'{{"Id": "00Q00000000000{n}AAA", "SystemModstamp": "2026-01-05T10:00:0{n}.000+0000",'
        ' "AnnualRevenue": 1.50, "City": "K\\u00f8ge"}}}'
        for n in (1, 2)
    ]
    reply = '{"channel": "/meta/connect", "successful": true}'
    client = BayeuxClient("https://org.example.test/cometd/63.0", requests.Session(), str)
    client.client_id = "c1"
    sub = subscriber.Subscriber(
        store=store, redis_client=redis_client, org_name="acme", org=ORG,
        org_connection_id=org_id, open_org=lambda: None, enqueue=lambda ids: None,
        backfill=lambda sobject: None,
    )  # fmt: skip
    with responses.RequestsMock() as rsps:
        rsps.post(client.url, body=f"[{messages[0]},\n {messages[1]}, {reply}]")
        sub._store(client.connect())
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT CAST(payload AS TEXT) FROM inbound_events ORDER BY replay_id"
        ).scalars()
        assert list(stored) == messages
    with store.session() as session:
        [first, _] = session.scalars(select(InboundEvent).order_by(InboundEvent.replay_id))
        assert first.payload["data"]["sobject"]["City"] == "Køge"


class _Org:
    """The connected org `_stream` opens: a session counted like the real one's."""

    instance_url = "https://org.example.test"
    api_version = "63.0"
    access_token = "TOKEN"

    def __init__(self, redis_client: redis.Redis) -> None:
        self.session = requests.Session()
        self.session.hooks["response"].append(metrics.salesforce_call_hook(redis_client, "acme"))

    def streaming_session(self) -> requests.Session:
        return self.session

    def call(self, _fn: Any, _soql: str) -> dict[str, Any]:
        return {"records": [{"Name": "SFB_Lead", "Query": "SELECT Id FROM Lead"}]}


def test_a_delivery_costs_two_redis_round_trips_its_calls_all_counted(
    store: Store, redis_client: redis.Redis, org_id: int, monkeypatch: Any
) -> None:
    """The long poll's API call count goes with the delivery's stall notes (one round trip),
    the notes' clearing after the store is the other; every answer is still counted and the
    note is gone once stored (three round trips before)."""
    trips: list[str] = []
    direct, piped = redis.Redis.execute_command, redis.client.Pipeline.execute

    def execute_command(self: redis.Redis, *args: Any, **kwargs: Any) -> Any:
        trips.append(str(args[0]))
        return direct(self, *args, **kwargs)

    def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.command_stack:
            trips.append("+".join(sorted({str(c[0][0]) for c in self.command_stack})))
        return piped(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "execute_command", execute_command)
    monkeypatch.setattr(redis.client.Pipeline, "execute", execute)
    sforg = _Org(redis_client)
    sub = subscriber.Subscriber(
        store=store, redis_client=redis_client, org_name="acme", org=ORG,
        org_connection_id=org_id, open_org=lambda: sforg, enqueue=lambda ids: None,
        backfill=lambda sobject: None,
    )  # fmt: skip
    trips_before: dict[str, int] = {}
    connects = 0

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        nonlocal connects
        [msg] = json.loads(request.body)
        channel = msg["channel"]
        reply: dict[str, Any] = {"channel": channel, "successful": True, "clientId": "c1"}
        out = [reply]
        if channel == "/meta/connect":
            connects += 1
            trips_before[f"connect {connects}"] = len(trips)
            if connects == 1:
                out = [_message(1), _message(2), reply]
            else:
                sub.stop.set()
        return 200, {}, json.dumps(out)

    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.POST, "https://org.example.test/cometd/63.0", answer)
        sub._stream()
        answers = len(rsps.calls)
    delivery = trips[trips_before["connect 1"] : trips_before["connect 2"]]
    assert delivery == ["EXPIRE+HINCRBY+HSET+HSETNX", "HDEL"]
    assert int(redis_client.hget(metrics.SF_API_CALLS, "acme") or 0) == answers
    assert redis_client.hgetall(stall.key("acme")) == {}
    assert sub.stored == 2
