"""Lead routing end to end against the local org (a real `sfbridge devorg` over HTTPS): the
criteria keep a referral local with its reason, a raised score sends it after the delay owned
by the mapped meeting owner and in the campaign, a manual sync sends at once, an account
segment rule gives the account's owner, and an updated existing Lead joins no campaign."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from simple_salesforce import format_soql
from sqlalchemy import select

from bridge.config import BridgeConfig, load_config
from bridge.devorg.testing import DevOrg
from bridge.orgs import jwt_credentials, read_private_key, save_connection
from bridge.salesforce.connection import connect
from bridge.store import Store
from bridge.store.models import AuditLog, FieldChange, OrgConnection, Program, Push, Referral
from bridge.users import create_user
from bridge.vault import Vault, generate_key
from bridge.vocabulary import SCOPES
from bridge.writeback import campaigns, gate, routecheck, users
from bridge.writeback.client import OrgWriter
from bridge.writeback.sender import send
from tests.web.conftest import FAST_HASH, make_app
from tests.web.seed import token
from tests.writeback.test_e2e_devorg import PACKAGE_FIELD

pytestmark = pytest.mark.e2e

CAMPAIGN = "Partner referrals"


class Routed:
    def __init__(self, store: Store, devorg: DevOrg, path: Path) -> None:
        self.store, self.devorg = store, devorg
        self.sales = devorg.sf("sales")
        self.sales_id = devorg.user("sales")["id"]
        sales_email = self.sales.query(
            format_soql("SELECT Email FROM User WHERE Id = {}", self.sales_id)
        )["records"][0]["Email"]
        info = devorg.info
        org = {
            "login_url": info["login_url"],
            "client_id": info["client_id"],
            "username": info["users"]["integration"]["username"],
            "private_key_file": info["jwt_private_key_path"],
            "ca_bundle": info["ca_path"],
            "programs": [{"key": "partners", "name": "Partner Program"}],
            "receiver": {"program": "partners"},
            "users": {
                "sally": {"email": sales_email},
                "ghost": {"email": "ghost@nowhere.example"},
                "ivan": {"salesforce_id": devorg.user("integration")["id"]},
            },
            "routing": {
                "minimum_score": "two",
                "delay": "10m",
                "campaign": {"name": CAMPAIGN, "status": "Responded"},
                "lead_owner": {"meeting": True, "routed": True, "closed": True},
                "account_rules": [
                    {
                        "name": "enterprise",
                        "segment": [{"field": "NumberOfEmployees", "op": "gte", "value": 1000}],
                        "owner_field": "OwnerId",
                    }
                ],
            },
        }
        path.write_text(yaml.safe_dump({"orgs": {"acme": org}}))
        self.path = path
        self.config: BridgeConfig = load_config(str(path))
        self.org_config = self.config.orgs["acme"]
        key = read_private_key(info["jwt_private_key_path"])
        self.org = connect(jwt_credentials("acme", self.org_config, key))
        conn = save_connection(
            store, Vault([generate_key()]), "acme", self.org_config, self.org, key,
            auth_method="jwt",
        )  # fmt: skip
        self.connection_id = conn.id
        with store.session() as s:
            program = Program(key="partners", name="Partner Program", org_connection_id=conn.id)
            s.add(program)
            s.flush()
            self.program_id = program.id
        users.forget()
        campaigns._cache.clear()

    def referral(self, n: int, **values: Any) -> int:
        with self.store.session() as s:
            referral = Referral(
                public_id=f"ref_route_{n}", program_id=self.program_id, first_name="Rita",
                last_name=f"Routed{n}", email=values.pop("email", f"rita{n}@gmail.com"), **values,
            )  # fmt: skip
            s.add(referral)
            s.flush()
            return referral.id

    def route(self, rid: int, now: datetime, *, manual: bool = False, **changes: Any) -> int | None:
        with self.store.session() as s:
            referral = s.get(Referral, rid)
            org = s.get(OrgConnection, self.connection_id)
            assert referral is not None and org is not None
            for name, value in changes.items():
                setattr(referral, name, value)
            push = gate.route_referral(
                s, org, self.org_config, referral, now=now, manual=manual, actor="admin@x"
            )
            return push.id if push else None

    def why(self, rid: int, now: datetime) -> str | None:
        with self.store.session() as s:
            referral = s.get(Referral, rid)
            assert referral is not None
            return gate.why_not_sent(s, self.config, referral, now=now)

    def send(self, *ids: int) -> Any:
        return send(self.store, OrgWriter.for_org(self.org), self.org_config, ids)

    def lead(self, rid: int) -> dict[str, Any]:
        with self.store.session() as s:
            lead_id = s.get(Referral, rid).sf_lead_id  # type: ignore[union-attr]
        assert lead_id, "the referral has no Lead"
        return dict(self.sales.Lead.get(lead_id))

    def members(self, lead_id: str) -> list[dict[str, Any]]:
        soql = format_soql(
            "SELECT Id, Status, Campaign.Name FROM CampaignMember WHERE LeadId = {}", lead_id
        )
        return [dict(r) for r in self.sales.query_all(soql)["records"]]


@pytest.fixture
def routed(clean_devorg: DevOrg, sqlite_store: Store, tmp_path: Path) -> Iterator[Routed]:
    if not PACKAGE_FIELD.exists():
        pytest.skip("the package's custom fields (force-app) are not in this checkout")
    clean_devorg.sf("sales").Campaign.create({"Name": CAMPAIGN, "IsActive": True})
    yield Routed(sqlite_store, clean_devorg, tmp_path / "sfbridge.yaml")


def test_below_criteria_stays_local_then_a_raised_score_goes_after_the_delay(
    routed: Routed,
) -> None:
    t0 = datetime.now(UTC)
    rid = routed.referral(1, score=1, meeting_owner="sally", routed_owner="ghost")
    assert routed.route(rid, t0) is None
    assert routed.why(rid, t0) == "score 1 is below the minimum of 2"

    assert routed.route(rid, t0, score=3) is None  # qualifies now: the delay starts
    assert "waiting 0:10:00 after qualifying" in str(routed.why(rid, t0))
    assert gate.release_due(routed.store, None, routed.config, now=t0 + timedelta(minutes=9)) == []
    with routed.store.session() as s:  # a change during the delay goes out with it
        s.get(Referral, rid).company = "Changed Co"  # type: ignore[union-attr]
    [pid] = gate.release_due(routed.store, None, routed.config, now=t0 + timedelta(minutes=11))

    report = routed.send(pid)
    assert pid in report.sent
    lead = routed.lead(rid)
    assert lead["OwnerId"] == routed.sales_id  # the meeting owner, mapped by email
    assert lead["Company"] == "Changed Co"
    [member] = routed.members(lead["Id"])
    assert (member["Status"], member["Campaign"]["Name"]) == ("Responded", CAMPAIGN)
    assert routed.why(rid, t0) is None


def test_manual_sync_sends_now_and_an_unowned_one_says_why(routed: Routed) -> None:
    now = datetime.now(UTC)
    rid = routed.referral(2, score=0, closed_by="sally")
    pid = routed.route(rid, now, manual=True)
    assert pid is not None
    assert pid in routed.send(pid).sent
    assert routed.lead(rid)["OwnerId"] == routed.sales_id  # closed_by, the first available
    with routed.store.session() as s:
        actions = s.scalars(select(AuditLog.action).where(AuditLog.object_id == str(rid))).all()
    assert "referral.sync" in actions

    nobody = routed.referral(3, score=3, meeting_owner="ghost")  # unmapped, no fallback
    pid = routed.route(nobody, now, manual=True)
    assert pid is not None
    assert routed.send(pid).failed == [pid]
    why = str(routed.why(nobody, now))
    assert why.startswith("the push failed: owner_unresolved: no owner for the new Lead")
    assert "ghost maps to no active Salesforce user" in why


def test_an_account_segment_rule_assigns_the_accounts_owner(routed: Routed) -> None:
    routed.sales.Account.create(
        {"Name": "Bigco", "Website": "https://www.bigco.example", "NumberOfEmployees": 5000}
    )
    rid = routed.referral(4, score=3, email="dana@bigco.example")  # no touches at all
    pid = routed.route(rid, datetime.now(UTC), manual=True)
    assert pid is not None and pid in routed.send(pid).sent
    assert routed.lead(rid)["OwnerId"] == routed.sales_id  # the Account's owner, a mapped rep


def test_an_existing_lead_updated_by_the_referral_joins_no_campaign(routed: Routed) -> None:
    existing = routed.sales.Lead.create(
        {"LastName": "Known", "Company": "Known Co", "Email": "known@gmail.com"}
    )["id"]
    rid = routed.referral(5, score=3, email="known@gmail.com", meeting_owner="sally")
    pid = routed.route(rid, datetime.now(UTC), manual=True)
    assert pid is not None and pid in routed.send(pid).sent
    with routed.store.session() as s:
        assert s.get(Push, pid).sf_id == existing  # type: ignore[union-attr]
    assert routed.members(existing) == []


def test_a_lead_already_in_the_campaign_is_a_sent_membership(routed: Routed) -> None:
    """Someone added the new Lead to the campaign before its membership push went (or the
    first answer was lost): Salesforce refuses the insert with DUPLICATE_VALUE, the push is
    sent with the reason, and the Lead stays one member."""
    lead = routed.sales.Lead.create({"LastName": "Early", "Company": "Early Co"})["id"]
    [campaign] = routed.sales.query(
        format_soql("SELECT Id FROM Campaign WHERE Name = {}", CAMPAIGN)
    )["records"]
    routed.sales.CampaignMember.create({"CampaignId": campaign["Id"], "LeadId": lead})
    writer = OrgWriter.for_org(routed.org)
    ids = campaigns.queue_members(
        routed.store, writer, routed.org_config, routed.connection_id, [lead]
    )
    report = routed.send(*ids)
    assert (report.sent, report.failed, report.retry) == (ids, [], [])
    with routed.store.session() as s:
        push = s.get(Push, ids[0])
        assert push is not None and push.state == "sent" and push.error_code is None
        assert push.payload["note"] == (
            "already a member of the campaign (Salesforce: DUPLICATE_VALUE, Already a campaign "
            "member.)"
        )
    assert len(routed.members(lead)) == 1


def test_org_check_reports_unmapped_users_and_the_campaign(routed: Routed) -> None:
    writer = OrgWriter.for_org(routed.org)
    findings, mapping = routecheck.check_routing(writer, routed.org_config)
    by_subject = {f.subject: f for f in findings}
    assert by_subject["sally"].status == "Ok" and routed.sales_id in by_subject["sally"].reason
    assert by_subject["ghost"].status == "Issue"
    assert "no Salesforce user has the email" in by_subject["ghost"].reason
    assert by_subject[CAMPAIGN].status == "Ok"
    assert mapping.user("sally") == routed.sales_id

    bogus = routed.org_config.model_copy(deep=True)
    assert bogus.routing.campaign is not None
    bogus.routing.campaign.status = "Bogus"
    [finding] = routecheck.check_campaign(writer, bogus)
    assert finding.status == "Issue" and "'Bogus' is not one of the campaign's: " in finding.reason
    assert "Responded" in finding.reason

    [campaign] = routed.sales.query(
        format_soql("SELECT Id FROM Campaign WHERE Name = {}", CAMPAIGN)
    )["records"]
    routed.sales.Campaign.update(campaign["Id"], {"IsActive": False})
    [finding] = routecheck.check_campaign(writer, routed.org_config)
    assert (finding.status, finding.reason) == ("Issue", f"Campaign {campaign['Id']} is not active")

    wrong = routed.org_config.model_copy(deep=True)
    assert wrong.routing.campaign is not None
    wrong.routing.campaign.name, wrong.routing.campaign.status = "No such campaign", None
    [finding] = routecheck.check_campaign(writer, wrong)
    assert finding.status == "Issue" and "no such Campaign" in finding.reason


def test_routings_owner_becomes_the_referrals_and_a_patched_owner_reaches_the_lead(
    routed: Routed, tmp_path: Path
) -> None:
    rid = routed.referral(7, score=3, meeting_owner="sally")
    pid = routed.route(rid, datetime.now(UTC), manual=True)
    assert pid is not None and pid in routed.send(pid).sent
    assert routed.lead(rid)["OwnerId"] == routed.sales_id
    with routed.store.session() as s:  # routing's choice is the referral's owner now, with why
        assert s.get(Referral, rid).owner == "sally"  # type: ignore[union-attr]
        change = s.scalar(select(FieldChange).where(FieldChange.referral_id == rid))
        assert change is not None and (change.field, change.source) == ("owner", "routing")
        why = s.scalar(select(AuditLog).where(AuditLog.action == "referral.owner_routed"))
        assert why is not None and "meeting was booked" in why.detail["why"]
        create_user(s, "admin@example.com", "pw-owners-1", "admin", hash_method=FAST_HASH)

    app = make_app(routed.store, routed.path, tmp_path)
    api = app.test_client()
    headers = {"Authorization": f"Bearer {token(routed.store, list(SCOPES))}"}
    refused = api.patch(f"/api/v1/referrals/{rid}", json={"owner": "mallory"}, headers=headers)
    assert refused.status_code == 422 and refused.json["error"]["fields"] == ["owner"]
    out = api.patch(f"/api/v1/referrals/{rid}", json={"owner": "ivan"}, headers=headers)
    assert out.status_code == 200, out.json
    [pushed] = out.json["pushes"]
    assert pushed["id"] in routed.send(pushed["id"]).sent
    ivan = routed.devorg.user("integration")["id"]
    assert routed.lead(rid)["OwnerId"] == ivan  # the explicit owner wins over the meeting owner
    app.extensions["sfbridge"].store.dispose()
