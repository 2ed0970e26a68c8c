"""What the jobs of one worker process share: store, config, vault, Redis and the open orgs.

The worker process sets it once (`set_context`) before it takes jobs, the way Flask's Celery
pattern runs every task inside the app's context; every job, inbound or outbound, reads it
with `current()`. A job run by some other rq worker builds it from the environment on first
use. Tests set a context of their own (a stand-in `open_org`, their store) and unset it after.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis

from bridge import orgs
from bridge.config import BridgeConfig, OrgConfig
from bridge.runtime import Runtime
from bridge.store import Store
from bridge.vault import Vault

log = logging.getLogger(__name__)

OpenOrg = Callable[[str, OrgConfig], Any]


@dataclass
class WorkerContext:
    """One per worker process: one store engine, one config, one login per org."""

    store: Store
    config: BridgeConfig
    vault: Vault | None = None
    redis: redis.Redis | None = None
    open_org: OpenOrg | None = None  # (name, OrgConfig) -> org; default: bridge.orgs.open_org
    takes_inbound: bool = True
    """Whether this process's worker takes inbound jobs too: then a drain waits for its window
    without holding them up (`bridge.writeback.jobs`); in a worker of its own it just waits."""
    _orgs: dict[str, tuple[datetime | None, Any]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_runtime(cls, rt: Runtime, *, with_redis: bool = True) -> WorkerContext:
        return cls(
            store=rt.store, config=rt.config, vault=rt.vault, redis=rt.redis if with_redis else None
        )

    def org(self, name: str, version: datetime | None = None) -> Any:
        """The org of connection `name`, logged in once per process and connection version.

        `version` is the connection's `updated_at`: `sfbridge org connect` changes it, so a
        re-connect is picked up by the next job of either family; the org's `call`
        re-authenticates by itself when its token expires.
        """
        with self._lock:
            cached = self._orgs.get(name)
            if cached is not None and cached[0] == version:
                return cached[1]
            org_config = self.config.orgs[name]
            if self.open_org is not None:
                opened = self.open_org(name, org_config)
            else:
                assert self.vault is not None, "a context that opens orgs needs the vault"
                opened = orgs.open_org(self.store, self.vault, name, org_config)
            self._orgs[name] = (version, opened)
        if cached is not None:
            log.info("connection %s changed: using the new one", name)
            _close(cached[1])
        return opened

    def forget_orgs(self) -> None:
        """Drop the open orgs without closing them (a forked child must not share sockets)."""
        with self._lock:
            self._orgs.clear()


def _close(org: Any) -> None:
    close = getattr(org, "close", None)
    if close is not None:
        close()


_context: WorkerContext | None = None
_context_lock = threading.Lock()


def set_context(ctx: WorkerContext | None) -> None:
    """Set (or, with None, unset) the context of this process's jobs."""
    global _context
    with _context_lock:
        _context = ctx


def current() -> WorkerContext:
    """The context of this process's jobs, built from the environment if none was set."""
    global _context
    with _context_lock:
        if _context is None:
            _context = WorkerContext.from_runtime(Runtime.from_env(), with_redis=False)
        return _context
