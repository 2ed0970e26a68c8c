"""Campaign membership: which refused CampaignMember inserts mean "already a member"."""

from __future__ import annotations

import pytest

from bridge.writeback.campaigns import already_member
from bridge.writeback.client import RecordError


@pytest.mark.parametrize(
    ("sobject", "code", "message", "member"),
    [
        ("CampaignMember", "DUPLICATE_VALUE", "Already a campaign member.", True),
        # a custom unique field's duplicate is the data's to fix, not a membership
        ("CampaignMember", "DUPLICATE_VALUE",
         "duplicate value found: Member_Key__c duplicates value on record with id: 00v1", False),
        ("CampaignMember", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "Status: bad value", False),
        ("Lead", "DUPLICATE_VALUE", "Already a campaign member.", False),
    ],
)  # fmt: skip
def test_already_member(sobject: str, code: str, message: str, member: bool) -> None:
    note = already_member(sobject, RecordError(code, message, []))
    assert (note is not None) == member
    if member:
        assert note == f"already a member of the campaign (Salesforce: {code}, {message})"
