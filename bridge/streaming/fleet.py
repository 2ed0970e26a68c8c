"""`sfbridge stream` for a fleet: one process streams every org it holds a lease for.

Each org is one *org stream* (today the Bayeux `Subscriber`; a Pub/Sub subscriber plugs in
through the same factory), served in its own thread while this process holds the org's lease.
The fleet's own loop, in the main thread, does the rest for all of them:

- every `FLEET_ROUND_SECONDS` it tries to take the lease of each configured org it does not
  serve, as long as it serves fewer than `stream.capacity` orgs, and starts the org's stream;
- every third of the lease TTL it renews the leases it holds (one loop for all orgs, not a
  renewal thread each); a lease another process took stops that org's stream here;
- every `FLEET_CONFIG_EVERY_SECONDS` it reads the config file again if it changed (its
  modification time and size): a new org is picked up,
  a removed one stopped, a changed one restarted — no restart of the process;
- an org stream that ends (the org unreachable, a PushTopic missing) gives its lease back and
  is tried again after `FLEET_RETRY_SECONDS`, without disturbing the others.

Several processes, on one machine or several, share the orgs this way: each org has exactly
one holder; when a process dies its leases lapse after `LEASE_TTL_SECONDS` and the others take
its orgs over, resuming from the stored cursors. All org streams of a process share one
database engine (its pool) and one Redis client.

Why threads (not asyncio): the org stream is the synchronous Bayeux client on `requests`
(docs/inbound.md says why) and the gap backfill already runs in a thread; a thread per served
org costs little memory (measured by scripts/bench_stream_fleet) and keeps one client for
`--org` and fleet mode. A waiting org costs no thread: only the fleet loop's lease attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import redis

from bridge import defaults
from bridge.config import BridgeConfig, OrgConfig
from bridge.errors import BridgeError
from bridge.streaming.lease import Lease

log = logging.getLogger("sfbridge.stream")


class OrgStream(Protocol):
    """What the fleet runs for one org (the Bayeux or the Pub/Sub subscriber, with its
    safety-net poll: `bridge.processes.OrgOnStream`)."""

    @property
    def lease(self) -> Lease: ...

    @property
    def stop(self) -> threading.Event:
        """Set to stop this org's stream (the fleet's own stop, a lost lease, a config change)."""

    @property
    def in_long_poll(self) -> bool:
        """Waiting on the server with nothing unacknowledged in hand (no need to wait for it)."""

    def serve(self) -> None:
        """Stream while the lease (already taken) is held; return when stopped or lost."""


#: Builds the org stream of one org (None: the org cannot stream yet, e.g. not connected).
StreamFactory = Callable[[str, OrgConfig], OrgStream | None]


class Handoff:
    """The events every org stream of the process stored, handed to the workers together.

    Sent as soon as a worker can take them: at once, by the org stream that stored them, when
    no job of ours still waits in the inbound queue (`waiting()`, one LLEN); while one does
    (the workers are busy), the ids that arrive are held and `run()` sends them together once
    it is taken, when `BATCH_SIZE` of them are in hand, or after `HANDOFF_SECONDS` at most. So
    200 orgs with a change each make one job when the workers are busy, not 200, and a change
    at a trickle is not held back at all (a fixed 50 ms window used to add 25 ms to every
    entry at 200 events/s); nor does it wake the hand-off's thread, which cost the stream
    process ~0.5–1 ms of CPU per delivery (docs/inbound.md). The ids are committed before they
    get here; ids lost with a killed process are `new` in the store and the sweeper enqueues
    them."""

    def __init__(
        self, send: Callable[[list[int]], object], waiting: Callable[[], int] = lambda: 0
    ) -> None:
        self.send = send
        self.waiting = waiting
        self._ids: list[int] = []
        self._lock = threading.Lock()
        self._arrived = threading.Event()
        self._full = threading.Event()

    def add(self, ids: list[int]) -> None:
        with self._lock:
            self._ids.extend(ids)
            if len(self._ids) >= defaults.BATCH_SIZE:
                self._full.set()
            if self._arrived.is_set():
                return  # held: they go with the others
        if self._workers_busy():
            with self._lock:
                if self._ids:
                    self._arrived.set()  # held until a worker takes the waiting job
            return
        self._send()

    def flush(self) -> None:
        with self._lock:
            ids, self._ids = self._ids, []
            self._arrived.clear()
            self._full.clear()
        if ids:
            self.send(ids)

    def _workers_busy(self) -> bool:
        try:
            return self.waiting() > 0
        except redis.RedisError:
            return False  # the send will tell (and the sweeper covers it)

    def _send(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - the ids are stored: the sweeper enqueues them
            log.exception("stream: handing events to the workers failed")

    def run(self, stop: threading.Event) -> None:
        """Send the held ids once the waiting job is taken (asked again after the first
        pause: `add` just found it waiting), a batch is full, or the period is over."""
        while not stop.is_set():
            if not self._arrived.wait(defaults.HANDOFF_SECONDS):
                continue
            held_until = time.monotonic() + defaults.HANDOFF_SECONDS
            pause, longest = defaults.HANDOFF_RECHECK_SECONDS
            while not stop.is_set():
                remaining = held_until - time.monotonic()
                if remaining <= 0 or self._full.wait(min(pause, remaining)):
                    break
                if not self._workers_busy():
                    break
                pause = min(pause * 2, longest)
            self._send()
        self.flush()


@dataclass
class _Served:
    stream: OrgStream
    config: OrgConfig
    thread: threading.Thread


@dataclass
class Fleet:
    """The org streams of one process (see the module docstring)."""

    build: StreamFactory
    #: the config file again, or None when it has not changed since the last call
    load_config: Callable[[], BridgeConfig | None]
    config: BridgeConfig
    stop: threading.Event = field(default_factory=threading.Event)
    served: dict[str, _Served] = field(default_factory=dict)
    #: org -> monotonic time before which it is not tried again (ended, or cannot stream)
    _later: dict[str, float] = field(default_factory=dict)
    #: built org streams whose lease another process holds (built once, tried every round)
    _waiting: dict[str, OrgStream] = field(default_factory=dict)

    @property
    def capacity(self) -> int:
        return self.config.stream.capacity

    def run(self) -> None:
        """Serve orgs until `stop` is set, then stop every org stream and give the leases back."""
        log.info(
            "stream: fleet of up to %d org(s); %d configured", self.capacity, len(self.config.orgs)
        )
        next_renewal = next_config = time.monotonic()
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                self._reap()
                if now >= next_config:
                    self._reload()
                    next_config = now + defaults.FLEET_CONFIG_EVERY_SECONDS
                if now >= next_renewal:
                    self._renew()
                    next_renewal = now + defaults.LEASE_TTL_SECONDS * defaults.LEASE_RENEW_FRACTION
                self._take_free_orgs()
                self.stop.wait(defaults.FLEET_ROUND_SECONDS)
        finally:
            self._stop_all()

    # ---- one round --------------------------------------------------------------------------

    def _held_elsewhere(self) -> set[str]:
        """The waiting orgs whose lease is held, in one round trip (MGET), so a round costs
        one Redis call however many orgs other processes serve."""
        if len(self.served) >= self.capacity or not self._waiting:
            return set()
        names = list(self._waiting)
        client = self._waiting[names[0]].lease.client
        try:
            values = client.mget([self._waiting[n].lease.key for n in names])
        except redis.RedisError:
            return set()  # each acquire below says what is wrong
        return {n for n, v in zip(names, values, strict=True) if v is not None}

    def _take_free_orgs(self) -> None:
        now = time.monotonic()
        held = self._held_elsewhere()
        for name, org in self.config.orgs.items():
            if len(self.served) >= self.capacity or self.stop.is_set():
                return
            if name in self.served or name in held or self._later.get(name, 0) > now:
                continue
            stream = self._waiting.get(name)
            if stream is None:
                try:
                    stream = self.build(name, org)
                except BridgeError as exc:
                    log.warning("stream: org '%s' cannot stream: %s", name, exc.message)
                    stream = None
                if stream is None:
                    self._later[name] = now + defaults.FLEET_RETRY_SECONDS
                    continue
            if not stream.lease.acquire():
                if name not in self._waiting:
                    log.info(
                        "stream: org '%s' is served by %s; waiting", name, stream.lease.holder()
                    )
                self._waiting[name] = stream  # another process serves it
                continue
            self._waiting.pop(name, None)
            thread = threading.Thread(
                target=self._serve, args=(name, stream), name=f"stream-{name}", daemon=True
            )
            self.served[name] = _Served(stream, org, thread)
            log.info("stream: lease taken for org '%s' (%d served)", name, len(self.served))
            thread.start()

    def _serve(self, name: str, stream: OrgStream) -> None:
        try:
            stream.serve()
        except BridgeError as exc:
            log.error("stream: org '%s' stopped: %s", name, exc.message)
        except Exception:  # noqa: BLE001 - one org's failure must not end the others
            log.exception("stream: org '%s' stopped on an unexpected failure", name)

    def _reap(self) -> None:
        """Org streams that ended: give their lease back, try them again later."""
        for name, served in list(self.served.items()):
            if served.thread.is_alive():
                continue
            served.stream.lease.release()
            del self.served[name]
            if not self.stop.is_set() and not served.stream.stop.is_set():
                self._later[name] = time.monotonic() + defaults.FLEET_RETRY_SECONDS
            log.info("stream: org '%s' released (%d served)", name, len(self.served))

    def _renew(self) -> None:
        for name, served in self.served.items():
            if not served.stream.lease.renew():
                log.warning("stream: org '%s' was taken over; stopping it here", name)
                served.stream.stop.set()

    def _reload(self) -> None:
        try:
            fresh = self.load_config()
        except BridgeError as exc:
            log.warning("stream: the config cannot be read (%s); keeping the last one", exc)
            return
        if fresh is None:
            return
        for name, served in self.served.items():
            if fresh.orgs.get(name) != served.config:
                log.info("stream: org '%s' was changed or removed in the config; stopping", name)
                served.stream.stop.set()
        for name in list(self._waiting):
            if fresh.orgs.get(name) != self.config.orgs.get(name):
                del self._waiting[name]
        added = sorted(set(fresh.orgs) - set(self.config.orgs))
        if added:
            log.info("stream: new org(s) in the config: %s", ", ".join(added))
            for name in added:
                self._later.pop(name, None)
        self.config = fresh

    def _stop_all(self) -> None:
        for served in self.served.values():
            served.stream.stop.set()
        for name, served in list(self.served.items()):
            # A thread in a long poll holds nothing unacknowledged: don't wait for it.
            if not served.stream.in_long_poll:
                served.thread.join(timeout=defaults.FLEET_STOP_WAIT_SECONDS)
            served.stream.lease.release()
            del self.served[name]
        log.info("stream: every lease released")
