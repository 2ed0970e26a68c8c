"""A new sales cycle against the local org: a referral's phase resting (or retired) ends the
cycle, and the next sale gets a new Opportunity on the same Account instead of taking the
earlier cycle's open one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.devorg.testing import DevOrg
from bridge.store import Store
from bridge.store.models import OrgConnection, Referral
from bridge.writeback import fieldsync
from tests.writeback.test_e2e_devorg import PACKAGE_FIELD, Bridge, write_config
from tests.writeback.test_sales_e2e import query, record, sale

pytestmark = pytest.mark.e2e


@pytest.fixture
def bridge(clean_devorg: DevOrg, sqlite_store: Store, tmp_path: Path) -> Iterator[Bridge]:
    if not PACKAGE_FIELD.exists():
        pytest.skip("the package's custom fields (force-app) are not in this checkout")
    sales = {"opportunity_at_demo": True, "create_price_entries": True, "phases": {}}
    path = write_config(tmp_path / "sfbridge.yaml", clean_devorg, {"sales": sales})
    yield Bridge(sqlite_store, clean_devorg, path)


def set_phase(bridge: Bridge, referral_id: int, phase: str) -> None:
    with bridge.store.session() as s:
        referral = s.get(Referral, referral_id)
        conn = s.get(OrgConnection, bridge.connection_id)
        assert referral is not None and conn is not None
        target = fieldsync.Target(conn, bridge.org_config)
        fieldsync.edit_referral(s, referral, {"phase": phase}, [target], actor="rep")


def test_a_rested_cycle_gets_a_new_opportunity_on_the_same_account(bridge: Bridge) -> None:
    bridge.sales.Product2.create({"Name": "Gold plan", "ProductCode": "GOLD"})
    bridge.sales.Product2.create({"Name": "Setup fee", "ProductCode": "SETUP"})
    rid = bridge.referral(1, last_name="Baker", phone="+1 415 555 0199", company="Bluebird Bakery")
    demo = record(
        bridge, "demo", rid, {"id": "demo-1", "state": "set", "at": "2026-03-05T17:00:00+00:00"}
    )
    assert bridge.send(demo).sent == [demo], bridge.push(demo).error_message
    [first] = query(bridge, "SELECT Id, AccountId, IsClosed FROM Opportunity")
    assert first["IsClosed"] is False
    assert bridge.referral_row(rid).sf_opportunity_id == first["Id"]

    set_phase(bridge, rid, "PostHoldPhase")  # still this cycle
    assert bridge.referral_row(rid).sf_opportunity_id == first["Id"]
    set_phase(bridge, rid, "Resting")  # the cycle ends: its Opportunity is no longer current
    assert bridge.referral_row(rid).sf_opportunity_id is None

    set_phase(bridge, rid, "ColdCallCold")
    won = record(bridge, "sale", rid, sale(1))
    assert bridge.send(won).sent == [won], bridge.push(won).error_message
    opps = query(bridge, "SELECT Id, AccountId, IsWon, IsClosed FROM Opportunity ORDER BY Name")
    assert len(opps) == 2 and {o["AccountId"] for o in opps} == {first["AccountId"]}
    [new] = [o for o in opps if o["Id"] != first["Id"]]
    assert new["IsWon"] is True
    assert [o for o in opps if o["Id"] == first["Id"]][0]["IsClosed"] is False  # left alone
    result = bridge.push(won).payload["result"]["opportunity"]
    assert result["action"] == "create"
    assert result["reason"] == (
        "no open opportunity of this cycle (a new sales cycle: the phase rested or retired "
        "the last one)"
    )
    assert bridge.referral_row(rid).sf_opportunity_id == new["Id"]
