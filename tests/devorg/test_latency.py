"""Latency profiles of the local org (bridge/devorg/latency.py).

Timing is only ever checked as a lower bound (a delay the profile promises at least), which the
machine's load cannot break."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.cli import devorg as devorg_command
from bridge.devorg.latency import REALISTIC, Distribution, Latency, route_class
from bridge.devorg.testing import DevOrg
from tests.devorg.test_streaming_e2e import Bayeux


def test_a_distribution_stays_in_its_bounds_around_its_median() -> None:
    dist = Distribution(min_ms=40, median_ms=110, p95_ms=350, max_ms=1000)
    rnd = random.Random(7)
    samples = [dist.sample(rnd) * 1000 for _ in range(4000)]
    assert min(samples) >= 40 and max(samples) <= 1000
    assert 95 <= statistics.median(samples) <= 125
    p95 = sorted(samples)[int(len(samples) * 0.95)]
    assert 280 <= p95 <= 430
    assert Distribution(250, 0, 0, 250).sample(rnd) == 0.25  # a fixed delay


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/services/oauth2/token", "oauth"),
        ("/services/oauth2/userinfo", "rest"),
        ("/services/data/v63.0/sobjects/Lead/00Q000000000001AAA", "rest"),
        ("/services/data/v63.0/query", "query"),
        ("/services/data/v63.0/queryAll/01gABC-2000", "query"),
        ("/services/data/v63.0/composite/sobjects", "composite"),
        ("/services/data/v63.0/jobs/ingest", "rest"),
        ("/__devorg__/stats", None),
        ("/cometd/63.0", None),
    ],
)
def test_each_path_has_its_kind_of_delay(path: str, kind: str | None) -> None:
    assert route_class(path) == kind


def test_profiles_overrides_and_reset() -> None:
    latency = Latency()
    assert not latency.active and latency.delay_for("/services/data/v63.0/limits") == 0
    latency.configure({"profile": "realistic", "classes": {"rest": {"median_ms": 300}}})
    rest = latency.classes["rest"]
    assert (rest.min_ms, rest.median_ms) == (REALISTIC["rest"].min_ms, 300)
    assert rest.p95_ms > 300  # a new median keeps the profile's spread
    latency.configure({"paths": {"/services/data/v63.0/limits": {"min_ms": 500}}})
    assert latency.delay_for("/services/data/v63.0/limits") == 0.5
    assert latency.delay_for("/__devorg__/stats") == 0  # the control API never waits
    assert latency.bulk_job_seconds(25_000) >= (1000 + 3 * 2000) / 1000  # queued + 3 batches
    latency.reset()
    assert latency.describe()["profile"] == "zero" and not latency.active
    for bad in ({"profile": "slow"}, {"classes": {"warp": {}}}, {"paths": {"x": {"min_ms": 1}}},
                {"classes": {"rest": {"median_ms": 5, "p95_ms": 1}}}):  # fmt: skip
        with pytest.raises(ValueError):
            latency.configure(bad)


def test_zero_latency_is_the_default() -> None:
    (option,) = [p for p in devorg_command.params if p.name == "latency"]
    assert option.default == "zero"


@pytest.fixture(scope="module")
def realistic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevOrg]:
    org = DevOrg(tmp_path_factory.mktemp("realistic"), latency="realistic")
    org.start()
    yield org
    org.close()


def _timed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


@pytest.mark.e2e
def test_a_realistic_org_takes_at_least_the_profiles_minimum(realistic: DevOrg) -> None:
    assert realistic.control("latency", method="GET")["profile"] == "realistic"
    token_time = _timed(lambda: realistic.token("integration"))
    assert token_time >= REALISTIC["oauth"].min_ms / 1000
    sf = realistic.sf("integration")
    assert _timed(lambda: sf.limits()) >= REALISTIC["rest"].min_ms / 1000
    assert _timed(lambda: sf.query("SELECT Id FROM Lead")) >= REALISTIC["query"].min_ms / 1000
    body = {"records": [{"attributes": {"type": "Lead"}, "LastName": "L", "Company": "C"}]}
    elapsed = _timed(lambda: sf.restful("composite/sobjects", method="POST", json=body))
    assert elapsed >= REALISTIC["composite"].min_ms / 1000


@pytest.mark.e2e
def test_the_default_org_answers_without_a_profile_and_a_path_can_be_slowed(
    clean_devorg: DevOrg,
) -> None:
    assert clean_devorg.control("latency", method="GET")["profile"] == "zero"
    sf = clean_devorg.sf("integration")
    path = f"/services/data/v{clean_devorg.info['api_version']}/limits"
    clean_devorg.control("latency", {"paths": {path: {"min_ms": 400}}})
    assert _timed(lambda: sf.limits()) >= 0.4
    clean_devorg.control("reset")  # back to the profile the org started with
    assert clean_devorg.control("latency", method="GET")["paths"] == {}


@pytest.mark.e2e
def test_streaming_delivery_waits_for_the_profiles_delay(clean_devorg: DevOrg) -> None:
    org = clean_devorg
    org.control("streaming", {"connect_timeout_ms": 2000})
    try:
        bayeux = Bayeux(org).start("/data/LeadChangeEvent")
        org.control("latency", {"classes": {"stream": {"min_ms": 700, "median_ms": 700}}})
        sales = org.sf("sales")
        before = time.perf_counter()
        lead = sales.Lead.create({"LastName": "Slow", "Company": "C"})["id"]
        sales.Lead.update(lead, {"Title": "CTO"})
        events = bayeux.collect(lambda evs: len(evs) >= 2)
        assert time.perf_counter() - before >= 0.7
        # delayed events keep their commit order
        headers = [e["data"]["payload"]["ChangeEventHeader"]["changeType"] for e in events]
        assert headers == ["CREATE", "UPDATE"]
        # a replaying subscriber gets them too, once, after they are delivered
        replay = Bayeux(org).start("/data/LeadChangeEvent", replay=-2)
        replayed = replay.collect(lambda evs: len(evs) >= 2)
        assert [e["data"]["event"]["replayId"] for e in replayed] == [
            e["data"]["event"]["replayId"] for e in events
        ]
    finally:
        org.control("streaming", {"connect_timeout_ms": 110_000})
