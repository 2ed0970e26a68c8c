"""The API budget: readings from Sforce-Limit-Info and the limits resource, the guard's waits,
one alert per crossing (Redis). /readyz and /metrics: tests/web/test_health.py."""

from __future__ import annotations

import pytest
import redis

from bridge.salesforce import budget


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("api-usage=18/5000", (18, 5000)),
        ("api-usage=10018/100000; api-bursts=1/750", (10018, 100000)),
        ("api-usage=110018/100000; api-bursts=1/750", (110018, 100000)),  # bursting past it
        ("per-app-api-usage=17/250(appName=x); api-usage=25/5000", (25, 5000)),
        ("per-app-api-usage=17/250(appName=x)", None),
        ("api-usage=abc/5000", None),
        ("", None),
        (None, None),
    ],
)
def test_sforce_limit_info(header: str | None, expected: tuple[int, int] | None) -> None:
    usage = budget.from_header(header, at=1.0)
    assert (None if usage is None else (usage.used, usage.allocation)) == expected


def test_limits_resource() -> None:
    usage = budget.from_limits({"DailyApiRequests": {"Max": 15000, "Remaining": 3000}}, at=1.0)
    assert usage == budget.ApiUsage(12000, 15000, 1.0)
    assert usage.share == 0.8 and usage.over(0.8) and not usage.over(0.81)
    assert budget.from_limits({"DailyApiRequests": {"Max": "x"}}) is None
    assert budget.from_limits({}) is None


@pytest.mark.parametrize(
    ("used", "wait"),
    [(0, 60), (799, 60), (800, 600), (1000, 600), (1200, 600)],
)
def test_work_that_can_wait_is_slowed_at_the_share(used: int, wait: float) -> None:
    usage = budget.ApiUsage(used, 1000, 1.0)
    assert budget.deferrable_wait(usage, 0.8, 60, 10) == wait
    assert budget.deferrable_wait(None, 0.8, 60, 10) == 60  # nothing known: as configured


def test_one_alert_per_crossing(redis_client: redis.Redis) -> None:
    under, over = budget.ApiUsage(700, 1000, 1.0), budget.ApiUsage(850, 1000, 2.0)
    assert not budget.crossed(redis_client, "acme", under, 0.8)
    assert budget.crossed(redis_client, "acme", over, 0.8)
    assert not budget.crossed(redis_client, "acme", over, 0.8)  # still over: no second alert
    assert not budget.crossed(redis_client, "other", under, 0.8)  # per org
    assert not budget.crossed(redis_client, "acme", under, 0.8)  # back under: re-armed
    assert budget.crossed(redis_client, "acme", over, 0.8)
