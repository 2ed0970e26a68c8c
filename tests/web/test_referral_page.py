"""The console's referral page: fields, Salesforce records, field history, and the edit form
that saves a local edit (audited) and queues the pushes its sync rules call for."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bridge.store.models import AuditLog, Push, Referral
from tests.web.conftest import AuthActions
from tests.web.seed import CONFIG_YAML, Seeded

WRITEBACK = """\
    writeback:
      objects:
        Lead:
          fields:
            - {local: company, salesforce: Company, sync: ours}
            - {local: plan, salesforce: Plan__c, sync: read_only}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "sfbridge.yaml"
    path.write_text(CONFIG_YAML + WRITEBACK, encoding="utf-8")
    return path


def test_a_reviewer_edits_a_referral_and_the_rules_decide_what_is_pushed(
    app: Flask, client: FlaskClient, auth: AuthActions, seeded: Seeded
) -> None:
    rid = seeded.ids["ref_bob"]
    with app.extensions["sfbridge"].store.session() as s:
        bob = s.get(Referral, rid)
        assert bob is not None
        bob.sf_lead_id, bob.sf_contact_id = "00Q000000000009AAA", None
        bob.fields = {"plan": "gold"}
    assert client.get(f"/referrals/{rid}").status_code == 302  # sign in first
    auth.login()
    html = client.get(f"/referrals/{rid}").get_data(as_text=True)
    assert "00Q000000000009AAA" in html and 'name="field:plan"' in html
    resp = auth.post(
        f"/referrals/{rid}/edit",
        {"first_name": "Bob", "last_name": "Buyer", "company": "Bob Ltd", "field:plan": "silver"},
        follow_redirects=True,
    )
    page = resp.get_data(as_text=True)
    assert "1 write(s) to Salesforce" in page
    assert "Bob Ltd" in page and "silver" in page  # the form and the history show the edit
    with app.extensions["sfbridge"].store.session() as s:
        [push] = s.scalars(select(Push).where(Push.referral_id == rid, Push.kind == "field_update"))
        assert push.payload["fields"] == {"Company": "Bob Ltd"}  # plan is read_only
        [audit] = s.scalars(select(AuditLog).where(AuditLog.action == "referral.update"))
        assert audit.actor == "reviewer@example.com"
        assert audit.detail["fields"] == ["company", "plan"]
    again = auth.post(f"/referrals/{rid}/edit", {"company": "Bob Ltd"}, follow_redirects=True)
    assert "Nothing changed." in again.get_data(as_text=True)
    cleared = auth.post(f"/referrals/{rid}/edit", {"last_name": ""}, follow_redirects=True)
    assert "keeps its last name" in cleared.get_data(as_text=True)
    assert client.get("/referrals/999999").status_code == 404


def test_the_page_shows_the_referrals_owner(
    app: Flask, client: FlaskClient, auth: AuthActions, seeded: Seeded
) -> None:
    rid = seeded.ids["ref_bob"]
    auth.login()
    assert 'id="referral-owner">—<' in client.get(f"/referrals/{rid}").get_data(as_text=True)
    with app.extensions["sfbridge"].store.session() as s:
        bob = s.get(Referral, rid)
        assert bob is not None
        bob.owner = "rep-17"
    html = client.get(f"/referrals/{rid}").get_data(as_text=True)
    assert 'id="referral-owner">rep-17<' in html
