"""Phase and ownership sync end to end, on real parts: the local org over HTTPS (with the
package's phase picklist), `sfbridge stream` and `sfbridge worker` as processes, Redis,
SQLite, the JSON API in this process, and a webhook receiver on loopback for the reviewers.
Salesforce edits are made by the org's sales user, as a person would."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from bridge import create_app
from bridge.config import Settings, load_config
from bridge.devorg.testing import DevOrg
from bridge.receiver.decision import explain
from bridge.store.models import OrgConnection, Program, Push
from bridge.users import create_token, create_user
from tests.harness import ORG, Bridge
from tests.writeback.test_sync_e2e import Sync

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SECRET = "hook-secret-for-tests"  # noqa: S105 - a test value


class Hook:
    """A webhook receiver on loopback: every POST's headers and body."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                calls.append((dict(self.headers), raw))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/sfbridge"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def configure(bridge: Bridge, hook: Hook, devorg: DevOrg) -> None:
    data = yaml.safe_load(bridge.config_path.read_text())
    org = data["orgs"][ORG]
    org["receiver"]["target_match"] = {"direct_fields": ["Lead.Referral_ID__c"]}
    org["receiver"]["process"] = {
        "notify_on_review": {"webhook": {"url": hook.url, "secret_env": "SFB_TEST_HOOK_SECRET"}}
    }
    org["writeback"] = {"sales": {"phases": {}, "convert_leads": False}}
    org["users"] = {
        "rep-int": {"salesforce_id": devorg.user("integration")["id"]},
        "rep-sales": {"salesforce_id": devorg.user("sales")["id"]},
    }
    bridge.config_path.write_text(yaml.safe_dump(data))
    bridge.config = load_config(str(bridge.config_path))


@pytest.fixture
def hook() -> Iterator[Hook]:
    hook = Hook()
    yield hook
    hook.close()


@pytest.fixture
def sync(clean_devorg: DevOrg, redis_url: str, tmp_path: Path, hook: Hook) -> Iterator[Sync]:
    clean_devorg.control("strict", {"duplicate_rules": "off"})
    bridge = Bridge(
        tmp_path / "bridge", clean_devorg, redis_url, topics=["SFB_Lead", "SFB_Contact"],
        extra_env={"SFB_TEST_HOOK_SECRET": SECRET},
    )  # fmt: skip
    configure(bridge, hook, clean_devorg)
    bridge.install()
    with bridge.store.session() as s:
        conn = s.scalar(select(OrgConnection).where(OrgConnection.name == ORG))
        assert conn is not None
        s.add(Program(key="main", name="Main", org_connection_id=conn.id))
        user = create_user(s, "admin@example.com", "a long password", "admin")
        scopes = ["referrals:read", "referrals:write", "sales:write"]
        token = create_token(s, user, "test", scopes, actor="t")
    app = create_app(
        Settings(
            database_url=bridge.db_url,
            redis_url=redis_url,
            config_path=str(bridge.config_path),
            secret_key="test-secret",
            encryption_keys=(bridge.key,),
            instance_dir=str(tmp_path / "instance"),
        )
    )
    bridge.start("stream", "stream")
    bridge.start("worker", "worker")
    sync = Sync(bridge, app.test_client(), token.secret)
    sync.wait(
        lambda: all(f"subscribed to /topic/{t}" in bridge.log("stream") for t in bridge.topics),
        "the stream subscribed",
    )
    yield sync
    app.extensions["sfbridge"].store.dispose()
    bridge.close()


def field_update_pushes(sync: Sync, referral_id: int) -> list[Push]:
    with sync.bridge.store.session() as s:
        rows = list(
            s.scalars(
                select(Push).where(Push.referral_id == referral_id, Push.kind == "field_update")
            )
        )
        for row in rows:
            s.expunge(row)
        return rows


def test_phases_out_and_in_and_an_owner_change_refused_for_a_future_demo(
    sync: Sync, hook: Hook
) -> None:
    created = sync.call(
        "POST",
        "/referrals",
        {"program": "main", "first_name": "Pat", "last_name": "Baker", "company": "Bluebird",
         "email": "pat.baker@example.com", "phase": "HeldPhase"},
    )  # fmt: skip
    rid = created["referral"]["id"]
    assert created["referral"]["phase"] == "HeldPhase"
    lead_id = sync.wait(lambda: sync.referral(rid).sf_lead_id, "the referral written as a Lead")
    assert sync.lead(lead_id)["Sales_Phase__c"] == "HeldPhase"  # sent with the add

    # out: a phase set here is pushed onto the Lead (a field_update push, batched, reported)
    sync.call("PATCH", f"/referrals/{rid}", {"phase": "PostHoldPhase"})
    sync.wait(lambda: sync.lead(lead_id)["Sales_Phase__c"] == "PostHoldPhase", "phase pushed")
    [push] = field_update_pushes(sync, rid)
    assert push.payload["fields"] == {"Sales_Phase__c": "PostHoldPhase"}
    sync.wait(lambda: field_update_pushes(sync, rid)[0].state == "sent", "the push sent")
    # a phase that is not one of the org's is refused at the door
    bad = sync.api.patch(
        f"/api/v1/referrals/{rid}", json={"phase": "Napping"}, headers=sync.headers
    )
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "unknown_phase"

    # in: an allowed phase set in Salesforce lands
    sync.sales.Lead.update(lead_id, {"Sales_Phase__c": "Resting"})
    sync.wait(lambda: sync.referral(rid).phase == "Resting", "the allowed phase synced")
    assert ("phase", "salesforce", "applied", "Resting") in sync.history(rid)

    # in: a phase Salesforce may not set is refused with its reason, the phase stays
    sync.sales.Lead.update(lead_id, {"Sales_Phase__c": "ColdCallDM"})
    refused = sync.wait(
        lambda: [e for e in sync.entries(lead_id) if any("phase_refused" in r for r in e.reasons)],
        "the refused phase change",
    )
    assert refused[-1].reasons[-1] == (
        "phase_refused:ColdCallDM is not a phase Salesforce may set (inbound: ColdCallCold, "
        "Resting, LongResting, Retired, Customer); the phase stays Resting"
    )
    assert sync.referral(rid).phase == "Resting"
    assert ("phase", "salesforce", "refused", "ColdCallDM") in sync.history(rid)
    assert explain(refused[-1].reasons[-1]).startswith(
        "phase change refused: ColdCallDM is not a phase Salesforce may set"
    )  # the words the review UI and reports show

    # ownership: a demo booked in the future by rep-int; its rep owns the person
    at = (datetime.now(UTC) + timedelta(days=6)).replace(hour=14, minute=0, second=0, microsecond=0)
    sync.call(
        "POST", "/demos",
        {"org": ORG, "id": "demo-1", "referral_id": rid, "state": "set",
         "at": at.isoformat(), "owner": "rep-int"},
    )  # fmt: skip
    assert sync.referral(rid).owner == "rep-int"
    # the sales user takes the Lead over in Salesforce: refused, and the reviewers are told
    sync.sales.Lead.update(lead_id, {"OwnerId": sync.bridge.org.user("sales")["id"]})
    owner_refused = sync.wait(
        lambda: [
            e for e in sync.entries(lead_id) if any("owner_change_refused" in r for r in e.reasons)
        ],
        "the refused owner change",
    )[-1]
    when = at.strftime("%Y-%m-%d %H:%M UTC")
    assert owner_refused.reasons[-1] == (
        f"owner_change_refused:1 future event, first demo {when}; the owner stays rep-int"
    )
    assert sync.referral(rid).owner == "rep-int"
    assert ("owner", "salesforce", "refused", sync.bridge.org.user("sales")["id"]) in (
        sync.history(rid)
    )
    sync.wait(lambda: hook.calls, "the webhook notification")
    headers, raw = hook.calls[-1]
    body = json.loads(raw)
    assert body["event"] == "entry.owner_refused"
    assert body["entry"]["id"] == owner_refused.id and body["entry"]["referral_id"] == rid
    assert body["entry"]["reasons"][-1].startswith("owner_change_refused:1 future event")
    signed = f"{headers['X-SFBridge-Timestamp']}.".encode() + raw
    expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert headers["X-SFBridge-Signature"] == expected

    # once the demo is cancelled the person has no future event: the change is taken
    sync.call(
        "POST", "/demos",
        {"org": ORG, "id": "demo-1-cancel", "referral_id": rid, "state": "cancelled",
         "at": at.isoformat()},
    )  # fmt: skip
    sync.sales.Lead.update(lead_id, {"OwnerId": sync.bridge.org.user("integration")["id"]})
    sync.sales.Lead.update(lead_id, {"OwnerId": sync.bridge.org.user("sales")["id"]})
    sync.wait(lambda: sync.referral(rid).owner == "rep-sales", "the owner change taken")
    assert ("owner", "salesforce", "applied", "rep-sales") in sync.history(rid)
