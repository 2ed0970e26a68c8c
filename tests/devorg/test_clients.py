"""Unmodified third-party clients against a real devorg process: jsforce 3 (REST and its Faye
streaming client with the replay extension), the reference CometD client (npm `cometd` with
`cometd-nodejs-client`: replay and re-handshake) and simple-salesforce. The Node clients live in
tests/devorg/js; scripts/test installs them (npm), and a test installs them on first use too.
Without Node or npm the Node tests skip with the reason, which CI (CI=true) counts as a
failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.devorg.testing import DevOrg

pytestmark = pytest.mark.e2e

JS = Path(__file__).parent / "js"


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the clients of package.json installed next to the scripts."""
    node_bin, npm = shutil.which("node"), shutil.which("npm")
    if node_bin is None or npm is None:
        pytest.skip("Node.js and npm are needed for the jsforce conformance test")
    installed = ("jsforce", "cometd", "cometd-nodejs-client")
    if not all((JS / "node_modules" / name).is_dir() for name in installed):
        done = subprocess.run(
            [npm, "install", "--prefix", str(JS), "--no-audit", "--no-fund", "--no-package-lock"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"could not install the Node clients with npm: {done.stderr[-500:]}")
    return node_bin


def _jsforce(node: str, org: DevOrg, **args: Any) -> dict[str, Any]:
    return _run(node, org, "jsforce_client.js", version=args.pop("version", "63.0"), **args)


def _run(node: str, org: DevOrg, script: str, **args: Any) -> dict[str, Any]:
    """Run a client script as the sales user; its one JSON line of output."""
    tok = org.token("sales")
    payload = {"instanceUrl": tok["instance_url"], "accessToken": tok["access_token"], **args}
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": org.ca_path}
    done = subprocess.run(
        [node, str(JS / script), json.dumps(payload)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_jsforce_query_multi_update_and_identity(clean_devorg: DevOrg, node: str) -> None:
    sf = clean_devorg.sf()
    leads = [sf.Lead.create({"LastName": n, "Company": "Co"})["id"] for n in ("Ada", "Bob")]
    out = _jsforce(node, clean_devorg, version="63.0", leadIds=leads)

    assert out["query"] == {"totalSize": 2, "done": True, "names": ["Ada", "Bob"]}
    assert out["update"] == [
        {"id": leads[0], "success": True, "errors": []},
        {"id": leads[1], "success": True, "errors": []},
    ]
    assert [sf.Lead.get(i)["Title"] for i in leads] == ["Title 0", "Title 1"]
    stats = clean_devorg.control("stats", method="GET")["api_calls"]["by_endpoint"]
    assert stats.get("PATCH composite/sobjects") == 1  # one collection call, not two PATCHes

    assert [c["success"] for c in out["created"]] == [True, True]
    assert out["aggregate"]["n"] == 2
    assert out["aggregate"]["newest"] == max(sf.Lead.get(i)["SystemModstamp"] for i in leads)

    ident = out["identity"]
    assert ident["user_id"] == clean_devorg.user("sales")["id"]
    assert ident["organization_id"] == clean_devorg.info["org_id"]
    assert ident["username"] == clean_devorg.user("sales")["username"]
    assert out["contacts"] == 2
    assert out["error"]["errorCode"] == "INVALID_FIELD"
    assert "No such column 'Nope'" in out["error"]["message"]


def test_jsforce_pages_with_query_more(clean_devorg: DevOrg, node: str) -> None:
    sf = clean_devorg.sf()
    for chunk in range(12):  # 2,400 contacts: two batches of 2,000 and 400
        records = [{"attributes": {"type": "Contact"}, "LastName": f"C{chunk}-{n}"}
                   for n in range(200)]  # fmt: skip
        sf.restful("composite/sobjects", method="POST", json={"records": records})
    lead = sf.Lead.create({"LastName": "Solo", "Company": "Co"})["id"]
    out = _jsforce(node, clean_devorg, version="66.0", leadIds=[lead])
    assert out["contacts"] == 2402  # plus the two the script creates
    stats = clean_devorg.control("stats", method="GET")["api_calls"]["by_endpoint"]
    assert stats.get("GET query/{locator}") == 1


def test_simple_salesforce_sandbox_check_and_aggregates(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    assert sf.is_sandbox() is False
    for source in ("Web", "Web", "Phone Inquiry"):
        sf.Lead.create({"LastName": "L", "Company": "Co", "LeadSource": source})
    grouped = sf.query_all(
        "SELECT LeadSource, COUNT(Id) n FROM Lead GROUP BY LeadSource ORDER BY COUNT(Id) DESC"
    )
    assert [(r["LeadSource"], r["n"]) for r in grouped["records"]] == [
        ("Web", 2), ("Phone Inquiry", 1)
    ]  # fmt: skip
    high_water = sf.query("SELECT MAX(SystemModstamp) FROM Lead")["records"][0]["expr0"]
    newest = sf.query("SELECT SystemModstamp FROM Lead ORDER BY SystemModstamp DESC LIMIT 1")
    assert high_water == newest["records"][0]["SystemModstamp"]


@pytest.fixture
def streaming_org(clean_devorg: DevOrg) -> Iterator[DevOrg]:
    """The clean org with a PushTopic on Lead and short long polls (put back after)."""
    clean_devorg.control("streaming", {"connect_timeout_ms": 2000})
    clean_devorg.sf("integration").PushTopic.create(
        {
            "Name": "NodeLeads",
            "Query": "SELECT Id, Email FROM Lead",
            "ApiVersion": 63.0,
            "NotifyForFields": "Referenced",
        }
    )
    yield clean_devorg
    clean_devorg.control("streaming", {"connect_timeout_ms": 110_000, "client_timeout_ms": 40_000})


def _retained(org: DevOrg, n: int) -> list[str]:
    """``n`` Lead changes made before any client subscribes: replayable, not yet seen."""
    sf = org.sf("sales")
    emails = [f"before{i}@x.com" for i in range(n)]
    for email in emails:
        sf.Lead.create({"LastName": "Before", "Company": "Co", "Email": email})
    return emails


def test_jsforce_faye_streaming_with_replay(streaming_org: DevOrg, node: str) -> None:
    before = _retained(streaming_org, 2)
    out = _run(
        node,
        streaming_org,
        "jsforce_streaming.js",
        version="63.0",
        channel="/topic/NodeLeads",
        retained=2,
        liveEmail="live@x.com",
        expireUrl=f"{streaming_org.base_url}/__devorg__/expire-tokens",
    )
    everything = out["all"]
    assert [(e["type"], e["email"]) for e in everything] == [
        ("created", before[0]), ("created", before[1]), ("created", "live@x.com")
    ]  # fmt: skip
    ids = [e["replayId"] for e in everything]
    assert ids == sorted(set(ids))  # increasing, each once
    # resuming from the first replayId delivers exactly what came after it
    assert [e["replayId"] for e in out["resumed"]] == ids[1:]
    # -1 is new events only: the update, nothing retained
    (fresh,) = out["fresh"]
    assert (fresh["type"], fresh["email"]) == ("updated", "new-live@x.com")
    assert fresh["replayId"] > ids[-1]
    stats = streaming_org.control("stats", method="GET")["events_delivered"]["by_channel"]
    assert stats["/topic/NodeLeads"] >= 3 + 2 + 1
    # an ended session reaches jsforce's AuthFailure extension as Salesforce sends it
    failure = out["authFailure"]
    assert failure["channel"] == "/meta/connect"
    assert failure["error"] == "401::Authentication invalid"
    assert failure["advice"]["reconnect"] == "none"


def test_cometd_reference_client_replays_and_handshakes_again(
    streaming_org: DevOrg, node: str
) -> None:
    before = _retained(streaming_org, 2)
    out = _run(
        node,
        streaming_org,
        "cometd_client.mjs",
        version="63.0",
        channel="/topic/NodeLeads",
        retained=2,
        controlUrl=f"{streaming_org.base_url}/__devorg__/streaming",
        emails={"live": "live@x.com", "failover": "failover@x.com"},
    )
    events = out["events"]
    # each change once, in order: replayed, live, and the one made while the client was unknown
    assert [e["email"] for e in events] == [*before, "live@x.com", "failover@x.com"]
    ids = [e["replayId"] for e in events]
    assert ids == sorted(set(ids))
    # the dropped client got 403::Unknown client, handshook again as a new client ...
    # (CometD tries WebSocket first and falls back to long-polling, the only transport served)
    first, second = [h["clientId"] for h in out["handshakes"] if h["successful"]]
    assert first != second
    assert any("403::Unknown client" in (error or "") for error in out["connectFailures"])
    # ... and subscribed again from the last replayId it had seen, through the replay extension
    channel = "/topic/NodeLeads"
    assert out["subscribes"] == [{channel: -2}, {channel: ids[2]}]
    assert out["subscribed"] == [True, True]
