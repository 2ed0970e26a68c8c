"""One active subscriber per org channel set: a lease in Redis (SET NX PX, renewed).

The lease is for efficiency, not safety: if two subscribers ever overlap (a paused holder whose
lease lapsed), inserts are idempotent and cursors only move forward, so nothing is stored twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable

import redis

from bridge import defaults

log = logging.getLogger(__name__)

# Renew or release only if the lease is still ours (compare-and-set on the token).
_RENEW = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not v then
  if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """A named lease held by this process; `lost` is set when someone else holds it."""

    def __init__(self, client: redis.Redis, key: str, ttl_seconds: float):
        self.client = client
        self.key = key
        self.ttl_ms = max(int(ttl_seconds * 1000), 100)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held = False
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def holder(self) -> str | None:
        try:
            value = self.client.get(self.key)
        except redis.RedisError:
            return None
        return value.decode() if isinstance(value, bytes) else value

    def acquire(self) -> bool:
        """Take the lease if it is free (or already ours)."""
        try:
            if self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
                self.held = True
            else:
                self.held = bool(self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms))
        except redis.RedisError as exc:
            log.warning("lease %s: Redis unavailable (%s); will try again", self.key, exc)
            self.held = False
        if self.held:
            self.lost.clear()
        return self.held

    def renew(self) -> bool:
        """Extend the lease; re-takes it if Redis lost it (restart) and nobody else took it."""
        try:
            ok = bool(self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms))
        except redis.RedisError as exc:
            # We cannot tell; nobody else can take it either while Redis is down.
            log.warning("lease %s: renewal failed (%s); still streaming", self.key, exc)
            return True
        if not ok:
            log.warning("lease %s: taken over by %s; stopping", self.key, self.holder())
            self.held = False
            self.lost.set()
        return ok

    def start_renewing(self) -> None:
        self._stop.clear()
        interval = self.ttl_ms / 1000 * defaults.LEASE_RENEW_FRACTION

        def loop() -> None:
            while not self._stop.wait(interval):
                if not self.renew():
                    return

        self._thread = threading.Thread(target=loop, name="lease-renewal", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if not self.held:
            return
        try:
            self.client.eval(_RELEASE, 1, self.key, self.token)
        except redis.RedisError as exc:
            log.warning("lease %s: could not release (%s); it lapses by itself", self.key, exc)
        self.held = False


def serve_under_lease(
    lease: Lease, stop: threading.Event, serve: Callable[[], None], what: str
) -> None:
    """Wait for `lease`, run `serve` while holding it (renewed meanwhile), release it; again
    until `stop` is set. `what` names what is streamed, for the log."""
    waiting_logged = False
    while not stop.is_set():
        if not lease.acquire():
            if not waiting_logged:
                log.info("stream: another subscriber holds the lease (%s); waiting", lease.holder())
                waiting_logged = True
            stop.wait(defaults.LEASE_WAIT_SECONDS)
            continue
        waiting_logged = False
        log.info("stream: lease taken for %s", what)
        lease.start_renewing()
        try:
            serve()
        finally:
            lease.release()
            log.info("stream: lease released")
