"""The local org's event bus for the Pub/Sub API: topics, schemas and the retained events.

Change events are made from the org's committed record changes (it is a listener of the
state, like the Bayeux hub): one per change on ``/data/<Object>ChangeEvent`` and on
``/data/ChangeEvents``, Avro-encoded with the entity's schema (`avro.py`). Deletes of one
object in one step are merged into one event naming every record (``recordIds``), as
Salesforce merges identical changes of a transaction. Platform events are published by
clients (`service.py`).

Replay ids are 8-byte big-endian numbers of one org-wide sequence (opaque to clients;
Salesforce's are too). Events are written to SQLite under the data dir before subscribers are
woken, and kept for 72 hours by the org clock; a replay id older than what is retained is
invalid.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.devorg import pushtopic
from bridge.devorg.pubsub import avro
from bridge.devorg.state import API_VERSION

if TYPE_CHECKING:
    from bridge.devorg.state import DevOrgState, RecordChange

RETENTION = timedelta(hours=72)
ALL_CHANGES = "/data/ChangeEvents"
#: The platform event the local org defines (clients publish it; see docs/devorg.md).
PLATFORM_EVENTS = {"Bridge_Notice__e": ("Message__c", "Record_Id__c")}


def replay_bytes(seq: int) -> bytes:
    return seq.to_bytes(8, "big")


def replay_seq(replay_id: bytes) -> int | None:
    """The sequence number behind a replay id this bus issued; None if it is not one."""
    if len(replay_id) != 8:
        return None
    return int.from_bytes(replay_id, "big")


@dataclass(frozen=True)
class BusEvent:
    seq: int
    topic: str
    schema_id: str
    payload: bytes
    event_id: str
    created_at: float  # org clock, epoch seconds


class EventBus:
    def __init__(self, state: DevOrgState, data_dir: Path) -> None:
        self.state = state
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            data_dir / "pubsub.sqlite3", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "topic TEXT NOT NULL, schema_id TEXT NOT NULL, payload BLOB NOT NULL, "
            "event_id TEXT NOT NULL, created_at REAL NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS purged (topic TEXT PRIMARY KEY, through INTEGER NOT NULL)"
        )
        self.events: dict[str, list[BusEvent]] = {}
        for row in self._db.execute(
            "SELECT seq, topic, schema_id, payload, event_id, created_at FROM events ORDER BY seq"
        ):
            self.events.setdefault(row[1], []).append(BusEvent(*row))
        self.purged: dict[str, int] = dict(self._db.execute("SELECT topic, through FROM purged"))
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        self.last_seq = int(row[0]) if row else 0
        self.schemas: dict[str, avro.EventSchema] = {}  # schema id -> schema
        self._by_name: dict[str, avro.EventSchema] = {}  # event name -> schema
        self._pending: list[RecordChange] = []
        self._waiters: set[Callable[[], None]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- topics and schemas -----------------------------------------------------------------

    def schema_for(self, event_name: str) -> avro.EventSchema | None:
        """The schema of ``LeadChangeEvent`` or of a platform event (``Bridge_Notice__e``)."""
        with self._lock:
            found = self._by_name.get(event_name)
            if found is not None:
                return found
            if event_name in PLATFORM_EVENTS:
                found = avro.platform_event_schema(event_name, PLATFORM_EVENTS[event_name])
            elif event_name.endswith("ChangeEvent"):
                entity = event_name.removesuffix("ChangeEvent")
                obj = self.state.schema.object(entity) if self.state.schema else None
                if obj is None or entity not in pushtopic.CDC_OBJECTS:
                    return None
                found = avro.change_event_schema(obj)
            else:
                return None
            self._by_name[event_name] = found
            self.schemas[found.schema_id] = found
            return found

    def schema_by_id(self, schema_id: str) -> avro.EventSchema | None:
        with self._lock:
            if not self.schemas:  # ids are content hashes: build what we serve to find them
                for topic in self.topics():
                    self.topic_schema(topic)
            return self.schemas.get(schema_id)

    def topics(self) -> list[str]:
        cdc = [f"/data/{o}ChangeEvent" for o in sorted(pushtopic.CDC_OBJECTS)]
        return [*cdc, ALL_CHANGES, *(f"/event/{n}" for n in PLATFORM_EVENTS)]

    def topic_schema(self, topic: str) -> avro.EventSchema | None:
        """The topic's current schema; ``/data/ChangeEvents`` carries several (the first)."""
        if topic == ALL_CHANGES:
            for name in sorted(pushtopic.CDC_OBJECTS):
                self.schema_for(f"{name}ChangeEvent")
            return self.schema_for(f"{sorted(pushtopic.CDC_OBJECTS)[0]}ChangeEvent")
        if topic.startswith("/data/"):
            return self.schema_for(topic.removeprefix("/data/"))
        if topic.startswith("/event/"):
            return self.schema_for(topic.removeprefix("/event/"))
        return None

    def is_platform_event(self, topic: str) -> bool:
        return topic.startswith("/event/") and topic.removeprefix("/event/") in PLATFORM_EVENTS

    # -- publishing -------------------------------------------------------------------------

    def record_changed(self, change: RecordChange) -> None:
        if change.sobject not in pushtopic.CDC_OBJECTS:
            return
        with self._lock:
            self._pending.append(change)
        loop = self.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is not None and running is loop:
            loop.call_soon(self.flush)
        else:
            self.flush()

    def reset(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM events")
            self._db.execute("DELETE FROM purged")
            self.events.clear()
            self.purged.clear()
            self._pending.clear()

    def flush(self) -> None:
        """Turn the pending record changes into change events, persist them, wake readers."""
        with self._lock:
            changes, self._pending = self._pending, []
            if not changes:
                return
            made: list[tuple[str, avro.EventSchema, dict[str, Any]]] = []
            deletes: dict[str, tuple[avro.EventSchema, dict[str, Any]]] = {}
            for change in changes:
                schema = self.schema_for(f"{change.sobject}ChangeEvent")
                if schema is None:
                    continue
                payload = pushtopic.change_event(change, API_VERSION)
                record_id = str(change.record.get("Id"))
                if change.change_type == "deleted":  # merged within their transaction
                    key = f"{change.sobject}:{change.transaction_key}"
                    if key in deletes:
                        deletes[key][1]["ChangeEventHeader"]["recordIds"].append(record_id)
                        continue
                    deletes[key] = (schema, payload)
                made.append((change.sobject, schema, payload))
            rows = [
                (topic, schema, avro.encode(schema, avro.change_event(schema, payload)))
                for sobject, schema, payload in made
                for topic in pushtopic.cdc_channels(sobject)
            ]
            self._append(rows)

    def inject(self, topic: str, schema_id: str, payload: bytes) -> int:
        """An event as given (the control API: a payload no schema reads, for tests)."""
        fake = avro.EventSchema("injected", "", schema_id, None)
        with self._lock:
            return self._append([(topic, fake, payload)])[0]

    def gap(self, sobject: str, change_type: str, record_ids: list[str]) -> list[int]:
        """A gap or overflow event (the control API): a header without field values, as
        Salesforce sends when it cannot report a change's values (CDC guide, "Gap Events")."""
        schema = self.schema_for(f"{sobject}ChangeEvent")
        if schema is None or change_type not in avro.CHANGE_TYPES[4:]:
            raise ValueError(f"no gap event {change_type} for {sobject}")
        at = self.state.clock.now()
        header = {
            "entityName": sobject,
            "recordIds": record_ids,
            "changeType": change_type,
            "changeOrigin": "",
            "transactionKey": str(uuid.uuid4()),
            "sequenceNumber": 1,
            "commitTimestamp": int(at.timestamp() * 1000),
            "commitNumber": int(at.timestamp() * 1_000_000),
            "commitUser": next((u.id for u in self.state.users.values() if u.role == "sales"), ""),
            "nulledFields": [],
            "diffFields": [],
            "changedFields": [],
        }
        payload = avro.encode(schema, avro.change_event(schema, {"ChangeEventHeader": header}))
        with self._lock:
            return self._append(
                [(topic, schema, payload) for topic in pushtopic.cdc_channels(sobject)]
            )

    def publish(self, topic: str, schema: avro.EventSchema, payloads: list[bytes]) -> list[int]:
        """Store published platform events; returns their sequence numbers."""
        with self._lock:
            return self._append([(topic, schema, p) for p in payloads])

    def _append(self, rows: list[tuple[str, avro.EventSchema, bytes]]) -> list[int]:
        if not rows:
            return []
        now = self.state.clock.now().timestamp()
        made: list[BusEvent] = []
        self._db.execute("BEGIN")
        try:
            for topic, schema, payload in rows:
                event_id = str(uuid.uuid4())
                cur = self._db.execute(
                    "INSERT INTO events (topic, schema_id, payload, event_id, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (topic, schema.schema_id, payload, event_id, now),
                )
                assert cur.lastrowid is not None
                made.append(
                    BusEvent(cur.lastrowid, topic, schema.schema_id, payload, event_id, now)
                )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        for event in made:
            self.events.setdefault(event.topic, []).append(event)
            self.last_seq = max(self.last_seq, event.seq)
        self._wake_all()
        return [e.seq for e in made]

    # -- readers ----------------------------------------------------------------------------

    def add_waiter(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._waiters.add(wake)

    def remove_waiter(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._waiters.discard(wake)

    def _wake_all(self) -> None:
        loop = self.loop
        for wake in list(self._waiters):
            if loop is None:
                wake()
            else:
                loop.call_soon_threadsafe(wake)

    def purge(self) -> None:
        """Forget events older than the retention window (by the org clock)."""
        horizon = (self.state.clock.now() - RETENTION).timestamp()
        with self._lock:
            for topic, events in self.events.items():
                old = [e for e in events if e.created_at < horizon]
                if not old:
                    continue
                self.events[topic] = events[len(old) :]
                self.purged[topic] = old[-1].seq
                self._db.execute(
                    "INSERT OR REPLACE INTO purged (topic, through) VALUES (?, ?)",
                    (topic, old[-1].seq),
                )
                self._db.execute(
                    "DELETE FROM events WHERE topic = ? AND seq <= ?", (topic, old[-1].seq)
                )

    def valid_position(self, topic: str, seq: int) -> bool:
        """A replay id names a retained position of the topic (not purged, not in the future)."""
        self.purge()
        with self._lock:
            return self.purged.get(topic, 0) < seq <= self.last_seq

    def after(self, topic: str, seq: int, limit: int) -> list[BusEvent]:
        with self._lock:
            events = self.events.get(topic, [])
            lo, hi = 0, len(events)
            while lo < hi:  # first event with a higher sequence number
                mid = (lo + hi) // 2
                if events[mid].seq <= seq:
                    lo = mid + 1
                else:
                    hi = mid
            return events[lo : lo + limit]

    def earliest(self, topic: str) -> int:
        """The position before the first retained event of the topic."""
        self.purge()
        with self._lock:
            events = self.events.get(topic)
            return events[0].seq - 1 if events else self.purged.get(topic, 0)

    def latest(self, topic: str) -> int:
        with self._lock:
            events = self.events.get(topic)
            return events[-1].seq if events else self.last_seq

    def close(self) -> None:
        self._db.close()
