"""`sfbridge stream`: the streaming subscriber of one org.

Loop: take the org's lease → handshake → subscribe each channel from its stored cursor →
connect (long poll) → store the delivered events and move the cursors in one transaction →
enqueue the new events → connect again (within Salesforce's 40-second window).

Failures: `401::Authentication invalid` re-authenticates; `403::Unknown client` or advice
`reconnect: handshake` handshakes and resubscribes (from the stored cursors, so nothing
delivered-but-unstored is lost); an invalid replay id (outside the 24-hour retention) falls
back to -2 and starts a SystemModstamp backfill for the gap; network errors back off.
"""

from __future__ import annotations

import hashlib
import logging
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import redis
import sqlalchemy.exc
from simple_salesforce import format_soql
from sqlalchemy import select

from bridge import defaults, metrics
from bridge.config import OrgConfig
from bridge.errors import TransientError, UsageError
from bridge.store import Store
from bridge.store.models import SyncCursor
from bridge.streaming import inbox, stall
from bridge.streaming.bayeux import (
    AuthenticationInvalid,
    BayeuxClient,
    BayeuxError,
    InvalidReplayId,
    ServerSaysStop,
    SubscribeFailed,
    UnknownClient,
)
from bridge.streaming.events import ChangeEvent, MalformedEvent, malformed, read_message
from bridge.streaming.gaps import GapBackfills
from bridge.streaming.lease import Lease, serve_under_lease
from bridge.vocabulary import STREAMED_OBJECTS, ReplayFrom

log = logging.getLogger("sfbridge.stream")

BACKFILL_PREFIX = inbox.BACKFILL_PREFIX


class _Interrupted(Exception):
    """SIGTERM arrived while we were waiting on a long poll (nothing in hand to lose)."""


def topic_channels(org: OrgConfig) -> dict[str, str | None]:
    """Channel -> object (None until the PushTopic's query tells) for the configured topics."""
    channels: dict[str, str | None] = {}
    for name in org.streaming.topics:
        guess = name.rsplit("_", 1)[-1]
        channels[f"/topic/{name}"] = guess if guess in STREAMED_OBJECTS else None
    if org.streaming.cdc:
        for obj in STREAMED_OBJECTS:
            channels[f"/data/{obj}ChangeEvent"] = obj
    return channels


def lease_key(org_name: str, channels: list[str]) -> str:
    digest = hashlib.sha1("\n".join(sorted(channels)).encode(), usedforsecurity=False)
    return f"sfbridge:stream:{org_name}:{digest.hexdigest()[:12]}"


@dataclass
class Subscriber:
    """The subscriber of one org connection.

    `open_org()` returns a connected SalesforceOrg, `enqueue(ids)` hands stored events to the
    jobs, `backfill(sobject)` runs (or resumes) the gap backfill recorded for `sobject` until
    `stop` is set; the stream process (`bridge.processes.run_stream`) wires them.
    """

    store: Store
    redis_client: redis.Redis
    org_name: str
    org: OrgConfig
    org_connection_id: int
    open_org: Callable[[], Any]
    enqueue: Callable[[list[int]], object]
    backfill: Callable[[str], object]
    stop: threading.Event = field(default_factory=threading.Event)
    # Where a channel without a cursor starts: new events only.
    first_replay_id: int = ReplayFrom.NEW_EVENTS

    def __post_init__(self) -> None:
        self.channels = topic_channels(self.org)
        if not self.channels:
            raise UsageError(
                f"org '{self.org_name}' streams nothing: list PushTopics under "
                f"orgs.{self.org_name}.streaming.topics or set streaming.cdc: true"
            )
        key = lease_key(self.org_name, list(self.channels))
        self.lease = Lease(self.redis_client, key, defaults.LEASE_TTL_SECONDS)
        self.in_long_poll = False
        self.stored = 0
        self.offered = stall.Offered(self.redis_client, self.org_name)
        self._gaps = GapBackfills(
            self.store, self.org_connection_id, self.org.polling.overlap_seconds, self.backfill
        )
        self._skip: set[str] = set()

    # ---- process control ---------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def on_term(signum: int, _frame: FrameType | None) -> None:
            log.info(
                "stream: %s received; stopping after the current batch", signal.Signals(signum).name
            )
            self.stop.set()
            if self.in_long_poll:
                raise _Interrupted()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)

    def run(self) -> None:
        """Wait for the lease, stream while holding it; return when asked to stop."""
        serve_under_lease(
            self.lease,
            self.stop,
            self.serve,
            f"org '{self.org_name}' ({len(self.channels)} channels)",
        )
        self._gaps.join()

    def serve(self) -> None:
        """Stream while the lease (taken by the caller, who renews it) is held; return when
        stopped, when the lease is lost, or when the org cannot be reached at start."""
        try:
            self._stream()
        except _Interrupted:
            pass
        except TransientError as exc:
            # The org is unreachable at start: give the lease up and try again shortly.
            log.warning(
                "stream: cannot reach org '%s' (%s); trying again", self.org_name, exc.message
            )
            self._pause(3)

    # ---- streaming --------------------------------------------------------------------------

    def _stream(self) -> None:
        sforg = self.open_org()
        self._learn_topic_objects(sforg)
        url = f"{sforg.instance_url}/cometd/{sforg.api_version}"
        client = BayeuxClient(url, sforg.streaming_session(), lambda: str(sforg.access_token))
        self._gaps.resume()
        need_auth = False
        need_handshake = True
        attempt = 0
        try:
            while not self.stop.is_set() and not self.lease.lost.is_set():
                try:
                    if need_auth:
                        sforg.reauthenticate()
                        need_auth = False
                    if need_handshake:
                        # Messages the last answer delivered stay queued in the client and are
                        # stored first; the resubscription replays them too (absorbed).
                        client.handshake()
                        self._subscribe_all(client)
                        need_handshake = False
                    messages, pipe = self._long_poll(client)
                    started = time.monotonic()
                    if messages:
                        self._store(messages, pipe)
                    else:
                        stall.send(pipe)
                    took = time.monotonic() - started
                    if took > defaults.RECONNECT_WINDOW_SECONDS * 0.75:
                        log.warning(
                            "stream: storing a batch took %.1fs (Salesforce forgets a "
                            "client after 40s); expect a re-handshake",
                            took,
                        )
                    attempt = 0
                    if client.advice.interval_ms:
                        self.stop.wait(client.advice.interval_ms / 1000)
                except AuthenticationInvalid:
                    log.info("stream: authentication invalid; re-authenticating")
                    need_auth = need_handshake = True
                    self._pause(attempt)
                    attempt += 1
                except UnknownClient as exc:
                    log.info("stream: server forgot the client (%s); handshaking again", exc.error)
                    need_handshake = True
                    self.stop.wait(client.advice.interval_ms / 1000)
                except ServerSaysStop as exc:
                    log.warning(
                        "stream: server advised no reconnect (%s); retrying later", exc.error
                    )
                    need_handshake = True
                    self._pause(max(attempt, 3))
                    attempt += 1
                except (BayeuxError, TransientError) as exc:
                    log.warning("stream: %s; retrying", getattr(exc, "error", None) or exc)
                    need_handshake = need_handshake or isinstance(exc, BayeuxError)
                    self._pause(attempt)
                    attempt += 1
                except (UsageError, _Interrupted):
                    raise
                except Exception:  # noqa: BLE001 - e.g. the database is briefly unavailable
                    # Nothing of this delivery was acknowledged: start over from the cursors.
                    log.exception("stream: unexpected failure; resubscribing from the cursors")
                    need_handshake = True
                    self._pause(max(attempt, 2))
                    attempt += 1
        finally:
            self.in_long_poll = False
            client.disconnect()

    def _long_poll(self, client: BayeuxClient) -> tuple[list[dict[str, Any]], Any]:
        """The next delivery, and a pipeline holding its answer's API call count, which the
        delivery's stall notes join: one Redis round trip for both, not two."""
        pipe = self.redis_client.pipeline()
        self.in_long_poll = True
        try:
            with metrics.counted_on(pipe):
                messages = client.connect()
        except BaseException:
            stall.send(pipe)  # the answer was counted all the same
            raise
        finally:
            self.in_long_poll = False
        return messages, pipe

    def _pause(self, attempt: int) -> None:
        waits = defaults.RETRY_BACKOFF_SECONDS
        self.stop.wait(waits[min(attempt, len(waits) - 1)])

    def _learn_topic_objects(self, sforg: Any) -> None:
        """Ask the org which object each PushTopic watches (one query per start)."""
        names = [c.removeprefix("/topic/") for c in self.channels if c.startswith("/topic/")]
        if not names:
            return
        soql = format_soql("SELECT Name, Query FROM PushTopic WHERE Name IN {}", names)
        try:
            result = sforg.call(sforg.sf.query_all, soql)
        except Exception as exc:  # noqa: BLE001 - only an optimisation; the id prefix also tells
            log.info("stream: could not read the PushTopics (%s); using their names", exc)
            return
        found = set()
        for rec in result.get("records", []):
            match = re.search(r"\bFROM\s+(\w+)", str(rec.get("Query", "")), re.IGNORECASE)
            if match:
                self.channels[f"/topic/{rec['Name']}"] = match.group(1)
                found.add(rec["Name"])
        missing = sorted(set(names) - found)
        if missing:
            raise UsageError(
                f"PushTopic(s) {', '.join(missing)} do not exist in org '{self.org_name}': "
                "run `sfbridge org topics --apply`"
            )

    def _subscribe_all(self, client: BayeuxClient) -> None:
        with self.store.session() as session:
            cursors = {
                c.channel: c
                for c in session.scalars(
                    select(SyncCursor).where(SyncCursor.org_connection_id == self.org_connection_id)
                )
            }
        for channel in self.channels:
            if channel in self._skip:
                continue
            cursor = cursors.get(channel)
            if cursor is None:
                replay_id = self.first_replay_id
            elif cursor.replay_id is None:
                # Subscribed before but no event stored yet: replay all that is retained, so
                # events sent while we were down are not skipped (extras are harmless).
                replay_id = ReplayFrom.ALL_RETAINED
            else:
                replay_id = cursor.replay_id
            try:
                client.subscribe(channel, replay_id)
            except InvalidReplayId as exc:
                log.warning(
                    "stream: %s: replay id %s is no longer retained (%s); replaying "
                    "what is retained (-2) and backfilling the gap by SystemModstamp",
                    channel,
                    replay_id,
                    exc.error,
                )
                self._start_gap_backfill(channel, cursor)
                client.subscribe(channel, ReplayFrom.ALL_RETAINED)
            except SubscribeFailed as exc:
                if channel.startswith("/data/"):
                    log.warning(
                        "stream: the org does not offer %s (%s); skipping it", channel, exc.error
                    )
                    self._skip.add(channel)
                    continue
                raise UsageError(f"cannot subscribe to {channel}: {exc.error}") from None
            if cursor is None:
                with self.store.session() as session:
                    inbox.mark_subscribed(session, self.org_connection_id, channel)

    def _store(self, messages: list[dict[str, Any]], pipe: Any = None) -> None:
        offered = self.offered.mark(messages, pipe)
        events: list[ChangeEvent] = []
        objects = self._objects()
        for message in messages:
            read = read_message(message, objects)
            for ev in read:
                if ev.error:
                    log.warning("stream: unreadable event stored for review: %s", ev.error)
            events.extend(read)
        if not events:
            self.offered.clear(offered)
            return
        try:
            # First among the writers (on SQLite a worker waiting for its turn lets it go
            # before): Salesforce's events are acknowledged only once stored.
            with self.store.session(first_turn=True) as session:
                new_ids = inbox.store_and_advance(session, self.org_connection_id, events)
        except sqlalchemy.exc.DBAPIError as exc:
            if exc.connection_invalidated or isinstance(exc, sqlalchemy.exc.OperationalError):
                raise  # the database is away: nothing acknowledged, start over from the cursors
            # The database refused something a check let through: store event by event, the
            # refused ones as malformed, so one bad event cannot stall the channel.
            log.warning("stream: the database refused a delivery (%s); storing one by one", exc)
            new_ids = self._store_one_by_one(events)
        self.offered.clear(offered)
        self.stored += len(new_ids)
        log.info("stream: stored %d new event(s) of %d delivered", len(new_ids), len(events))
        if new_ids:
            self.enqueue(new_ids)

    def _store_one_by_one(self, events: list[ChangeEvent]) -> list[int]:
        new_ids: list[int] = []
        with self.store.session(first_turn=True) as session:
            for ev in events:
                try:
                    with session.begin_nested():
                        new_ids += inbox.store_and_advance(session, self.org_connection_id, [ev])
                except sqlalchemy.exc.DBAPIError as exc:
                    refused = malformed(
                        {"channel": ev.channel, "data": {"event": {"replayId": ev.replay_id}},
                         "refused": ev.payload},
                        MalformedEvent(f"the database refused the event: {exc.orig}"),
                    )  # fmt: skip
                    new_ids += inbox.store_and_advance(session, self.org_connection_id, [refused])
        return new_ids

    def _objects(self) -> dict[str, str]:
        return {c: o for c, o in self.channels.items() if o}

    # ---- gap backfill -----------------------------------------------------------------------

    def _start_gap_backfill(self, channel: str, cursor: SyncCursor | None) -> None:
        sobject = self.channels.get(channel)
        if not sobject:
            log.error("stream: cannot backfill %s: unknown object", channel)
            return
        since = cursor.modstamp if cursor and cursor.modstamp else None
        self._gaps.start(sobject, since, channel)
