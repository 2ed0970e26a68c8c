"""Latency profiles: how long the local org takes to answer, so benchmarks show what users of
a real org will see.

`zero` (the default) answers as fast as the machine can; `realistic` draws every delay from a
log-normal distribution (median and 95th percentile, clamped to a minimum and a maximum) per
kind of call. The figures and what they rest on are in docs/devorg.md ("Latency"); most are
estimates from widely reported measurements, not Salesforce guarantees.

`sfbridge devorg --latency realistic` sets the profile at start; `POST /__devorg__/latency`
changes it at run time, per kind of call or per path prefix; `POST /__devorg__/reset` puts the
start profile back. The HTTP middleware delays OAuth and REST requests; the streaming side
asks `stream_delay()` how long a committed event takes to reach subscribers; a Bulk API job
asks `bulk_job_seconds(records)` how long it runs.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

Z95 = 1.6449  # the 95th percentile of the standard normal distribution


@dataclass(frozen=True)
class Distribution:
    """A delay: log-normal with this median and 95th percentile, clamped to [min, max]."""

    min_ms: float
    median_ms: float
    p95_ms: float
    max_ms: float

    def sample(self, rnd: random.Random) -> float:
        """One delay, in seconds."""
        if self.median_ms <= 0:
            return max(self.min_ms, 0.0) / 1000
        sigma = math.log(self.p95_ms / self.median_ms) / Z95 if self.p95_ms > self.median_ms else 0
        value = self.median_ms * math.exp(sigma * rnd.gauss(0.0, 1.0))
        return min(max(value, self.min_ms), self.max_ms) / 1000

    @classmethod
    def parse(cls, body: Any, base: Distribution | None = None, where: str = "") -> Distribution:
        if not isinstance(body, dict) or set(body) - {"min_ms", "median_ms", "p95_ms", "max_ms"}:
            raise ValueError(f"{where}: give min_ms, median_ms, p95_ms and/or max_ms")
        start = asdict(base) if base is not None else {"min_ms": 0.0, "median_ms": 0.0}
        try:
            values = {k: float(v) for k, v in {**start, **body}.items()}
        except (TypeError, ValueError):
            raise ValueError(f"{where}: the values must be numbers of milliseconds") from None
        values.setdefault("p95_ms", values["median_ms"])
        values.setdefault("max_ms", max(values["p95_ms"], values["min_ms"]) * 4)
        if "p95_ms" not in body and "median_ms" in body and base is not None:
            # a new median keeps the old spread
            values["p95_ms"] = values["median_ms"] * base.p95_ms / max(base.median_ms, 1e-9)
        if not 0 <= values["min_ms"] <= values["max_ms"] or values["p95_ms"] < values["median_ms"]:
            raise ValueError(f"{where}: need 0 <= min_ms <= max_ms and median_ms <= p95_ms")
        return cls(**values)


# Kinds of call ("classes") and their delays in the realistic profile; docs/devorg.md says what
# each figure rests on.
REALISTIC: dict[str, Distribution] = {
    # token requests (JWT bearer, refresh): login is heavier than a data call
    "oauth": Distribution(min_ms=80, median_ms=250, p95_ms=700, max_ms=5000),
    # one record read/written, describe, limits: trust.salesforce.com's average server time
    # (well under 300 ms) plus a same-continent round trip
    "rest": Distribution(min_ms=40, median_ms=110, p95_ms=350, max_ms=5000),
    "query": Distribution(min_ms=50, median_ms=150, p95_ms=500, max_ms=10000),
    # sObject Collections and composite of up to 200 records
    "composite": Distribution(min_ms=150, median_ms=450, p95_ms=1500, max_ms=20000),
    # a committed change reaching a Streaming API subscriber
    "stream": Distribution(min_ms=200, median_ms=600, p95_ms=1500, max_ms=10000),
    # a Bulk API 2.0 job: queued before it starts, then per 10,000-record batch
    "bulk_queue": Distribution(min_ms=1000, median_ms=4000, p95_ms=20000, max_ms=120000),
    "bulk_batch": Distribution(min_ms=2000, median_ms=10000, p95_ms=60000, max_ms=600000),
}
PROFILES: dict[str, dict[str, Distribution]] = {"zero": {}, "realistic": REALISTIC}
CLASSES = tuple(REALISTIC)


def route_class(path: str) -> str | None:
    """The kind of call a request path is; None for paths latency never applies to."""
    if path.startswith("/services/oauth2/") or path.startswith("/id/"):
        return "oauth" if path.startswith("/services/oauth2/token") else "rest"
    if not path.startswith("/services/data"):
        return None  # the control API, and /cometd (its delay is the delivery's)
    tail = path.split("/", 4)[4] if path.count("/") >= 4 else ""
    if tail.startswith(("query", "queryAll")):
        return "query"
    if tail.startswith("composite"):
        return "composite"
    return "rest"


class Latency:
    def __init__(self) -> None:
        self.default = "zero"
        self._random = random.Random()
        self.reset()

    def set_default(self, name: str) -> None:
        """The profile the org starts with (`--latency`) and returns to on reset."""
        if name not in PROFILES:
            raise ValueError(f"unknown latency profile {name!r}: {', '.join(PROFILES)}")
        self.default = name
        self.reset()

    def reset(self) -> None:
        self.profile = self.default
        self.classes: dict[str, Distribution] = dict(PROFILES[self.default])
        self.paths: dict[str, Distribution] = {}

    @property
    def active(self) -> bool:
        return bool(self.classes or self.paths)

    def configure(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{"profile": "realistic", "classes": {"rest": {"median_ms": 300}}, "paths":
        {"/services/data/v63.0/sobjects/Lead": {"min_ms": 500, ...}}, "seed": 7}`."""
        unknown = set(body) - {"profile", "classes", "paths", "seed"}
        if unknown:
            raise ValueError(f"unknown key(s): {', '.join(sorted(unknown))}")
        profile = str(body.get("profile", self.profile))
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}")
        classes = dict(PROFILES[profile]) if "profile" in body else dict(self.classes)
        for name, spec in dict(body.get("classes") or {}).items():
            if name not in CLASSES:
                raise ValueError(f"classes: {name!r} is not one of {', '.join(CLASSES)}")
            classes[name] = Distribution.parse(spec, classes.get(name), f"classes.{name}")
        paths = {} if "profile" in body else dict(self.paths)
        for prefix, spec in dict(body.get("paths") or {}).items():
            if not str(prefix).startswith("/"):
                raise ValueError(f"paths: {prefix!r} must start with /")
            paths[str(prefix)] = Distribution.parse(spec, None, f"paths.{prefix}")
        if "seed" in body:
            self._random.seed(int(body["seed"]))
        self.profile, self.classes, self.paths = profile, classes, paths
        return self.describe()

    def describe(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "default": self.default,
            "classes": {k: asdict(v) for k, v in self.classes.items()},
            "paths": {k: asdict(v) for k, v in self.paths.items()},
        }

    def _sample(self, name: str) -> float:
        dist = self.classes.get(name)
        return dist.sample(self._random) if dist is not None else 0.0

    def delay_for(self, path: str) -> float:
        """Seconds to hold a request to `path` before answering it."""
        if path.startswith(("/__devorg__/", "/cometd")):
            return 0.0  # the control API answers at once; streaming has its own delay
        for prefix in sorted(self.paths, key=len, reverse=True):
            if path.startswith(prefix):
                return self.paths[prefix].sample(self._random)
        name = route_class(path)
        return self._sample(name) if name is not None else 0.0

    def stream_delay(self) -> float:
        """Seconds from a commit until its events reach Streaming API subscribers."""
        for prefix in sorted(self.paths, key=len, reverse=True):
            if prefix.startswith("/cometd") or "/cometd".startswith(prefix):
                return self.paths[prefix].sample(self._random)
        return self._sample("stream")

    def bulk_job_seconds(self, records: int) -> float:
        """How long a Bulk API job of `records` records runs: queued, then one batch per
        10,000 records."""
        batches = max(1, -(-records // 10000))
        return self._sample("bulk_queue") + sum(self._sample("bulk_batch") for _ in range(batches))


def middleware(latency: Latency) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def delay(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if latency.active:
            seconds = latency.delay_for(request.path)
            if seconds > 0:
                await asyncio.sleep(seconds)
        return await handler(request)

    return delay
