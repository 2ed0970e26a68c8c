"""Unmodified third-party clients against a real devorg process: jsforce 3 (Node) and
simple-salesforce. jsforce is installed into tests/devorg/js on first use (npm); without Node or
npm the jsforce test skips with the reason, which CI (CI=true) counts as a failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bridge.devorg.testing import DevOrg

pytestmark = pytest.mark.e2e

JS = Path(__file__).parent / "js"


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with jsforce installed next to the client script."""
    node_bin, npm = shutil.which("node"), shutil.which("npm")
    if node_bin is None or npm is None:
        pytest.skip("Node.js and npm are needed for the jsforce conformance test")
    if not (JS / "node_modules" / "jsforce").is_dir():
        done = subprocess.run(
            [npm, "install", "--prefix", str(JS), "--no-audit", "--no-fund", "--no-package-lock"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"could not install jsforce with npm: {done.stderr[-500:]}")
    return node_bin


def _jsforce(node: str, org: DevOrg, **args: Any) -> dict[str, Any]:
    tok = org.token("sales")
    payload = {"instanceUrl": tok["instance_url"], "accessToken": tok["access_token"], **args}
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": org.ca_path}
    done = subprocess.run(
        [node, str(JS / "jsforce_client.js"), json.dumps(payload)],
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
