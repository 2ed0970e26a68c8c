"""The Streaming API of the local org: Bayeux long-polling on ``/cometd/{version}``.

Behaviour follows the Streaming API Developer Guide: handshake with an OAuth bearer token and
the ``BAYEUX_BROWSER`` cookie, subscribe with the replay extension (-1, -2 or a replayId),
``/meta/connect`` long polls returning as soon as events are queued (several per response) or
after the advised 110 s, clients dropped 40 s after their last response, and the documented
errors (``401::Authentication invalid``, ``403::Unknown client``, ``400::The replayId ...``).

Events are persisted (SQLite under the data dir) before they are queued, so a restarted devorg
keeps its 24-hour replay window and numbers forward. ReplayIds come from one org-wide sequence:
per channel they increase but are not contiguous, which the guide explicitly allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import sqlite3
import string
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.devorg import pushtopic
from bridge.devorg.state import API_VERSION

if TYPE_CHECKING:
    from bridge.devorg.state import DevOrgState, RecordChange

log = logging.getLogger(__name__)

#: Long-poll duration the server advises (and holds a /meta/connect for), in ms.
CONNECT_TIMEOUT_MS = 110_000
#: A client that does not come back within this window after a response is dropped, in ms.
CLIENT_TIMEOUT_MS = 40_000
#: How long events stay replayable, by the org clock.
RETENTION = timedelta(hours=24)
#: Oldest API version the Streaming API accepts on /cometd/{version}.
MIN_API_VERSION = 37.0
#: Most events one /meta/connect response carries; the rest go out on the next connect.
MAX_BATCH = 1000
#: Largest request body the server accepts ("How the Client Connects").
MAX_REQUEST_BYTES = 32_768
COOKIE = "BAYEUX_BROWSER"
HUB_KEY = web.AppKey("devorg_streaming_hub", object)

_ADVICE_NONE = {"reconnect": "none", "interval": 0}
_ADVICE_HANDSHAKE = {"reconnect": "handshake", "interval": 0}
_ID_ALPHABET = string.ascii_lowercase + string.digits


def _new_id(length: int = 27) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _env_ms(name: str, default: int) -> int:
    raw = os.environ.get(name)
    try:
        return int(raw) if raw else default
    except ValueError:
        return default


# ---- the event log -------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredEvent:
    replay_id: int
    channel: str
    created_at: datetime
    message: str  # the Bayeux message, serialized once


class EventLog:
    """Every published event, write-through to SQLite, kept in memory for the retention window."""

    def __init__(self, path: Path, retention: timedelta = RETENTION) -> None:
        self.retention = retention
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS events (replay_id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "channel TEXT NOT NULL, created_at REAL NOT NULL, message TEXT NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        self._by_channel: dict[str, deque[StoredEvent]] = {}
        self._ids: dict[str, set[int]] = {}
        for replay_id, channel, created_at, message in self._db.execute(
            "SELECT replay_id, channel, created_at, message FROM events ORDER BY replay_id"
        ):
            self._remember(
                StoredEvent(replay_id, channel, datetime.fromtimestamp(created_at, UTC), message)
            )
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        self.last_id = int(row[0]) if row else 0

    def _remember(self, event: StoredEvent) -> None:
        self._by_channel.setdefault(event.channel, deque()).append(event)
        self._ids.setdefault(event.channel, set()).add(event.replay_id)

    def setting(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_setting(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, json.dumps(value))
        )

    def next_id(self) -> int:
        self.last_id += 1
        return self.last_id

    def append(self, events: list[StoredEvent]) -> None:
        """Persist, then remember, events whose ids came from :meth:`next_id` (one commit)."""
        self._db.execute("BEGIN")
        try:
            self._db.executemany(
                "INSERT INTO events (replay_id, channel, created_at, message) VALUES (?, ?, ?, ?)",
                [(e.replay_id, e.channel, e.created_at.timestamp(), e.message) for e in events],
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        for event in events:
            self._remember(event)

    def purge(self, now: datetime) -> None:
        """Forget events older than the retention window."""
        cutoff = now - self.retention
        purged = False
        for channel, events in self._by_channel.items():
            while events and events[0].created_at < cutoff:
                self._ids[channel].discard(events.popleft().replay_id)
                purged = True
        if purged:
            self._db.execute("DELETE FROM events WHERE created_at < ?", (cutoff.timestamp(),))

    def is_retained(self, channel: str, replay_id: int) -> bool:
        return replay_id in self._ids.get(channel, ())

    def after(self, channel: str, replay_id: int | None) -> list[StoredEvent]:
        """Retained events of ``channel`` after ``replay_id`` (all of them for None)."""
        events = self._by_channel.get(channel, deque())
        if replay_id is None:
            return list(events)
        return [e for e in events if e.replay_id > replay_id]

    def clear(self) -> None:
        """Forget every event; the sequence keeps counting (old cursors become invalid)."""
        self._db.execute("DELETE FROM events")
        self._by_channel.clear()
        self._ids.clear()

    def close(self) -> None:
        self._db.close()


# ---- clients -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelFilter:
    """A filtered subscription's expression, ``/topic/Name?FieldA=valueA&FieldB=valueB``: the
    guide's "Filtered Subscriptions" — the & acts as OR, values may be quoted."""

    conditions: tuple[tuple[str, str], ...]  # (field, value) as written

    @classmethod
    def parse(cls, expression: str) -> ChannelFilter:
        conditions = []
        for part in expression.split("&"):
            name, sep, value = part.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not name or not value:
                raise ValueError(part)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            conditions.append((name, value))
        return cls(tuple(conditions))

    def matches(self, sobject: Mapping[str, Any]) -> bool:
        lower = {k.lower(): v for k, v in sobject.items()}
        for name, wanted in self.conditions:
            value = lower.get(name.lower())
            if value is None:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            if str(value).lower() == wanted.lower():  # as SOQL compares text
                return True
            try:
                if float(value) == float(wanted):
                    return True
            except (TypeError, ValueError):
                pass
        return False


def _split_subscription(subscription: str) -> tuple[str, str | None]:
    channel, sep, expression = subscription.partition("?")
    return channel, (expression if sep else None)


@dataclass
class BayeuxClient:
    id: str
    user_id: str
    browser: str
    #: channel -> {subscription as the client wrote it: its filter (None: unfiltered)}
    routes: dict[str, dict[str, ChannelFilter | None]] = field(default_factory=dict)
    queue: deque[StoredEvent] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    last_seen: float = field(default_factory=time.monotonic)
    polling: int = 0  # /meta/connect requests being held for this client
    poll_seq: int = 0  # the newest /meta/connect; an older one still held is superseded
    connects: int = 0
    gone: bool = False


class BayeuxError(Exception):
    """A failed Bayeux message: answered in the body (HTTP 200, as CometD servers do, so that
    clients' channel listeners see it — the guide's AuthFailureListener relies on that)."""

    def __init__(self, error: str, advice: Mapping[str, Any] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.advice = advice


@dataclass
class StreamingSettings:
    connect_timeout_ms: int = CONNECT_TIMEOUT_MS
    client_timeout_ms: int = CLIENT_TIMEOUT_MS

    def to_dict(self) -> dict[str, int]:
        return {
            "connect_timeout_ms": self.connect_timeout_ms,
            "client_timeout_ms": self.client_timeout_ms,
        }


class StreamingHub:
    """The org's Bayeux server: listener of record changes, holder of clients and the event log."""

    def __init__(
        self,
        state: DevOrgState,
        settings: StreamingSettings | None = None,
        *,
        where_matcher: Callable[[str], Callable[[Mapping[str, Any]], bool]] | None = None,
    ) -> None:
        self.state = state
        self._make_where = where_matcher or self._soql_where
        self.settings = settings or StreamingSettings(
            connect_timeout_ms=_env_ms("SFBRIDGE_DEVORG_STREAM_TIMEOUT_MS", CONNECT_TIMEOUT_MS),
            client_timeout_ms=_env_ms(
                "SFBRIDGE_DEVORG_STREAM_CLIENT_TIMEOUT_MS", CLIENT_TIMEOUT_MS
            ),
        )
        self.log = EventLog(Path(state.data_dir) / "streaming.sqlite3")
        self.clients: dict[str, BayeuxClient] = {}
        self.subscribers: dict[str, set[str]] = {}
        self._lock = threading.RLock()
        self._topics: dict[str, list[pushtopic.Topic]] | None = None
        self._names: dict[str, str] = {}  # PushTopic id -> Name, as last loaded
        self._renamed: dict[str, str] = {}  # former /topic/<Name> with subscribers -> topic id
        #: entities "selected for Change Data Capture": from the first subscription to their
        #: channel (as if an admin selected them then) or set through the control API
        self.cdc_selected: set[str] = set(self.log.setting("cdc_selected", []))
        self._pending: list[StoredEvent] = []  # numbered, not yet persisted nor queued
        #: persisted, waiting out the latency profile's delivery delay: (due, events)
        self._delayed: deque[tuple[float, list[StoredEvent]]] = deque()
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        with self._lock:
            self._topics = self._load_topics()
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def shutdown(self) -> None:
        """Release held long polls so the server can stop promptly."""
        self._closing = True
        with self._lock:
            for client in self.clients.values():
                client.wakeup.set()

    async def cleanup(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        self.flush()
        self.log.close()

    def reset(self) -> None:
        """The org was reset: drop clients, subscriptions, queued and retained events."""
        with self._lock:
            for client in self.clients.values():
                client.gone = True
                self._wake(client)
            self.clients.clear()
            self.subscribers.clear()
            self._names.clear()
            self._renamed.clear()
            self._topics = self._load_topics()
            self._pending.clear()
            self._delayed.clear()
            self.log.clear()

    # -- publishing -------------------------------------------------------------------------

    def record_changed(self, change: RecordChange) -> None:
        """Evaluate every active topic (and the CDC channels) for one committed change."""
        if change.sobject == "PushTopic":
            with self._lock:  # a query or name change takes effect at once
                self._topics = self._load_topics()
            return
        messages: list[tuple[str, Callable[[int], str]]] = []
        record = change.record
        # Bulk API changes notify no PushTopic (Streaming API guide, "Working with
        # PushTopics"); Change Data Capture still publishes them.
        topics = (
            ()
            if change.origin == "bulkapi"
            else self._active_topics().get(change.sobject.lower(), ())
        )
        for topic in topics:
            try:
                hit = pushtopic.notifies(topic, change.change_type, record, change.changed_fields)
            except Exception:  # a WHERE the evaluator cannot handle must not break the write
                log.exception("PushTopic %s could not be evaluated", topic.name)
                continue
            if hit:
                for channel in (topic.channel, *self._former_channels(topic)):
                    messages.append((channel, _topic_builder(topic, change, channel)))
        if change.sobject in self.cdc_selected:
            # serialized once for both channels
            payload_json = _dumps(pushtopic.change_event(change, API_VERSION))
            for channel in pushtopic.cdc_channels(change.sobject):
                messages.append((channel, _cdc_builder(channel, change.sobject, payload_json)))
        if messages:
            self.publish(messages, change.at)

    def publish(self, messages: list[tuple[str, Callable[[int], str]]], at: datetime) -> None:
        """Number and serialize the events; they are persisted, then queued for subscribers, by
        :meth:`flush` — at the end of this event-loop step, so that the records of one request
        (a composite of 200) cost one commit, not 200."""
        with self._lock:
            for channel, build in messages:
                replay_id = self.log.next_id()
                self._pending.append(StoredEvent(replay_id, channel, at, build(replay_id)))
            if self._flush_scheduled:
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is None:
                self.flush()
            else:
                self._flush_scheduled = True
                loop.call_soon(self.flush)

    def flush(self) -> None:
        """Persist the pending events (one commit), then queue them for every subscriber —
        after the latency profile's delivery delay, if it has one (latency.py)."""
        with self._lock:
            self._flush_scheduled = False
            events, self._pending = self._pending, []
            if not events:
                return
            self.log.append(events)
            delay = self.state.latency.stream_delay() if self._loop is not None else 0.0
            if delay > 0 or self._delayed:
                # in commit order: a later commit never overtakes an earlier one
                due = max(time.monotonic() + delay, self._delayed[-1][0] if self._delayed else 0)
                self._delayed.append((due, events))
                if len(self._delayed) == 1:
                    self._schedule_delivery()
                return
            self._deliver(events)

    def _schedule_delivery(self) -> None:
        assert self._loop is not None
        due = self._delayed[0][0]
        self._loop.call_later(max(due - time.monotonic(), 0), self._deliver_due)

    def _deliver_due(self) -> None:
        with self._lock:
            now = time.monotonic()
            while self._delayed and self._delayed[0][0] <= now:
                self._deliver(self._delayed.popleft()[1])
            if self._delayed:
                self._schedule_delivery()

    def _deliver(self, events: list[StoredEvent]) -> None:
        with self._lock:
            for event in events:
                parsed: list[Mapping[str, Any]] = []  # the event's sobject, for filters
                for client_id in self.subscribers.get(event.channel, ()):
                    client = self.clients.get(client_id)
                    if client is not None:
                        client.queue.extend(_routed(event, client.routes, parsed))
                        self._wake(client)

    def _wake(self, client: BayeuxClient) -> None:
        loop = self._loop
        if loop is None:
            client.wakeup.set()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            client.wakeup.set()
        else:
            loop.call_soon_threadsafe(client.wakeup.set)

    def _active_topics(self) -> dict[str, list[pushtopic.Topic]]:
        with self._lock:
            if self._topics is None:
                self._topics = self._load_topics()
            return self._topics

    def _former_channels(self, topic: pushtopic.Topic) -> list[str]:
        """Channels of the topic's earlier names that still have live subscriptions."""
        if not self._renamed:
            return []
        return [
            channel
            for channel, topic_id in self._renamed.items()
            if topic_id == topic.id and self.subscribers.get(channel)
        ]

    def _load_topics(self) -> dict[str, list[pushtopic.Topic]]:
        topics: dict[str, list[pushtopic.Topic]] = {}
        names: dict[str, str] = {}
        for record in self.state.records("PushTopic"):
            names[str(record.get("Id"))] = str(record.get("Name"))
        # "If you change a PushTopic Name, live subscriptions are not affected": remember the
        # old channel for its subscribers (new subscriptions need the new name)
        for topic_id, old in self._names.items():
            new = names.get(topic_id)
            if new is not None and new != old and self.subscribers.get(f"/topic/{old}"):
                self._renamed[f"/topic/{old}"] = topic_id
        self._renamed = {
            channel: topic_id
            for channel, topic_id in self._renamed.items()
            if topic_id in names and channel != f"/topic/{names[topic_id]}"
        }
        self._names = names
        for record in self.state.records("PushTopic"):
            if record.get("IsActive") is False:
                continue
            try:
                topic = pushtopic.compile_topic(record, self._make_where)
            except Exception:  # stored before validation existed, or unparsable: never matches
                log.warning("PushTopic %s is not usable", record.get("Name"))
                continue
            topics.setdefault(topic.sobject.lower(), []).append(topic)
        return topics

    def _soql_where(self, query_text: str) -> Callable[[Mapping[str, Any]], bool]:
        from bridge.devorg import soql

        query = soql.parse_query(query_text)
        where = query.where
        obj = self.state.schema.object(query.sobject) if self.state.schema is not None else None
        names: Mapping[str, str] = obj.lower if obj is not None else {}
        clock = self.state.clock

        def resolve(record: dict[str, Any], path: str) -> Any:
            # topic queries may write field names in any case; records use the API names
            return record.get(names.get(path.lower(), path))

        def matches(record: Mapping[str, Any]) -> bool:
            return soql.evaluate_where(where, dict(record), now=clock.now(), resolve=resolve)

        return matches

    def _select_cdc(self, channel: str) -> None:
        if channel == "/data/ChangeEvents":
            wanted = set(pushtopic.CDC_OBJECTS)
        elif channel.startswith("/data/") and channel.endswith("ChangeEvent"):
            wanted = {channel[len("/data/") : -len("ChangeEvent")]}
        else:
            return
        if not wanted <= self.cdc_selected:
            self.cdc_selected |= wanted
            self.log.set_setting("cdc_selected", sorted(self.cdc_selected))

    def channel_exists(self, channel: str) -> bool:
        if channel.startswith("/topic/"):
            name = channel[len("/topic/") :]
            return any(r.get("Name") == name for r in self.state.records("PushTopic"))
        if channel == "/data/ChangeEvents":
            return True
        if channel.startswith("/data/") and channel.endswith("ChangeEvent"):
            return channel[len("/data/") : -len("ChangeEvent")] in pushtopic.CDC_OBJECTS
        return False

    # -- client expiry ----------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        purged_at = time.monotonic()
        while True:
            interval = min(1.0, self.settings.client_timeout_ms / 4000)
            await asyncio.sleep(max(interval, 0.05))
            now = time.monotonic()
            self.expire_clients(now)
            if now - purged_at > 60:  # events past the retention window leave memory and disk
                purged_at = now
                with self._lock:
                    self.log.purge(self.state.clock.now())

    def expire_clients(self, now: float) -> list[str]:
        """Drop clients that neither hold a long poll nor came back within the window."""
        limit = self.settings.client_timeout_ms / 1000
        with self._lock:
            expired = [
                c.id for c in self.clients.values() if c.polling == 0 and now - c.last_seen > limit
            ]
            for client_id in expired:
                self._remove(client_id)
        return expired

    def _remove(self, client_id: str) -> None:
        client = self.clients.pop(client_id, None)
        if client is None:
            return
        client.gone = True
        for channel in client.routes:
            self.subscribers.get(channel, set()).discard(client_id)
        self._wake(client)

    # -- the Bayeux endpoint ----------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        fault = self.state.faults.check(request.path, request.method)
        if fault is not None:
            response = await self._apply_fault(request, fault)
            if response is not None:
                return response
        version = request.match_info.get("version", "")
        try:
            if float(version) < MIN_API_VERSION:
                raise ValueError(version)
        except ValueError:
            return _bayeux_response(
                [
                    {
                        "channel": "/meta/handshake",
                        "successful": False,
                        "error": "400::Unsupported API version. Only API versions "
                        f"'{MIN_API_VERSION}' and later are supported. URI format: '/cometd/63.0'",
                    }
                ],
                status=400,
            )
        raw = await request.read()
        if len(raw) > MAX_REQUEST_BYTES:
            return _bayeux_response(
                [{"successful": False, "error": "413::Maximum Request Size Exceeded"}], status=413
            )
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return _bayeux_response(
                [{"successful": False, "error": "400::Malformed JSON in the request body"}],
                status=400,
            )
        messages = body if isinstance(body, list) else [body]
        if not messages or not all(isinstance(m, dict) for m in messages):
            return _bayeux_response(
                [{"successful": False, "error": "400::Bayeux messages must be JSON objects"}],
                status=400,
            )
        token = _bearer(request.headers.get("Authorization", ""))
        user = self.state.user_for_token(token) if token else None
        replies: list[str] = []
        set_cookie: str | None = None
        delivered: dict[str, int] = {}
        for message in messages:
            channel = message.get("channel")
            try:
                if channel == "/meta/handshake":
                    reply, set_cookie = self._handshake(message, token, user, request)
                    replies.append(_dumps(reply))
                    continue
                if token is None:
                    raise BayeuxError("401::Request requires authentication", _ADVICE_NONE)
                if user is None:
                    raise BayeuxError("401::Authentication invalid", _ADVICE_NONE)
                client = self._client_for(message, request)
                if channel == "/meta/connect":
                    events, reply = await self._connect(message, client, token)
                    prefix = '{"clientId":' + json.dumps(client.id) + ","
                    view = self.state.event_view
                    for event in events:
                        delivered[event.channel] = delivered.get(event.channel, 0) + 1
                        # stored once for every subscriber; the clientId goes in per client
                        text = view(client.user_id, event.message) if view else event.message
                        replies.append(prefix + text[1:])
                    replies.append(_dumps(reply))
                elif channel == "/meta/subscribe":
                    replies.append(_dumps(self._subscribe(message, client)))
                elif channel == "/meta/unsubscribe":
                    replies.append(_dumps(self._unsubscribe(message, client)))
                elif channel == "/meta/disconnect":
                    with self._lock:
                        self._remove(client.id)
                    replies.append(_dumps(_ok(message, client.id)))
                else:
                    raise BayeuxError("403::Publish denied")
            except BayeuxError as exc:
                reply = {
                    "channel": channel,
                    "successful": False,
                    "error": exc.error,
                }
                if message.get("clientId"):
                    reply["clientId"] = message["clientId"]
                if message.get("id") is not None:
                    reply["id"] = message["id"]
                if "subscription" in message:
                    reply["subscription"] = message["subscription"]
                if exc.advice is not None:
                    reply["advice"] = dict(exc.advice)
                replies.append(_dumps(reply))
        for channel, count in delivered.items():
            self.state.stats.events_delivered(channel, count)
        response = web.Response(text="[" + ",".join(replies) + "]", content_type="application/json")
        if set_cookie is not None:
            response.set_cookie(COOKIE, set_cookie, path="/", secure=request.secure, httponly=True)
        return response

    async def _apply_fault(self, request: web.Request, fault: Any) -> web.StreamResponse | None:
        kind = getattr(fault, "kind", "")
        if kind == "latency":
            await asyncio.sleep(max(getattr(fault, "latency_ms", 0), 0) / 1000)
            return None
        if kind == "drop":
            # the long poll dies without a response, as a broken network connection would
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        status = int(getattr(fault, "status", 500) or 500)
        if kind == "status":
            return web.Response(status=status)
        # an "error" fault fails every message of the request in the Bayeux way
        text = getattr(fault, "message", None) or getattr(fault, "error_code", None) or "Fault"
        advice = _ADVICE_NONE if status == 401 else _ADVICE_HANDSHAKE if status == 403 else None
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = [{}]
        replies = []
        for message in body if isinstance(body, list) else [body]:
            reply: dict[str, Any] = {"successful": False, "error": f"{status}::{text}"}
            if isinstance(message, dict):
                reply.update({k: message[k] for k in ("channel", "clientId", "id") if k in message})
            if advice:
                reply["advice"] = advice
            replies.append(reply)
        return _bayeux_response(replies)

    def _handshake(
        self, message: Mapping[str, Any], token: str | None, user: Any, request: web.Request
    ) -> tuple[dict[str, Any], str | None]:
        base: dict[str, Any] = {"channel": "/meta/handshake"}
        if message.get("id") is not None:
            base["id"] = message["id"]
        if user is None:
            reason = (
                "401::Request requires authentication"
                if token is None
                else "401::Authentication invalid"
            )
            raise_reply = {
                **base,
                "ext": {"sfdc": {"failureReason": reason}},
                "advice": {"reconnect": "none"},
                "error": "403::Handshake denied",
                "successful": False,
            }
            # not an exception: the handshake reply carries its own shape
            return raise_reply, None
        types = message.get("supportedConnectionTypes") or ["long-polling"]
        if "long-polling" not in types:
            return {
                **base,
                "successful": False,
                "error": f"400::Invalid connection type {','.join(map(str, types))}",
            }, None
        browser = request.cookies.get(COOKIE) or _new_id(20)
        client = BayeuxClient(id=_new_id(), user_id=str(getattr(user, "id", "")), browser=browser)
        with self._lock:
            self.clients[client.id] = client
        reply = {
            **base,
            "version": "1.0",
            "minimumVersion": "1.0",
            "clientId": client.id,
            "supportedConnectionTypes": ["long-polling"],
            "advice": self._advice(),
            "ext": {"replay": True, "payload.format": True},
            "successful": True,
        }
        return reply, None if request.cookies.get(COOKIE) == browser else browser

    def _advice(self) -> dict[str, Any]:
        return {"reconnect": "retry", "interval": 0, "timeout": self.settings.connect_timeout_ms}

    def _client_for(self, message: Mapping[str, Any], request: web.Request) -> BayeuxClient:
        client_id = message.get("clientId")
        with self._lock:
            client = self.clients.get(str(client_id)) if client_id else None
        if client is None or client.gone:
            raise BayeuxError("403::Unknown client", _ADVICE_HANDSHAKE)
        if COOKIE not in request.cookies:
            raise BayeuxError(
                f"400::Client {client.id} has established a session, "
                f"but no {COOKIE} cookie present",
                _ADVICE_NONE,
            )
        client.last_seen = time.monotonic()
        return client

    async def _connect(
        self, message: Mapping[str, Any], client: BayeuxClient, token: str
    ) -> tuple[list[StoredEvent], dict[str, Any]]:
        connection_type = message.get("connectionType", "long-polling")
        if connection_type != "long-polling":
            raise BayeuxError(f"400::Invalid connection type {connection_type}")
        first = client.connects == 0
        client.connects += 1
        client.poll_seq += 1
        mine = client.poll_seq
        asked = message.get("advice") or {}
        hold = not first and asked.get("timeout") != 0 and not self._closing
        if hold and not client.queue:
            # a second poll for the same client releases the first (CometD does the same)
            if client.polling:
                client.wakeup.set()
                await asyncio.sleep(0)
            client.wakeup.clear()
            client.polling += 1
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        client.wakeup.wait(), self.settings.connect_timeout_ms / 1000
                    )
            finally:
                client.polling -= 1
                client.last_seen = time.monotonic()
        if client.gone:
            raise BayeuxError("403::Unknown client", _ADVICE_HANDSHAKE)
        # the token is checked again after the wait: a revoked session ends the stream
        if self.state.user_for_token(token) is None:
            raise BayeuxError("401::Authentication invalid", _ADVICE_NONE)
        with self._lock:
            # a superseded poll may answer a connection the client has given up on: it takes
            # nothing off the queue, the newest poll delivers
            count = min(len(client.queue), MAX_BATCH) if client.poll_seq == mine else 0
            events = [client.queue.popleft() for _ in range(count)]
            client.last_seen = time.monotonic()
        reply = _ok(message, client.id)
        reply["advice"] = self._advice()
        return events, reply

    def _subscribe(self, message: Mapping[str, Any], client: BayeuxClient) -> dict[str, Any]:
        subscription = message.get("subscription")
        if not subscription or not isinstance(subscription, str):
            raise BayeuxError("400::Channel name not specified")
        if not subscription.startswith("/"):
            raise BayeuxError("400::Channel subscriptions must start with a leading '/'")
        channel, expression = _split_subscription(subscription)
        if not self.channel_exists(channel) or (
            expression is not None and not channel.startswith("/topic/")
        ):
            raise BayeuxError(
                f"400::The channel you requested to subscribe to does not exist {subscription}"
            )
        channel_filter = self._filter(channel, expression) if expression is not None else None
        ext = message.get("ext") or {}
        replay_map = ext.get("replay") if isinstance(ext, dict) else None
        raw = replay_map.get(subscription, -1) if isinstance(replay_map, dict) else -1
        try:
            replay_id = int(raw)
        except (TypeError, ValueError):
            replay_id = None
        now = self.state.clock.now()
        with self._lock:
            self.flush()  # a replay includes what was committed a moment ago
            self._select_cdc(channel)
            self.log.purge(now)
            if replay_id is None or (
                replay_id not in (-1, -2) and not self.log.is_retained(channel, replay_id)
            ):
                raise BayeuxError(
                    f"400::The replayId {raw} you provided was invalid. Please provide a valid "
                    "ID, -2 to replay all events, or -1 to replay only new events."
                )
            if replay_id != -1:
                route = {channel: {subscription: channel_filter}}
                parsed: list[Mapping[str, Any]] = []
                queued = {(e.channel, e.replay_id) for e in client.queue}
                # events still in their delivery delay are not published yet: they reach this
                # subscriber when they are
                upto = self._delayed[0][1][0].replay_id if self._delayed else None
                for event in self.log.after(channel, None if replay_id == -2 else replay_id):
                    if upto is not None and event.replay_id >= upto:
                        break
                    parsed.clear()
                    for routed in _routed(event, route, parsed):
                        if (routed.channel, routed.replay_id) not in queued:
                            client.queue.append(routed)
                self._wake(client)
            client.routes.setdefault(channel, {})[subscription] = channel_filter
            self.subscribers.setdefault(channel, set()).add(client.id)
        reply = _ok(message, client.id)
        reply["subscription"] = subscription
        return reply

    def _filter(self, channel: str, expression: str) -> ChannelFilter:
        try:
            channel_filter = ChannelFilter.parse(expression)
        except ValueError as exc:
            raise BayeuxError(
                f"400::The channel you requested to subscribe to does not exist "
                f"{channel}?{expression}"
            ) from exc
        name = channel[len("/topic/") :]
        record = next((r for r in self.state.records("PushTopic") if r.get("Name") == name), None)
        try:
            parts = pushtopic.analyse(str(record.get("Query"))) if record else None
        except pushtopic.QueryError:
            parts = None
        known = {f.lower() for f in parts.select} if parts else set()
        unknown = [n for n, _ in channel_filter.conditions if n.lower() not in known]
        if unknown:
            # the filter needs the field's value in the notification: a SELECT field
            raise BayeuxError(
                f"400::Query fields {', '.join(unknown)} do not exist on the topic entity"
            )
        return channel_filter

    def _unsubscribe(self, message: Mapping[str, Any], client: BayeuxClient) -> dict[str, Any]:
        subscription = str(message.get("subscription") or "")
        channel, _ = _split_subscription(subscription)
        with self._lock:
            routes = client.routes.get(channel, {})
            routes.pop(subscription, None)
            if not routes:
                client.routes.pop(channel, None)
                self.subscribers.get(channel, set()).discard(client.id)
            client.queue = deque(e for e in client.queue if e.channel != subscription)
        reply = _ok(message, client.id)
        reply["subscription"] = subscription
        return reply

    # -- control -----------------------------------------------------------------------------

    async def control(self, request: web.Request) -> web.Response:
        """``/__devorg__/streaming``: timeouts (tests shorten them) and dropping every client.

        ``{"drop_clients": true}`` makes the server forget its clients, as a Salesforce server
        failover does: their next message gets ``403::Unknown client``.
        """
        if request.method == "POST":
            try:
                body = await request.json() if request.can_read_body else {}
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return web.json_response({"error": "the body must be a JSON object"}, status=400)
            for key in ("connect_timeout_ms", "client_timeout_ms"):
                if key in body:
                    value = body[key]
                    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                        return web.json_response(
                            {"error": f"{key} must be a non-negative integer (milliseconds)"},
                            status=400,
                        )
                    setattr(self.settings, key, value)
            if "cdc_entities" in body:
                entities = body["cdc_entities"]
                if not isinstance(entities, list) or not set(entities) <= pushtopic.CDC_OBJECTS:
                    return web.json_response(
                        {"error": f"cdc_entities: a list of {sorted(pushtopic.CDC_OBJECTS)}"},
                        status=400,
                    )
                with self._lock:
                    self.cdc_selected = set(entities)
                    self.log.set_setting("cdc_selected", sorted(self.cdc_selected))
            if body.get("drop_clients"):
                with self._lock:
                    for client_id in list(self.clients):
                        self._remove(client_id)
            if "inject" in body:
                problem = self._inject(body["inject"])
                if problem:
                    return web.json_response({"error": problem}, status=400)
        with self._lock:
            clients = sorted(self.clients)
        return web.json_response(
            {
                **self.settings.to_dict(),
                "clients": clients,
                "last_replay_id": self.log.last_id,
                "cdc_entities": sorted(self.cdc_selected),
            }
        )

    def _inject(self, inject: Any) -> str | None:
        """Publish a message Salesforce would never send, for the poison-event tests:
        ``{"channel": "/topic/X", "data_json": "<the JSON text of its data>"}``. The text is
        sent verbatim (it may hold NaN, Infinity, 1e999 or huge numbers, which Python's JSON
        reader accepts), with ``{{replayId}}`` replaced by the event's replay id."""
        if (
            not isinstance(inject, dict)
            or not isinstance(inject.get("channel"), str)
            or not isinstance(inject.get("data_json"), str)
        ):
            return "inject: give channel and data_json (the JSON text of the message's data)"
        channel, text = inject["channel"], inject["data_json"]
        try:
            json.loads(text.replace("{{replayId}}", "1"))
        except ValueError as exc:
            return f"inject: data_json is not JSON even to a lenient reader: {exc}"
        head = '{"channel":' + _dumps(channel) + ',"data":'

        def build(replay_id: int) -> str:
            return head + text.replace("{{replayId}}", str(replay_id)) + "}"

        self.publish([(channel, build)], self.state.clock.now())
        self.flush()
        return None


def _routed(
    event: StoredEvent,
    routes: Mapping[str, Mapping[str, ChannelFilter | None]],
    parsed: list[Mapping[str, Any]],
) -> list[StoredEvent]:
    """The event as each of a client's subscriptions to its channel receives it: as stored for
    a plain subscription; renamed to the filtered channel, if it matches, for a filtered one.
    ``parsed`` caches the event's sobject across clients."""
    out: list[StoredEvent] = []
    for subscription, channel_filter in routes.get(event.channel, {}).items():
        if channel_filter is None:
            out.append(event)
            continue
        if not parsed:
            parsed.append(json.loads(event.message).get("data", {}).get("sobject") or {})
        if channel_filter.matches(parsed[0]):
            head = '{"channel":' + _dumps(event.channel)
            assert event.message.startswith(head)
            message = '{"channel":' + _dumps(subscription) + event.message[len(head) :]
            out.append(StoredEvent(event.replay_id, subscription, event.created_at, message))
    return out


def _topic_builder(
    topic: pushtopic.Topic, change: RecordChange, channel: str
) -> Callable[[int], str]:
    def build(replay_id: int) -> str:
        return _dumps(
            pushtopic.topic_message(
                topic, change.change_type, change.record, change.at, replay_id, channel
            )
        )

    return build


def _cdc_builder(channel: str, entity: str, payload_json: str) -> Callable[[int], str]:
    head = '{"channel":' + _dumps(channel) + ',"data":{"schema":' + _dumps(f"devorg-{entity}")

    def build(replay_id: int) -> str:
        # the shape of pushtopic.cdc_message, with the payload serialized once
        return f'{head},"payload":{payload_json},"event":{{"replayId":{replay_id}}}}}}}'

    return build


def _bearer(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() in ("bearer", "oauth") and token.strip():
        return token.strip()
    return None


def _ok(message: Mapping[str, Any], client_id: str) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "clientId": client_id,
        "channel": message.get("channel"),
        "successful": True,
    }
    if message.get("id") is not None:
        reply["id"] = message["id"]
    return reply


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _bayeux_response(replies: Iterable[Mapping[str, Any]], status: int = 200) -> web.Response:
    return web.Response(text=_dumps(list(replies)), status=status, content_type="application/json")


def setup(app: web.Application, state: DevOrgState) -> StreamingHub:
    """Serve the Streaming API on ``/cometd/{version}`` and listen to the org's record changes."""
    hub = StreamingHub(state)
    state.add_listener(hub)
    app[HUB_KEY] = hub
    app.router.add_post("/cometd/{version}", hub.handle)
    # CometD clients may append the message type to the URL (/cometd/63.0/connect)
    app.router.add_post("/cometd/{version}/{kind:[a-z]+}", hub.handle)
    app.router.add_route("*", "/__devorg__/streaming", hub.control)

    @web.middleware
    async def persist_events(request: web.Request, handler: Any) -> web.StreamResponse:
        # the events of a write are on disk before its HTTP response goes out
        try:
            return await handler(request)
        finally:
            hub.flush()

    app.middlewares.append(persist_events)

    async def on_startup(_app: web.Application) -> None:
        await hub.start()

    async def on_shutdown(_app: web.Application) -> None:
        await hub.shutdown()

    async def on_cleanup(_app: web.Application) -> None:
        await hub.cleanup()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return hub
