"""The field rules the API checks input against, read from the local org's describe."""

from __future__ import annotations

import pytest

from bridge.devorg.testing import DevOrg
from bridge.writeback.fit import field_rules, misfits

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def test_the_orgs_describe_gives_lead_last_name_80_and_an_email_field(devorg: DevOrg) -> None:
    rules = field_rules(devorg.sf("integration").Lead.describe())
    found = misfits("Lead", {"LastName": "x" * 81, "Email": "not-an-email", "City": "Oslo"}, rules)
    assert [(m.field, m.problem, m.limit, m.length) for m in found] == [
        ("LastName", "too_long", 80, 81),
        ("Email", "invalid_email", None, 12),
    ]
    assert misfits("Lead", {"LastName": "x" * 80, "Email": "jo@example.com"}, rules) == []


def test_a_restricted_picklist_takes_only_its_values() -> None:
    rules = field_rules(
        {"fields": [{"name": "Stage__c", "type": "picklist", "length": 255,
                     "restrictedPicklist": True, "picklistValues": [{"value": "A", "active": True},
                     {"value": "B", "active": False}]},
                    {"name": "Open__c", "type": "picklist", "length": 255,
                     "picklistValues": [{"value": "A", "active": True}]}]}
    )  # fmt: skip
    assert [m.problem for m in misfits("X", {"Stage__c": "B", "Open__c": "Z"}, rules)] == [
        "bad_picklist_value"  # inactive values are refused; unrestricted ones take anything
    ]
    assert misfits("X", {"stage__c": "A"}, rules) == []  # field names are case-insensitive
