"""Every receiver outcome, end to end: a change in the local org → stream → worker → entry.

Real parts: the local org over HTTPS, `sfbridge stream` and `sfbridge worker` as processes,
Redis, SQLite. The receiver config makes each of the four outcomes reachable from one change.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from bridge.config import load_config
from bridge.devorg.testing import DevOrg
from bridge.store.models import Program, Referral, SalesEntry
from tests.harness import ORG, Bridge, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

RECEIVER = {
    "program": "main",
    "status_rules": [
        {"status": "qualified", "object": "Lead", "field": "Status", "op": "equals",
         "value": "Working - Contacted"},
    ],
    "target_match": {"direct_fields": ["Lead.Referral_ID__c"], "fuzzy": True},
    "member_match": {"referral_code": ["Lead.Referral_Code__c"], "member_email": [],
                     "member_external_id": []},
    "process": {"auto_process_direct": True, "auto_process_fuzzy": False,
                "review_when_no_member": False},
}  # fmt: skip


@pytest.fixture
def bridge(clean_devorg: DevOrg, redis_url: str, tmp_path: Path) -> Iterator[Bridge]:
    b = Bridge(tmp_path / "bridge", clean_devorg, redis_url, topics=["SFB_Lead"])
    config: dict[str, Any] = yaml.safe_load(b.config_path.read_text())
    config["orgs"][ORG]["receiver"] = RECEIVER
    b.config_path.write_text(yaml.safe_dump(config))
    b.config = load_config(str(b.config_path))
    b.install()
    with b.store.session() as session:
        program = Program(key="main", name="Main")
        session.add(program)
        session.flush()
        session.add_all(
            [
                Referral(public_id="REF-DIRECT", program_id=program.id, first_name="Dana",
                         last_name="Direct", email="dana@direct.test"),
                Referral(public_id="REF-FUZZY", program_id=program.id, first_name="Fiona",
                         last_name="Fuzzwell", email="fiona.fuzzwell@fuzzy.test"),
            ]
        )  # fmt: skip
    yield b
    b.close()


def test_each_outcome_from_a_change_in_the_org(bridge: Bridge) -> None:
    bridge.start_subscribed()
    bridge.start("worker", "worker")
    sales = bridge.org.sf("sales")
    contacted = {"Status": "Working - Contacted", "Company": "Acme"}
    ids = {
        # The Referral ID names the referral: direct match, auto-processed.
        "processed": sales.Lead.create(
            {"LastName": "Direct", "Email": "dana@direct.test", "Referral_ID__c": "REF-DIRECT",
             **contacted}
        )["id"],
        # Only the email (in another case) ties it to a referral: fuzzy, so a reviewer decides.
        "review": sales.Lead.create(
            {"FirstName": "Fiona", "LastName": "Fuzzwell", "Email": "Fiona.Fuzzwell@FUZZY.test",
             **contacted}
        )["id"],
        # A referral code no member has, and review_when_no_member is off.
        "failed": sales.Lead.create(
            {"LastName": "Nobody", "Email": "nobody@else.test", "Referral_Code__c": "NO-SUCH",
             **contacted}
        )["id"],
        # The bridge's own write (the integration user): recorded and skipped.
        "skipped": bridge.org.sf("integration").Lead.create(
            {"LastName": "Own", "Email": "own@write.test", "Referral_ID__c": "REF-DIRECT",
             **contacted}
        )["id"],
    }  # fmt: skip

    def outcomes() -> dict[str, SalesEntry]:
        with bridge.store.session() as session:
            rows = session.scalars(select(SalesEntry).where(SalesEntry.outcome != "new")).all()
            return {e.record_id: e for e in rows if e.record_id in ids.values()}

    found = wait_until(
        lambda: o if len(o := outcomes()) == len(ids) else None,
        60,
        "an entry for each change",
        lambda: f"{outcomes()}\n--- worker\n{bridge.log('worker')[-3000:]}",
    )
    by_expected = {expected: found[record_id] for expected, record_id in ids.items()}
    for expected, entry in by_expected.items():
        assert entry.outcome == expected, (expected, entry.outcome, entry.reasons, entry.error)
    assert "direct_match" in by_expected["processed"].reasons
    assert "fuzzy_match" in by_expected["review"].reasons
    assert by_expected["review"].candidates, "the fuzzy candidates are kept on the entry"
    assert "unmatched" in by_expected["failed"].reasons
    assert by_expected["skipped"].reasons == ["own_write"]
    with bridge.store.session() as session:
        direct = session.scalars(select(Referral).where(Referral.public_id == "REF-DIRECT")).one()
        fuzzy = session.scalars(select(Referral).where(Referral.public_id == "REF-FUZZY")).one()
        assert direct.status == "qualified"
        assert fuzzy.status == "pending"  # waits for the reviewer
