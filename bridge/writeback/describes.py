"""The org's field rules (`fit.field_rules` of its describe), cached per org and object.

The API checks input against them before saving a push, so it must not call Salesforce on
every request: a process keeps what it read for DESCRIBE_CACHE_SECONDS, and shares it through
Redis (key `sfbridge:describe:<org>:<object>`) with the other web workers. When the org cannot
be read (not connected yet, Salesforce down) the rules are unknown: the check is skipped and
the push carries Salesforce's own answer instead — input is never refused for our outage.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from bridge import defaults
from bridge.writeback.fit import field_rules

log = logging.getLogger(__name__)

KEY = "sfbridge:describe:{org}:{sobject}"
Rules = dict[str, dict[str, Any]]
RETRY_AFTER = 60.0  # seconds before a describe that could not be read is tried again


class Describes:
    def __init__(self, client: redis.Redis | None, open_org: Callable[[str], Any]):
        self.client = client
        self.open_org = open_org  # org name -> a connected org (`.sf`, `.call`)
        self._local: dict[tuple[str, str], tuple[float, Rules]] = {}
        self._orgs: dict[str, Any] = {}
        self._failed: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def cached(self, org: str, sobject: str) -> Rules | None:
        """The rules already read (this process or Redis), without calling the org: safe
        inside a database transaction."""
        now = time.monotonic()
        with self._lock:
            cached = self._local.get((org, sobject))
        if cached is not None and now - cached[0] < defaults.DESCRIBE_CACHE_SECONDS:
            return cached[1]
        rules = self._from_redis(KEY.format(org=org, sobject=sobject))
        if rules is not None:
            with self._lock:
                self._local[(org, sobject)] = (now, rules)
        return rules

    def rules(self, org: str, sobject: str) -> Rules | None:
        """The field rules of `sobject` in `org`, read from the org when not cached; None when
        they cannot be read now. Opens the org (and its stored connection): call it outside
        any open transaction (on SQLite a second writer would wait for the first)."""
        now = time.monotonic()
        found = self.cached(org, sobject)
        if found is not None:
            return found
        if (org, sobject) in self._failed and now - self._failed[(org, sobject)] < RETRY_AFTER:
            return None  # read failed a moment ago: do not make every request wait for it
        try:
            connected = self._orgs.get(org) or self.open_org(org)
            self._orgs[org] = connected
            describe = connected.call(lambda: getattr(connected.sf, sobject).describe())
            rules = field_rules(describe)
        except Exception as exc:  # unknown rules: Salesforce judges the push instead
            log.warning("cannot read the describe of %s in org %s: %s", sobject, org, exc)
            self._failed[(org, sobject)] = now
            return None
        self._to_redis(KEY.format(org=org, sobject=sobject), rules)
        with self._lock:
            self._local[(org, sobject)] = (now, rules)
        return rules

    def _from_redis(self, key: str) -> Rules | None:
        if self.client is None:
            return None
        try:
            raw = self.client.get(key)
        except redis.RedisError:
            return None
        return json.loads(raw) if raw else None

    def _to_redis(self, key: str, rules: Rules) -> None:
        if self.client is None:
            return
        with contextlib.suppress(redis.RedisError):  # a cache: the next request reads the org
            self.client.set(key, json.dumps(rules), ex=int(defaults.DESCRIBE_CACHE_SECONDS))
