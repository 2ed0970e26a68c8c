"""`sfbridge org topics` and `sfbridge org check` as real processes against the local org."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import load_config
from bridge.salesforce import topics
from bridge.salesforce.fieldcache import load_field_names
from bridge.vault import generate_key

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "bridge" / "examples" / "sfbridge.example.yaml"


def _sfbridge() -> str:
    return str(Path(sys.executable).parent / "sfbridge")


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_sfbridge(), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def write_config(devorg: Any, path: Path, **receiver_changes: Any) -> Path:
    """The example config, pointed at the local org's connected app and integration user."""
    data = yaml.safe_load(EXAMPLE.read_text())
    org = data["orgs"]["acme"]
    info = devorg.info
    org.update(
        login_url=info["login_url"],
        client_id=info["client_id"],
        username=info["users"]["integration"]["username"],
        private_key_file=info["jwt_private_key_path"],
        ca_bundle=info["ca_path"],
    )
    org["receiver"].update(receiver_changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _env_in(root: Path, key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFBRIDGE_")}
    env.update(
        SFBRIDGE_DATABASE_URL=f"sqlite:///{root / 'sfbridge.db'}",
        SFBRIDGE_CONFIG=str(root / "sfbridge.yaml"),
        SFBRIDGE_ENCRYPTION_KEYS=key,
        SFBRIDGE_INSTANCE_DIR=str(root / "instance"),
    )
    return env


@pytest.fixture(scope="module")
def connected(devorg: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A database with org `acme` connected by JWT, made once by the CLI (two process starts)
    and copied for each test: the tests change the org and the config, never the connection."""
    root = tmp_path_factory.mktemp("connected")
    key = generate_key()
    env = _env_in(root, key)
    write_config(devorg, root / "sfbridge.yaml")
    for args in (("db", "upgrade"), ("org", "connect", "acme")):
        done = run(env, *args)
        assert done.returncode == 0, done.stderr
    return root, key


@pytest.fixture
def cli_env(clean_devorg: Any, connected: tuple[Path, str], tmp_path: Path) -> dict[str, str]:
    """Environment for the CLI: a fresh copy of the connected database, its own config."""
    template, key = connected
    shutil.copy(template / "sfbridge.db", tmp_path / "sfbridge.db")
    if (template / "instance").exists():
        shutil.copytree(template / "instance", tmp_path / "instance")
    write_config(clean_devorg, tmp_path / "sfbridge.yaml")
    return _env_in(tmp_path, key)


def pushtopic_writes(devorg: Any) -> int:
    by_endpoint = devorg.control("stats", method="GET")["api_calls"]["by_endpoint"]
    return sum(
        n
        for endpoint, n in by_endpoint.items()
        if "PushTopic" in endpoint and endpoint.split()[0] in ("POST", "PATCH")
    )


def test_topics_apply_twice_against_the_local_org(
    clean_devorg: Any, cli_env: dict[str, str]
) -> None:
    plan = run(cli_env, "org", "topics", "acme")
    assert plan.returncode == 0, plan.stderr
    assert "4 change(s) planned; run again with --apply" in plan.stdout
    assert clean_devorg.sf("integration").query("SELECT Id FROM PushTopic")["totalSize"] == 0

    first = run(cli_env, "org", "topics", "acme", "--apply")
    assert first.returncode == 0, first.stderr
    assert (
        "applied: created SFB_Lead, created SFB_Contact, created SFB_Account, "
        "created SFB_Opportunity"
    ) in first.stdout
    writes = pushtopic_writes(clean_devorg)
    assert writes == 4

    records = clean_devorg.sf("integration").query_all(
        "SELECT Id, Name, Query, ApiVersion, NotifyForFields, NotifyForOperationCreate, "
        "NotifyForOperationUpdate, NotifyForOperationDelete, NotifyForOperationUndelete "
        "FROM PushTopic"
    )["records"]
    desired = {t.name: t for t in topics.desired_topics(load_config(cli_env["SFBRIDGE_CONFIG"])
                                                        .orgs["acme"])}  # fmt: skip
    assert {r["Name"] for r in records} == set(desired)
    for r in records:
        spec = desired[r["Name"]]
        assert r["Query"] == spec.query
        assert float(r["ApiVersion"]) == 63.0
        assert r["NotifyForFields"] == "Referenced"
        assert all(
            r[f"NotifyForOperation{op}"] for op in ("Create", "Update", "Delete", "Undelete")
        )

    second = run(cli_env, "org", "topics", "acme", "--apply")
    assert second.returncode == 0, second.stderr
    assert "all topics are up to date" in second.stdout
    assert second.stdout.count("unchanged") == 4
    assert pushtopic_writes(clean_devorg) == writes  # nothing written the second time
    again = clean_devorg.sf("integration").query("SELECT Id FROM PushTopic")["records"]
    assert sorted(r["Id"] for r in again) == sorted(r["Id"] for r in records)


def test_check_against_the_local_org(clean_devorg: Any, cli_env: dict[str, str]) -> None:
    before = run(cli_env, "org", "check", "acme")
    assert before.returncode == 1, before.stderr
    issue_lines = [line for line in before.stdout.splitlines() if "  Issue  " in line]
    assert len(issue_lines) == 4 and all("missing in the org" in line for line in issue_lines)

    assert run(cli_env, "org", "topics", "acme", "--apply").returncode == 0
    after = run(cli_env, "org", "check", "acme")
    assert after.returncode == 0, after.stdout + after.stderr
    assert ", 0 Issue(s)" in after.stdout
    assert "package field  Task.SFBridge_Activity_Id__c" in after.stdout
    # the describes are kept for the review UI's field-name checks
    kept = load_field_names(cli_env["SFBRIDGE_INSTANCE_DIR"], "acme")
    assert "Email" in kept["Lead"] and "Emial" not in kept["Lead"]


def test_check_reports_a_status_value_the_org_does_not_have(
    clean_devorg: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    rules = [
        {"status": "approved", "object": "Opportunity", "field": "StageName", "op": "changed_to",
         "value": "Closed Won!"},
    ]  # fmt: skip
    cli_env["SFBRIDGE_CONFIG"] = str(
        write_config(clean_devorg, tmp_path / "typo.yaml", status_rules=rules)
    )
    done = run(cli_env, "org", "check", "acme")
    assert done.returncode == 1
    [line] = [line for line in done.stdout.splitlines() if "status_rules[0]" in line]
    assert "Issue" in line
    assert "'Closed Won!' is not an active value of the picklist" in line
    assert "Closed Won," in line  # the org's real values are listed


def test_check_reports_the_user_mapping_and_the_routing_campaign(
    clean_devorg: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    assert run(cli_env, "org", "topics", "acme", "--apply").returncode == 0
    sales_id = clean_devorg.user("sales")["id"]
    data = yaml.safe_load(Path(cli_env["SFBRIDGE_CONFIG"]).read_text())
    data["orgs"]["acme"]["users"] = {
        "sally": {"salesforce_id": sales_id},
        "ghost": {"email": "ghost@nowhere.example"},
    }
    data["orgs"]["acme"]["routing"] = {"campaign": {"name": "Not there"}}
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    cli_env["SFBRIDGE_CONFIG"] = str(path)

    done = run(cli_env, "org", "check", "acme")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    [sally] = [line for line in lines if line.startswith("user") and " sally " in line]
    assert "  Ok  " in sally and sales_id in sally
    [ghost] = [line for line in lines if line.startswith("user") and " ghost " in line]
    assert "Issue" in ghost and "no Salesforce user has the email ghost@nowhere.example" in ghost
    [campaign] = [line for line in lines if line.startswith("campaign")]
    assert "Issue" in campaign and "no such Campaign" in campaign

    clean_devorg.sf("sales").Campaign.create({"Name": "Not there", "IsActive": True})
    del data["orgs"]["acme"]["users"]["ghost"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    # a user mapping streams OwnerId too (ownership sync): the Lead and Contact topics change
    assert run(cli_env, "org", "topics", "acme", "--apply").returncode == 0
    done = run(cli_env, "org", "check", "acme")
    assert done.returncode == 0, done.stdout


def test_check_reports_a_phase_the_picklist_lacks(
    clean_devorg: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Sellfire's Inspect: every mapped phase must be a value of the package's picklist."""
    assert run(cli_env, "org", "topics", "acme", "--apply").returncode == 0
    data = yaml.safe_load(Path(cli_env["SFBRIDGE_CONFIG"]).read_text())
    names = {"ColdCallCold": "ColdCallCold", "Resting": "Resting", "Dormant": "Sleeping"}
    data["orgs"]["acme"]["writeback"]["sales"] = {
        "phases": {"names": names, "inbound": ["ColdCallCold"], "end_cycle": ["Resting"]}
    }
    path = tmp_path / "phases.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    cli_env["SFBRIDGE_CONFIG"] = str(path)
    # the phase picklist is streamed: the Lead and Contact topics select it
    assert run(cli_env, "org", "topics", "acme", "--apply").returncode == 0

    done = run(cli_env, "org", "check", "acme")
    assert done.returncode == 1, done.stderr
    found = [line for line in done.stdout.splitlines() if line.startswith("phase picklist")]
    assert len(found) == 2, done.stdout
    for line in found:
        assert "Issue" in line and "the picklist lacks phase value(s): Sleeping" in line

    del names["Dormant"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    done = run(cli_env, "org", "check", "acme")
    assert done.returncode == 0, done.stdout
    lines = [line for line in done.stdout.splitlines() if line.startswith("phase picklist")]
    assert [line.split()[2] for line in lines] == ["Lead.Sales_Phase__c", "Contact.Sales_Phase__c"]
    assert all("  Ok  " in line and "every phase is a picklist value" in line for line in lines)
