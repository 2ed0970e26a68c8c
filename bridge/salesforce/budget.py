"""The API budget of each org: its daily API usage, and the guard that slows work that can wait.

Where the usage comes from (Salesforce REST API Developer Guide):

- the `Sforce-Limit-Info` response header, "returned in each request to REST API": ``api-usage=
  10018/100000`` — calls used in the last 24 hours / the org's daily allocation (it may also
  carry ``api-bursts=1/750``, and usage may pass the allocation while bursts last)
  (developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_api_usage.htm);
  `SalesforceOrg` reads it from every response (`api_usage`), and the call counter of the
  long-running processes (`bridge.metrics`) records it in Redis for the others;
- the `limits` resource (``/services/data/vXX.X/limits``): ``DailyApiRequests`` ``Max`` and
  ``Remaining`` (…/api_rest/resources_limits.htm), read when nothing newer is known.

The guard: above `api_budget.share` of the allocation (default 80 %), work that can wait —
polling rounds and backfill pages — is slowed (`api_budget.slow_factor`, default 10× the
interval); live streaming (the long poll is not an API call) and user-initiated writes go on.
Crossing the share notifies the admins once (a Redis flag per org, cleared when usage falls
back under the share), whichever process notices first.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

log = logging.getLogger(__name__)

USAGE_KEY = "sfbridge:api_usage"
"""Redis hash: org name -> ``used/allocation/epoch seconds`` of the newest reading."""
OVER_KEY = "sfbridge:api_budget:over:"
"""Redis flag per org, set while its usage is over the share (one notification per crossing)."""

_API_USAGE = re.compile(r"(?:^|[;,\s])api-usage=(\d+)/(\d+)")


@dataclass(frozen=True)
class ApiUsage:
    """One reading of an org's daily API usage."""

    used: int
    allocation: int
    at: float  # epoch seconds of the reading

    @property
    def share(self) -> float:
        return self.used / self.allocation if self.allocation > 0 else 0.0

    def over(self, share: float) -> bool:
        return self.allocation > 0 and self.share >= share

    def words(self) -> str:
        return f"{self.used:,} of {self.allocation:,} daily API calls ({self.share:.0%})"


def from_header(value: str | None, at: float | None = None) -> ApiUsage | None:
    """The reading in a `Sforce-Limit-Info` header value (None without ``api-usage``)."""
    match = _API_USAGE.search(value or "")
    if not match:
        return None
    return ApiUsage(int(match.group(1)), int(match.group(2)), time.time() if at is None else at)


def from_limits(body: Mapping[str, Any], at: float | None = None) -> ApiUsage | None:
    """The reading in a `limits` resource answer (``DailyApiRequests``)."""
    daily = body.get("DailyApiRequests")
    if not isinstance(daily, Mapping):
        return None
    try:
        allocation, remaining = int(daily["Max"]), int(daily["Remaining"])
    except (KeyError, TypeError, ValueError):
        return None
    return ApiUsage(allocation - remaining, allocation, time.time() if at is None else at)


def newest(*readings: ApiUsage | None) -> ApiUsage | None:
    known = [r for r in readings if r is not None]
    return max(known, key=lambda r: r.at) if known else None


# ---- shared through Redis ---------------------------------------------------------------------


def record(client: redis.Redis, org: str, usage: ApiUsage) -> None:
    client.hset(USAGE_KEY, org, encode(usage))


def encode(usage: ApiUsage) -> str:
    return f"{usage.used}/{usage.allocation}/{usage.at:.3f}"


def _decode(raw: Any) -> ApiUsage | None:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    try:
        used, allocation, at = text.split("/")
        return ApiUsage(int(used), int(allocation), float(at))
    except ValueError:
        return None


def read(client: redis.Redis, org: str) -> ApiUsage | None:
    raw = client.hget(USAGE_KEY, org)
    return _decode(raw) if raw is not None else None


def read_all(client: redis.Redis) -> dict[str, ApiUsage]:
    out = {}
    for org, raw in client.hgetall(USAGE_KEY).items():
        usage = _decode(raw)
        if usage is not None:
            out[org.decode() if isinstance(org, bytes) else str(org)] = usage
    return out


def crossed(client: redis.Redis, org: str, usage: ApiUsage, share: float) -> bool:
    """True exactly once per crossing of `share` (across processes); False otherwise. Falling
    back under the share re-arms it."""
    key = OVER_KEY + org
    if usage.over(share):
        return bool(client.set(key, usage.words(), nx=True, ex=2 * 86400))
    client.delete(key)
    return False


# ---- the guard --------------------------------------------------------------------------------


def deferrable_wait(usage: ApiUsage | None, share: float, base: float, slow_factor: int) -> float:
    """How long work that can wait (a poll round, a backfill page) waits before it runs:
    `base`, or `base` × `slow_factor` while the org is over its budget. Pure."""
    if usage is not None and usage.over(share):
        return base * slow_factor
    return base
