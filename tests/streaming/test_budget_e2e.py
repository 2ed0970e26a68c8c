"""The API budget guard end to end: the local org reports its daily API usage in
Sforce-Limit-Info and enforces the allocation; `sfbridge poll --every 1` runs its rounds every
second until the usage passes 80 %, then every 10 s, and the admins are told once (email to
the admin users, the configured webhook)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bridge import orgs
from bridge.devorg.testing import DevOrg
from bridge.users import create_user
from bridge.vault import Vault
from tests.harness import ORG, Bridge, wait_until
from tests.test_notify import SECRET, _Collect, _Hooks
from tests.test_notify import smtp as smtp  # the fixtures
from tests.test_notify import webhook as webhook

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def bridge(clean_devorg: DevOrg, redis_url: str, tmp_path: Path) -> Iterator[Bridge]:
    b = Bridge(tmp_path / "bridge", clean_devorg, redis_url).install()
    yield b
    b.close()


def rounds(bridge: Bridge) -> int:
    return len(re.findall(r"^poll: Lead ", bridge.log("poll"), re.MULTILINE))


def test_the_guard_slows_polling_at_the_threshold(
    bridge: Bridge, smtp: _Collect, webhook: tuple[str, _Hooks]
) -> None:
    url, hooks = webhook
    config = yaml.safe_load(bridge.config_path.read_text())
    config["orgs"][ORG]["api_budget"] = {
        "share": 0.8, "slow_factor": 10, "webhook": {"url": url, "secret_env": "HOOK_SECRET"}
    }  # fmt: skip
    bridge.write_config(config)
    with bridge.store.session() as s:
        create_user(s, "admin@example.com", "pw-123456789", "admin")
    bridge.org.control("limits", {"daily_api_requests": 1000, "api_usage": 100})
    env = {k: os.environ[k] for k in os.environ if k.startswith("SFBRIDGE_SMTP_")}
    bridge.start("poll", "poll", "--every", "1", env={**env, "HOOK_SECRET": SECRET})
    wait_until(
        lambda: rounds(bridge) >= 3, 30, "three rounds a second apart", lambda: bridge.log("poll")
    )
    assert "over its budget" not in bridge.log("poll")

    # Other integrations used the org: 85 % of today's allocation is gone.
    bridge.org.control("limits", {"api_usage": 850})
    wait_until(
        lambda: "over its budget of 80%: next round in 10s instead of 1s" in bridge.log("poll"),
        20,
        "the guard to slow polling",
        lambda: bridge.log("poll"),
    )
    slowed_at = rounds(bridge)
    wait_until(lambda: len(hooks.received) == 1, 10, "the admins' webhook")
    time.sleep(5)
    assert rounds(bridge) <= slowed_at + 1  # was one a second, now one in ten seconds
    body = hooks.received[0]
    assert body["valid"] and body["body"]["event"] == "api_budget_exceeded"
    assert body["body"]["org"] == ORG and body["body"]["allocation"] == 1000
    wait_until(lambda: len(smtp.messages) == 1, 10, "the email to the admin")
    assert smtp.messages[0].rcpt_tos == ["admin@example.com"]
    assert b"Subject: sfbridge: org 'acme' over its API budget" in smtp.messages[0].content
    log = bridge.log("poll")
    assert log.count("over its budget of 80%. Polling") == 1  # one alert per crossing
    # live work is untouched: the org still answers (usage < allocation) and reports usage
    stats = bridge.org.control("stats", method="GET")
    assert stats["api_usage"]["used"] >= 850


def test_every_answer_tells_the_org_its_usage(bridge: Bridge) -> None:
    sforg = orgs.open_org(bridge.store, Vault((bridge.key,)), ORG, bridge.config.orgs[ORG])
    bridge.org.control("limits", {"daily_api_requests": 5000, "api_usage": 41})
    sforg.call(sforg.sf.query, "SELECT Id FROM Lead")
    assert sforg.api_usage is not None
    assert (sforg.api_usage.used, sforg.api_usage.allocation) == (42, 5000)
    usage = sforg.read_api_usage()  # the limits resource: DailyApiRequests
    assert usage is not None and (usage.used, usage.allocation) == (43, 5000)
