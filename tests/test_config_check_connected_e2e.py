"""`sfbridge config check --connected`: fields the connected org lacks, with file and line."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.devorg.testing import DevOrg
from tests.harness import ORG, Bridge, sfbridge_command

pytestmark = pytest.mark.e2e


@pytest.fixture
def bridge(clean_devorg: DevOrg, redis_url: str, tmp_path: Path) -> Iterator[Bridge]:
    b = Bridge(tmp_path / "bridge", clean_devorg, redis_url, topics=["SFB_Lead"]).install()
    yield b
    b.close()


def _write_receiver(bridge: Bridge, receiver: dict[str, Any]) -> None:
    config: dict[str, Any] = yaml.safe_load(bridge.config_path.read_text())
    config["orgs"][ORG]["receiver"] = {"program": "main", **receiver}
    bridge.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def _check(bridge: Bridge) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*sfbridge_command(), "config", "check", "--connected"],
        env=bridge.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_fields_and_picklist_values_the_org_lacks_are_reported_with_their_line(
    bridge: Bridge,
) -> None:
    _write_receiver(
        bridge,
        {
            "status_rules": [
                {"status": "qualified", "object": "Lead", "field": "Status", "op": "equals",
                 "value": "Working - Contacted"},
                {"status": "approved", "object": "Opportunity", "field": "StageName",
                 "op": "equals", "value": "Signed"},
            ],
            "referral_fields": {"deal": "Opportunity.Amount", "tier": "Lead.Tier__c"},
        },
    )  # fmt: skip
    done = _check(bridge)
    assert done.returncode == 1, done.stdout + done.stderr
    text = bridge.config_path.read_text().splitlines()
    tier_line = next(i for i, line in enumerate(text, 1) if "Tier__c" in line)
    assert (
        f"{bridge.config_path}:{tier_line}: orgs.{ORG}.receiver.referral_fields.tier: "
        "Lead.Tier__c does not exist on the org"
    ) in done.stderr
    assert "'Signed' is not an active value of the Opportunity.StageName picklist" in done.stderr
    assert "Working - Contacted" not in done.stderr  # a real Lead Status value
    assert "Traceback" not in done.stderr


def test_a_config_that_fits_the_org_passes(bridge: Bridge) -> None:
    _write_receiver(
        bridge,
        {"status_rules": [{"status": "approved", "object": "Opportunity", "field": "StageName",
                           "op": "equals", "value": "Closed Won"}]},
    )  # fmt: skip
    done = _check(bridge)
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout
