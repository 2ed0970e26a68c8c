"""A demo then a sale through the production path: the JSON API (in process, on the bridge's
store) saves them, `sfbridge worker --burst` (a real process) sends them to the local org."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from bridge import create_app
from bridge.config import Settings, load_config
from bridge.devorg.testing import DevOrg
from bridge.store.models import Program, Push, Referral
from bridge.users import create_token, create_user
from tests.harness import ORG, Bridge

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def bridge(clean_devorg: DevOrg, redis_url: str, tmp_path: Path) -> Iterator[Bridge]:
    b = Bridge(tmp_path / "bridge", clean_devorg, redis_url, topics=["SFB_Contact"])
    config = yaml.safe_load(b.config_path.read_text())
    config["orgs"][ORG]["writeback"] = {
        "sales": {"opportunity_at_demo": True, "create_price_entries": True},
        "objects": {
            "Opportunity": {
                "fields": [
                    {
                        "local": "sale.plan",
                        "salesforce": "Description",
                        "sync": "ours",
                        "on": ["sale"],
                    },
                ]
            }
        },
    }
    b.config_path.write_text(yaml.safe_dump(config))
    b.config = load_config(str(b.config_path))
    b.install()
    yield b
    b.close()


def _api(bridge: Bridge) -> tuple[Any, dict[str, str]]:
    env = bridge.env
    app = create_app(
        Settings(
            database_url=env["SFBRIDGE_DATABASE_URL"],
            redis_url=env["SFBRIDGE_REDIS_URL"],
            config_path=env["SFBRIDGE_CONFIG"],
            secret_key="test-secret",
            encryption_keys=(bridge.key,),
            instance_dir=env["SFBRIDGE_INSTANCE_DIR"],
        )
    )
    with bridge.store.session() as s:
        user = create_user(s, "ops@example.com", "a long password 1", "admin", hash_method="pbkdf2")
        secret = create_token(s, user, "sales", ["sales:write"], actor="test").secret
    return app.test_client(), {"Authorization": f"Bearer {secret}"}


def _work(bridge: Bridge) -> None:
    worker = bridge.start("worker", "worker", "--burst")
    assert worker.wait(120) == 0, bridge.log("worker")


def test_a_demo_then_two_sales_through_the_api_and_the_worker(bridge: Bridge) -> None:
    sf = bridge.org.sf("sales")
    sf.Product2.create({"Name": "Gold plan", "ProductCode": "GOLD"})
    with bridge.store.session() as s:
        program = Program(key="main", name="Main")
        s.add(program)
        s.flush()
        referral = Referral(
            public_id="ref-sale-1",
            program_id=program.id,
            first_name="Bo",
            last_name="Baker",
            phone="415 555 0199",
            company="Bluebird Bakery",
        )
        s.add(referral)
        s.flush()
        rid = referral.id
    client, auth = _api(bridge)

    demo = {
        "org": ORG,
        "id": "d-1",
        "referral_id": rid,
        "state": "set",
        "at": "2026-04-01T16:00:00Z",
        "phone": "(415) 555-0100",
        "city": "Oakland",
    }
    resp = client.post("/api/v1/demos", json=demo, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["push"]["note"] == "queued for sending"
    _work(bridge)
    [opp] = sf.query_all("SELECT Id, StageName, CloseDate FROM Opportunity")["records"]
    assert (opp["StageName"], opp["CloseDate"]) == ("Qualification", "2026-04-01")

    for n, quantity in ((1, 3), (2, 1)):
        sale = {
            "org": ORG,
            "id": f"s-{n}",
            "referral_id": rid,
            "business_name": "Bluebird Bakery",
            "phone": "(415) 555-0100",
            "closed_at": "2026-04-03T10:00:00Z",
            "items": [{"product_code": "GOLD", "quantity": quantity, "unit_price": 99}],
            "fields": {"plan": "gold"},
        }
        resp = client.post("/api/v1/sales", json=sale, headers=auth)
        assert resp.status_code == 201, resp.get_json()
        _work(bridge)

    with bridge.store.session() as s:
        states = [(p.kind, p.state, p.error_message) for p in s.scalars(select(Push))]
    assert states == [("demo", "sent", None), ("sale", "sent", None), ("sale", "sent", None)]
    [opp] = sf.query_all("SELECT Id, StageName, IsWon, Description, AccountId FROM Opportunity")[
        "records"
    ]
    assert (opp["StageName"], opp["IsWon"], opp["Description"]) == ("Closed Won", True, "gold")
    assert len(sf.query_all("SELECT Id FROM Account")["records"]) == 1
    assert len(sf.query_all("SELECT Id FROM Contact")["records"]) == 1
    items = sf.query_all("SELECT Quantity FROM OpportunityLineItem")["records"]
    assert sorted(i["Quantity"] for i in items) == [1, 3]
