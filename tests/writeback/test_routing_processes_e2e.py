"""Lead routing with real processes: the local org over HTTPS, Redis, SQLite and a running
`sfbridge worker` whose sweeper releases a held referral when its delay is over (a due time
in the store) and sends it, owned by the mapped meeting owner, into the campaign."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from simple_salesforce import format_soql

from bridge.config import load_config
from bridge.devorg.testing import DevOrg
from bridge.store.models import OrgConnection, Program, Referral
from bridge.writeback import gate
from tests.harness import ORG, Bridge, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CAMPAIGN = "Worker campaign"


@pytest.fixture
def bridge(clean_devorg: DevOrg, redis_url: str, tmp_path: Path) -> Iterator[Bridge]:
    b = Bridge(tmp_path / "bridge", clean_devorg, redis_url, topics=["SFB_Lead"])
    sales = clean_devorg.sf("sales")
    sales_id = clean_devorg.user("sales")["id"]
    email = sales.query(format_soql("SELECT Email FROM User WHERE Id = {}", sales_id))["records"][
        0
    ]["Email"]
    config = yaml.safe_load(b.config_path.read_text())
    config["orgs"][ORG]["users"] = {"sally": {"email": email}}
    config["orgs"][ORG]["routing"] = {
        "minimum_score": 2,
        "delay": "3s",
        "campaign": {"name": CAMPAIGN},
        "lead_owner": {"meeting": True, "routed": False, "closed": False},
    }
    b.config_path.write_text(yaml.safe_dump(config))
    b.config = load_config(str(b.config_path))
    b.install()
    sales.Campaign.create({"Name": CAMPAIGN, "IsActive": True})
    yield b
    b.close()


def _route(bridge: Bridge, rid: int, **changes: Any) -> int | None:
    with bridge.store.session() as s:
        referral = s.get(Referral, rid)
        assert referral is not None
        for name, value in changes.items():
            setattr(referral, name, value)
        target = gate.program_target(s, bridge.config, referral.program_id)
        assert target is not None
        push = gate.route_referral(s, *target, referral)  # what the API's create/PATCH call
        return push.id if push else None


def test_the_worker_sends_a_raised_referral_after_the_delay(bridge: Bridge) -> None:
    with bridge.store.session() as s:
        conn_id = s.query(OrgConnection.id).scalar()
        program = Program(key="main", name="Main", org_connection_id=conn_id)
        s.add(program)
        s.flush()
        referral = Referral(
            public_id="ref_worker_1", program_id=program.id, last_name="Waits",
            email="waits@gmail.com", score=1, meeting_owner="sally",
        )  # fmt: skip
        s.add(referral)
        s.flush()
        rid = referral.id
    assert _route(bridge, rid) is None
    bridge.start("worker", "worker")

    def lead_id() -> str | None:
        with bridge.store.session() as s:
            return s.get(Referral, rid).sf_lead_id  # type: ignore[union-attr]

    with bridge.store.session() as s:
        referral = s.get(Referral, rid)
        assert referral is not None
        assert gate.why_not_sent(s, bridge.config, referral) == "score 1 is below the minimum of 2"
    raised = datetime.now(UTC)
    assert _route(bridge, rid, score=2) is None  # held: the worker sends it when due

    found = wait_until(lead_id, 60, "the referral's Lead", lambda: bridge.log("worker"))
    assert (datetime.now(UTC) - raised).total_seconds() >= 3  # not before the delay
    sales = bridge.org.sf("sales")
    lead = sales.Lead.get(found)
    assert lead["OwnerId"] == bridge.org.user("sales")["id"]
    members = wait_until(
        lambda: sales.query_all(
            format_soql("SELECT Campaign.Name FROM CampaignMember WHERE LeadId = {}", found)
        )["records"],
        30,
        "the campaign membership",
        lambda: bridge.log("worker"),
    )
    assert [m["Campaign"]["Name"] for m in members] == [CAMPAIGN]
