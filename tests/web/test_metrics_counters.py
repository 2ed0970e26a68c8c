"""The Salesforce call counters that /metrics reports, counted by a requests hook."""

from __future__ import annotations

from collections.abc import Callable

import redis
import requests
import responses
from flask import Flask

from bridge.metrics import salesforce_call_hook
from bridge.store import Store
from tests.web.seed import seed

LOOPBACK = "127.0.0.1/32"  # the test client's address: monitoring details allowed


@responses.activate
def test_the_hook_counts_calls_and_errors_for_metrics(
    sqlite_store: Store, app_factory: Callable[..., Flask], redis_url: str
) -> None:
    responses.get("https://acme.example/services/data/v63.0/limits", json={})
    responses.get(
        "https://acme.example/services/data/v63.0/sobjects/Lead/x",
        status=404,
        json=[{"errorCode": "NOT_FOUND", "message": "nope"}],
    )
    client = redis.Redis.from_url(redis_url)
    session = requests.Session()
    session.hooks["response"].append(salesforce_call_hook(client, "acme"))
    session.get("https://acme.example/services/data/v63.0/limits")
    session.get("https://acme.example/services/data/v63.0/limits")
    session.get("https://acme.example/services/data/v63.0/sobjects/Lead/x")
    seed(sqlite_store)
    app = app_factory(sqlite_store, redis_url=redis_url, MONITOR_NETWORKS=LOOPBACK)
    text = app.test_client().get("/metrics").text
    assert 'sfbridge_salesforce_api_calls_total{org="acme"} 3' in text.splitlines()
    assert 'sfbridge_salesforce_api_errors_total{org="acme"} 1' in text.splitlines()


def test_counting_never_breaks_a_call_and_pauses_while_redis_is_down() -> None:
    calls = []

    class DeadRedis:
        def pipeline(self) -> None:
            calls.append(1)
            raise redis.ConnectionError("connection refused")

    hook = salesforce_call_hook(DeadRedis(), "acme")  # type: ignore[arg-type]

    class Response:
        status_code = 200

    response = Response()
    assert hook(response) is response
    assert hook(response) is response
    assert len(calls) == 1  # the second call did not wait for Redis again
