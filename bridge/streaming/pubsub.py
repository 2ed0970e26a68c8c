"""`sfbridge stream` for an org with `streaming.transport: pubsub`: Change Data Capture over
the Salesforce Pub/Sub API (gRPC over TLS, Avro payloads).

One Subscribe stream per topic (`streaming.pubsub_topics`), each in its own thread, under the
org's lease. A stream starts from the topic's stored replay id (CUSTOM), or, for a topic never
subscribed, at LATEST (new events only); a topic subscribed before without a stored event
replays what is retained (EARLIEST). Flow control: it asks for `PUBSUB_BATCH` events, and for
as many more as each delivery had once that delivery is stored — events and the cursor in one
transaction (`inbox.store_and_advance_bytes`), then the new events are enqueued. A keepalive
(an empty batch while events were requested) moves the cursor to its latest replay id.

Decoding (`avro_events`): the schema of each event comes from GetSchema, cached by schema id;
bitmaps become field names; one event naming many records becomes one stored event per
record; GAP_* events name records without values (the worker reads them back by id);
GAP_OVERFLOW names none, so the entity is backfilled by SystemModstamp from the event's time.
An event that cannot be read is stored as malformed with its raw payload (its entry fails
with the reason) and the cursor moves on.

Failures (Pub/Sub API Developer Guide, "Handle Errors"): UNAUTHENTICATED re-authenticates and
resubscribes from the cursor; INVALID_ARGUMENT with the `replayid.corrupted` error code (the
stored replay id is past the 72-hour retention) resubscribes at EARLIEST and backfills the gap
by SystemModstamp from the cursor's time; anything else backs off and resubscribes.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import fastavro
import grpc
import redis

from bridge import defaults
from bridge.config import OrgConfig
from bridge.errors import TransientError
from bridge.salesforce.connection import CLIENT_NAME
from bridge.store import Store
from bridge.streaming import avro_events, inbox
from bridge.streaming.events import ChangeEvent, MalformedEvent, parse_sf_datetime
from bridge.streaming.gaps import GapBackfills
from bridge.streaming.lease import Lease, serve_under_lease
from bridge.streaming.subscriber import lease_key
from bridge.vocabulary import STREAMED_OBJECTS

log = logging.getLogger("sfbridge.stream")

REPLAY_CORRUPTED = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"


def _stubs() -> tuple[Any, Any]:
    # Imported when a pubsub org streams: the generated stubs register the proto's symbols
    # in protobuf's default pool, which a process may hold once.
    from bridge.salesforce.pubsub_api import pubsub_api_pb2, pubsub_api_pb2_grpc

    return pubsub_api_pb2, pubsub_api_pb2_grpc


@dataclass
class _Schema:
    json: dict[str, Any]
    parsed: Any  # None: the schema could not be read (`error` says why)
    error: str = ""


@dataclass
class PubSubSubscriber:
    """The Pub/Sub API subscriber of one org connection; wired like `Subscriber`."""

    store: Store
    redis_client: redis.Redis
    org_name: str
    org: OrgConfig
    org_connection_id: int
    open_org: Callable[[], Any]
    enqueue: Callable[[list[int]], object]
    backfill: Callable[[str], object]
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.topics = list(self.org.streaming.pubsub_topics)
        key = lease_key(self.org_name, [inbox.PUBSUB_PREFIX + t for t in self.topics])
        self.lease = Lease(self.redis_client, key, defaults.LEASE_TTL_SECONDS)
        self.stored = 0
        self.in_long_poll = False  # its gRPC calls are cancelled on stop: nothing to wait out
        self._gaps = GapBackfills(
            self.store, self.org_connection_id, self.org.polling.overlap_seconds, self.backfill
        )
        self._schemas: dict[str, _Schema] = {}
        self._lock = threading.Lock()
        self._calls: dict[str, Any] = {}
        self._earliest: set[str] = set()  # topics to resubscribe at EARLIEST (replay id expired)
        self.pb2, self.pb2_grpc = _stubs()

    # ---- process control ---------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def on_term(signum: int, _frame: FrameType | None) -> None:
            log.info(
                "stream: %s received; stopping after the current batch", signal.Signals(signum).name
            )
            self.stop.set()
            self._cancel_calls()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)

    def _cancel_calls(self) -> None:
        with self._lock:
            calls = list(self._calls.values())
        for call in calls:
            call.cancel()  # a delivery being stored is finished first (the thread's own step)

    def run(self) -> None:
        """Wait for the lease, stream while holding it; return when asked to stop."""
        serve_under_lease(
            self.lease,
            self.stop,
            self.serve,
            f"org '{self.org_name}' ({len(self.topics)} Pub/Sub topics)",
        )
        self._gaps.join()

    def serve(self) -> None:
        """Stream while the lease (taken by the caller, who renews it) is held; return when
        stopped, when the lease is lost, or when the org cannot be reached at start."""
        try:
            self._stream()
        except TransientError as exc:
            log.warning(
                "stream: cannot reach org '%s' (%s); trying again", self.org_name, exc.message
            )
            self._pause(3)
        finally:
            self._cancel_calls()

    def _pause(self, attempt: int) -> None:
        waits = defaults.RETRY_BACKOFF_SECONDS
        self.stop.wait(waits[min(attempt, len(waits) - 1)])

    # ---- streaming --------------------------------------------------------------------------

    def _channel(self) -> grpc.Channel:
        ca = self.org.ca_bundle
        roots = Path(ca).read_bytes() if ca else None  # else the system trust store
        credentials = grpc.ssl_channel_credentials(root_certificates=roots)
        return grpc.secure_channel(
            self.org.streaming.pubsub_endpoint,
            credentials,
            options=[("grpc.keepalive_time_ms", 60_000), ("grpc.keepalive_timeout_ms", 20_000)],
        )

    def _stream(self) -> None:
        sforg = self.open_org()
        self._gaps.resume()
        channel = self._channel()
        try:
            stub = self.pb2_grpc.PubSubStub(channel)
            threads = [
                threading.Thread(
                    target=self._follow,
                    args=(topic, sforg, stub),
                    name=f"pubsub-{topic}",
                    daemon=True,
                )
                for topic in self.topics
            ]
            for thread in threads:
                thread.start()
            while not self.stop.is_set() and not self.lease.lost.is_set():
                if not any(t.is_alive() for t in threads):
                    break
                self.stop.wait(0.5)
            self._cancel_calls()
            for thread in threads:
                thread.join(timeout=10)
        finally:
            channel.close()

    def _follow(self, topic: str, sforg: Any, stub: Any) -> None:
        """Keep one topic subscribed until stopped, handling its failures."""
        attempt = 0
        while not self.stop.is_set() and not self.lease.lost.is_set():
            try:
                if self._subscribe_once(topic, sforg, stub):
                    attempt = 0
                elif not self.stop.is_set():
                    # The server ended the stream without an error or an event: not at once.
                    self._pause(attempt)
                    attempt += 1
            except grpc.RpcError as exc:
                if self.stop.is_set() or self.lease.lost.is_set():
                    return
                code = exc.code() if isinstance(exc, grpc.Call) else None
                trailers = dict(exc.trailing_metadata() or ()) if isinstance(exc, grpc.Call) else {}
                details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
                if code == grpc.StatusCode.UNAUTHENTICATED:
                    log.info("stream: %s: authentication invalid; re-authenticating", topic)
                    try:
                        sforg.reauthenticate(str(sforg.access_token))
                    except TransientError as err:
                        log.warning("stream: re-authentication failed (%s); retrying", err.message)
                    self._pause(attempt)
                    attempt += 1
                elif trailers.get("error-code") == REPLAY_CORRUPTED:
                    self._replay_expired(topic, details)
                else:
                    log.warning("stream: %s: %s (%s); resubscribing", topic, code, details)
                    self._pause(attempt)
                    attempt += 1
            except Exception:  # noqa: BLE001 - e.g. the database is briefly unavailable
                # Nothing of this delivery was acknowledged: start over from the cursor.
                log.exception(
                    "stream: %s: unexpected failure; resubscribing from the cursor", topic
                )
                self._pause(max(attempt, 2))
                attempt += 1
            finally:
                with self._lock:
                    self._calls.pop(topic, None)

    def _start_point(self, topic: str) -> tuple[int, bytes, str]:
        presets = self.pb2.ReplayPreset
        if topic in self._earliest:
            return presets.EARLIEST, b"", "EARLIEST (what is retained)"
        with self.store.session() as session:
            cursor = inbox.get_cursor(session, self.org_connection_id, inbox.PUBSUB_PREFIX + topic)
            if cursor is None:
                inbox.mark_subscribed(session, self.org_connection_id, inbox.PUBSUB_PREFIX + topic)
                return presets.LATEST, b"", "LATEST (new events only)"
            if cursor.replay_bytes is None:
                return presets.EARLIEST, b"", "EARLIEST (subscribed before, nothing stored yet)"
            replay = bytes(cursor.replay_bytes)
            return presets.CUSTOM, replay, f"replay id {replay.hex()}"

    def _metadata(self, sforg: Any) -> tuple[tuple[str, str], ...]:
        return (
            ("accesstoken", str(sforg.access_token)),
            ("instanceurl", str(sforg.instance_url)),
            ("tenantid", str(sforg.org_id)),
        )

    def _subscribe_once(self, topic: str, sforg: Any, stub: Any) -> bool:
        """One Subscribe stream, until it ends; returns whether it delivered anything."""
        preset, replay, where = self._start_point(topic)
        more: queue.Queue[int | None] = queue.Queue()
        batch = defaults.PUBSUB_BATCH

        def requests() -> Iterator[Any]:
            yield self.pb2.FetchRequest(
                topic_name=topic, replay_preset=preset, replay_id=replay, num_requested=batch
            )
            while (n := more.get()) is not None:
                yield self.pb2.FetchRequest(topic_name=topic, num_requested=n)

        call = stub.Subscribe(requests(), metadata=self._metadata(sforg))
        with self._lock:
            self._calls[topic] = call
        call.initial_metadata()  # the server's headers: the subscription is in place
        log.info("stream: subscribed to %s from %s", topic, where)
        delivered = False
        try:
            for response in call:
                if response.events:
                    self._store(topic, response.events, sforg, stub)
                    self._earliest.discard(topic)
                    delivered = True
                    more.put(len(response.events))  # flow control: ask again once stored
                elif response.latest_replay_id and response.pending_num_requested > 0:
                    self._keep_place(topic, response.latest_replay_id)
                if self.stop.is_set() or self.lease.lost.is_set():
                    break
        finally:
            more.put(None)
            call.cancel()
        return delivered

    def _keep_place(self, topic: str, replay_id: bytes) -> None:
        """A keepalive while we had capacity: nothing lies between, so the topic's cursor
        takes its replay id. First among the writers, as a delivery is: the stream's next
        answer waits for this commit, not for a worker's transactions."""
        with self.store.session(first_turn=True) as session:
            inbox.store_and_advance_bytes(
                session, self.org_connection_id, topic, [], replay_id, None
            )

    def _replay_expired(self, topic: str, details: str) -> None:
        log.warning(
            "stream: %s: the stored replay id is no longer retained (%s); replaying what is "
            "retained (EARLIEST) and backfilling the gap by SystemModstamp",
            topic,
            details,
        )
        with self.store.session() as session:
            cursor = inbox.get_cursor(session, self.org_connection_id, inbox.PUBSUB_PREFIX + topic)
            since = cursor.modstamp if cursor is not None else None
        for sobject in _topic_objects(topic):
            self._gaps.start(sobject, since, topic)
        self._earliest.add(topic)

    # ---- one delivery -----------------------------------------------------------------------

    def _schema(self, stub: Any, sforg: Any, schema_id: str) -> _Schema:
        with self._lock:
            cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        info = stub.GetSchema(
            self.pb2.SchemaRequest(schema_id=schema_id), metadata=self._metadata(sforg)
        )
        try:
            schema = _Schema(
                json.loads(info.schema_json), fastavro.parse_schema(json.loads(info.schema_json))
            )
        except Exception as exc:  # noqa: BLE001 - its events are stored as malformed
            schema = _Schema({}, None, f"not a usable Avro schema ({type(exc).__name__}: {exc})")
        with self._lock:
            self._schemas[schema_id] = schema
        return schema

    def _store(self, topic: str, consumer_events: Any, sforg: Any, stub: Any) -> None:
        events: list[ChangeEvent] = []
        overflows: list[tuple[str, datetime | None]] = []
        at = None
        for consumer_event in consumer_events:
            replay_id = bytes(consumer_event.replay_id)
            event = consumer_event.event
            schema = self._schema(stub, sforg, event.schema_id)  # an RpcError: resubscribe
            try:
                if schema.parsed is None:
                    raise MalformedEvent(f"schema {event.schema_id}: {schema.error}")
                record = avro_events.decode(schema.parsed, event.payload)
                cdc = avro_events.to_cdc_payload(schema.json, record)
                header = cdc["ChangeEventHeader"]
                commit = parse_sf_datetime(header.get("commitTimestamp"))
                at = commit if commit is not None and (at is None or commit > at) else at
                entity = str(header.get("entityName", ""))
                if entity not in STREAMED_OBJECTS:
                    continue  # another object on a shared channel (/data/ChangeEvents)
                if avro_events.is_overflow(cdc):
                    overflows.append((entity, commit))
                    continue
                own = avro_events.own_write(cdc, CLIENT_NAME, sforg.user_id)
                events.extend(
                    avro_events.from_pubsub(
                        topic,
                        replay_id,
                        event.schema_id,
                        cdc,
                        own=own,
                        integration_user_id=sforg.user_id,
                    )
                )
            except Exception as exc:  # noqa: BLE001 - any unreadable event must not stall the topic
                if not isinstance(exc, MalformedEvent):
                    exc = MalformedEvent(f"{type(exc).__name__}: {exc}")
                log.warning("stream: unreadable event stored for review: %s", exc)
                events.append(
                    avro_events.malformed_pubsub(topic, replay_id, event.payload, str(exc))
                )
        for entity, commit in overflows:  # recorded before the cursor moves past the event
            log.warning(
                "stream: %s: overflow event (a transaction changed too many %s records to "
                "report each); backfilling %s by SystemModstamp",
                topic,
                entity,
                entity,
            )
            self._gaps.start(entity, commit, topic)
        last = bytes(consumer_events[-1].replay_id)
        with self.store.session(first_turn=True) as session:
            new_ids = inbox.store_and_advance_bytes(
                session, self.org_connection_id, topic, events, last, at
            )
        self.stored += len(new_ids)
        log.info(
            "stream: %s: stored %d new event(s) of %d delivered",
            topic,
            len(new_ids),
            len(consumer_events),
        )
        if new_ids:
            self.enqueue(new_ids)


def _topic_objects(topic: str) -> list[str]:
    """The streamed objects a topic carries (all of them for /data/ChangeEvents)."""
    name = topic.removeprefix("/data/")
    if name.endswith("ChangeEvent") and name.removesuffix("ChangeEvent") in STREAMED_OBJECTS:
        return [name.removesuffix("ChangeEvent")]
    return list(STREAMED_OBJECTS)
