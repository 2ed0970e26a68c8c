"""Counters the bridge keeps in Redis and `/metrics` reports.

`sfbridge:sf_api_calls` and `sfbridge:sf_api_errors` are hashes keyed by org name. Any process
that talks to Salesforce counts its calls: the long-running commands (stream, poll, worker)
call `count_calls_with(redis_client)` once, and every org opened afterwards by
`bridge.orgs.open_org` gets the counting hook on its requests session.

The same hook records the org's API usage from each answer's `Sforce-Limit-Info` header in
`sfbridge:api_usage` (bridge.salesforce.budget), for the budget guard, /readyz, /metrics and
the health page, and keeps what the integration health page shows besides
(bridge.web.integration): `sfbridge:sf_api_daily:<org>` (calls per UTC day, a hash kept for
`API_DAYS_KEPT` days) and `sfbridge:sf_api_last_ok` (org -> time of the last answer below 400).

Counting never breaks a call: a Redis error is logged and ignored.

A caller that sends a pipeline of its own right after a call can take the call's count into it
(`counted_on`): the stream's long poll counts its answer with the delivery's stall notes, one
Redis round trip for both rather than two, every answer still counted once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import redis

from bridge import defaults
from bridge.salesforce import budget

log = logging.getLogger(__name__)

SF_API_CALLS = "sfbridge:sf_api_calls"
SF_API_ERRORS = "sfbridge:sf_api_errors"
SF_API_LAST_OK = "sfbridge:sf_api_last_ok"
API_DAYS_KEPT = 35


def daily_key(org: str) -> str:
    return f"sfbridge:sf_api_daily:{org}"


_taken = threading.local()


@contextmanager
def counted_on(pipe: Any) -> Iterator[None]:
    """The calls this thread makes in the block are counted on `pipe`, which the caller sends
    (with commands of its own) after the block; counts for another Redis are sent as usual."""
    _taken.pipe = pipe
    try:
        yield
    finally:
        _taken.pipe = None


def _count_on(
    pipe: Any, org: str, *, error: bool, usage: budget.ApiUsage | None, now: datetime
) -> None:
    pipe.hincrby(SF_API_CALLS, org, 1)
    pipe.hincrby(daily_key(org), now.date().isoformat(), 1)
    pipe.expire(daily_key(org), API_DAYS_KEPT * 86400)
    if error:
        pipe.hincrby(SF_API_ERRORS, org, 1)
    else:
        pipe.hset(SF_API_LAST_OK, org, now.isoformat())
    if usage is not None:
        pipe.hset(budget.USAGE_KEY, org, budget.encode(usage))


def count_salesforce_call(
    client: redis.Redis, org: str, *, error: bool, usage: budget.ApiUsage | None = None
) -> bool:
    """Count one call (and record the API usage it reported); False (logged) when Redis did
    not answer. Inside `counted_on` the count only joins the caller's pipeline (True)."""
    now = datetime.now(UTC)
    taken = getattr(_taken, "pipe", None)
    if taken is not None and taken.connection_pool is client.connection_pool:
        _count_on(taken, org, error=error, usage=usage, now=now)
        return True
    try:
        pipe = client.pipeline()
        _count_on(pipe, org, error=error, usage=usage, now=now)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("could not count a Salesforce API call: %s", exc)
        return False
    return True


def salesforce_call_hook(client: redis.Redis, org: str) -> Callable[..., Any]:
    """A requests response hook that counts every response (4xx/5xx also as errors)."""
    paused_until = 0.0

    def hook(response: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal paused_until
        headers = getattr(response, "headers", None) or {}
        usage = budget.from_header(headers.get("Sforce-Limit-Info"))
        if time.monotonic() >= paused_until and not count_salesforce_call(
            client, org, error=response.status_code >= 400, usage=usage
        ):
            paused_until = time.monotonic() + defaults.METRICS_PAUSE_AFTER_FAILURE_SECONDS
        return response

    return hook


_counter: redis.Redis | None = None


def count_calls_with(client: redis.Redis | None) -> None:
    """Count the Salesforce calls of orgs opened from now on in this process (None: stop)."""
    global _counter
    _counter = client


def mount_call_counter(session: Any, org: str) -> None:
    """Add the counting hook to an org's requests session, if this process counts calls."""
    if _counter is not None:
        session.hooks["response"].append(salesforce_call_hook(_counter, org))
