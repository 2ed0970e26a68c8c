"""Campaigns, users and price books in a real devorg process, through simple-salesforce: the
objects lead routing (campaign membership, owners by user email) and the sales pipeline (line
items from the standard price book) write, with Salesforce's rules and error codes."""

from __future__ import annotations

from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from bridge.devorg.testing import DevOrg

pytestmark = pytest.mark.e2e


def refused(call: Any, *args: Any) -> dict[str, Any]:
    """The one Salesforce error a refused write answers with."""
    with pytest.raises(SalesforceMalformedRequest) as caught:
        call(*args)
    (error,) = caught.value.content
    return dict(error)


# ---- campaigns ---------------------------------------------------------------------------------


def test_campaign_describe_and_default_member_statuses(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf("integration")
    fields = {f["name"]: f for f in sf.Campaign.describe()["fields"]}
    assert [v["value"] for v in fields["Status"]["picklistValues"]] == [
        "Planned", "In Progress", "Completed", "Aborted"
    ]  # fmt: skip
    assert fields["IsActive"]["defaultValue"] is False
    assert fields["NumberOfLeads"]["updateable"] is False
    member = {f["name"]: f for f in sf.CampaignMember.describe()["fields"]}
    assert member["CampaignId"]["referenceTo"] == ["Campaign"]
    assert member["LeadId"]["updateable"] is False
    assert sf.CampaignMember.describe()["keyPrefix"] == "00v"

    campaign = sf.Campaign.create({"Name": "Spring webinar", "IsActive": True})["id"]
    statuses = sf.query(
        "SELECT Label, IsDefault, HasResponded FROM CampaignMemberStatus "
        f"WHERE CampaignId = '{campaign}' ORDER BY SortOrder"
    )["records"]
    assert [(s["Label"], s["IsDefault"], s["HasResponded"]) for s in statuses] == [
        ("Sent", True, False), ("Responded", False, True)
    ]  # fmt: skip
    active = sf.query("SELECT Id, IsActive, Status FROM Campaign WHERE IsActive = true")
    assert [(r["Id"], r["Status"]) for r in active["records"]] == [(campaign, "Planned")]


def test_campaign_members_are_unique_per_lead_and_contact(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf("integration")
    campaign = sf.Campaign.create({"Name": "Routing"})["id"]
    lead = sf.Lead.create({"LastName": "Lee", "Company": "Acme", "Email": "lee@acme.test"})["id"]
    member = sf.CampaignMember.create({"CampaignId": campaign, "LeadId": lead})["id"]
    row = sf.CampaignMember.get(member)
    assert (row["Status"], row["HasResponded"], row["Type"]) == ("Sent", False, "Lead")
    assert (row["LeadOrContactId"], row["Email"], row["CompanyOrAccount"]) == (
        lead, "lee@acme.test", "Acme"
    )  # fmt: skip

    error = refused(sf.CampaignMember.create, {"CampaignId": campaign, "LeadId": lead})
    assert (error["errorCode"], error["message"]) == (
        "DUPLICATE_VALUE",
        "Already a campaign member.",
    )

    error = refused(sf.CampaignMember.create, {"CampaignId": campaign})
    assert error["errorCode"] == "REQUIRED_FIELD_MISSING"
    other = sf.Lead.create({"LastName": "Other", "Company": "Co"})["id"]
    error = refused(
        sf.CampaignMember.create, {"CampaignId": campaign, "LeadId": other, "Status": "Maybe"}
    )
    assert error["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    error = refused(sf.CampaignMember.update, member, {"LeadId": other})
    assert error["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"

    # a contact may join the same campaign; both ids given: only the contact is kept
    contact = sf.Contact.create({"LastName": "Cole"})["id"]
    both = sf.CampaignMember.create(
        {"CampaignId": campaign, "ContactId": contact, "LeadId": other, "Status": "Responded"}
    )["id"]
    row = sf.CampaignMember.get(both)
    assert (row["ContactId"], row["LeadId"], row["Type"]) == (contact, None, "Contact")
    assert row["HasResponded"] is True and row["FirstRespondedDate"]

    sf.CampaignMember.update(member, {"Status": "Responded"})
    assert sf.CampaignMember.get(member)["HasResponded"] is True
    counts = sf.Campaign.get(campaign)
    assert (counts["NumberOfLeads"], counts["NumberOfContacts"], counts["NumberOfResponses"]) == (
        1, 1, 2
    )  # fmt: skip

    joined = sf.query(
        f"SELECT Id, (SELECT LeadId FROM CampaignMembers) FROM Campaign WHERE Id = '{campaign}'"
    )["records"][0]
    assert sorted(str(m["LeadId"]) for m in joined["CampaignMembers"]["records"]) == sorted(
        [lead, "None"]
    )
    in_campaign = sf.query(
        "SELECT LeadId FROM CampaignMember "
        f"WHERE CampaignId = '{campaign}' AND LeadId IN ('{lead}', '{other}')"
    )
    assert [r["LeadId"] for r in in_campaign["records"]] == [lead]

    sf.Lead.delete(lead)  # a deleted lead leaves its campaigns
    assert sf.query(f"SELECT COUNT() FROM CampaignMember WHERE LeadId = '{lead}'")["totalSize"] == 0
    assert sf.Campaign.get(campaign)["NumberOfLeads"] == 0


def test_a_custom_member_status_can_be_added(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf("integration")
    campaign = sf.Campaign.create({"Name": "Signals"})["id"]
    sf.CampaignMemberStatus.create(
        {"CampaignId": campaign, "Label": "Routed", "SortOrder": 3, "HasResponded": False}
    )
    lead = sf.Lead.create({"LastName": "Lee", "Company": "Acme"})["id"]
    member = sf.CampaignMember.create({"CampaignId": campaign, "LeadId": lead, "Status": "Routed"})
    assert sf.CampaignMember.get(member["id"])["Status"] == "Routed"


# ---- users -------------------------------------------------------------------------------------


def _user(sf: Any, name: str, *, active: bool = True) -> str:
    return str(
        sf.User.create(
            {
                "Username": f"{name}@reps.test",
                "LastName": name.title(),
                "Email": f"{name}@reps.test",
                "Alias": name[:8],
                "IsActive": active,
                "TimeZoneSidKey": "GMT",
                "LocaleSidKey": "en_US",
                "EmailEncodingKey": "UTF-8",
                "LanguageLocaleKey": "en_US",
                "ProfileId": "00e8d0000000001AAA",
            }
        )["id"]
    )


def test_users_by_email_and_inactive_owners(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf("integration")
    active, gone = _user(sf, "ada"), _user(sf, "bob", active=False)
    found = sf.query(
        "SELECT Id, Email, IsActive FROM User "
        "WHERE Email IN ('ada@reps.test', 'bob@reps.test', 'nobody@reps.test') ORDER BY Email"
    )["records"]
    assert [(u["Id"], u["IsActive"]) for u in found] == [(active, True), (gone, False)]
    assert (
        sf.query("SELECT COUNT() FROM User WHERE IsActive = true AND Email = 'bob@reps.test'")[
            "totalSize"
        ]
        == 0
    )

    lead = sf.Lead.create({"LastName": "L", "Company": "Co", "OwnerId": active})["id"]
    assert sf.Lead.get(lead)["OwnerId"] == active
    error = refused(sf.Lead.update, lead, {"OwnerId": gone})
    assert error["errorCode"] == "INACTIVE_OWNER_OR_USER"
    error = refused(sf.Account.create, {"Name": "Acme", "OwnerId": gone})
    assert error["errorCode"] == "INACTIVE_OWNER_OR_USER"
    error = refused(sf.Account.create, {"Name": "Acme", "OwnerId": "005000000000000AAA"})
    assert error["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        _user(sf, "ada")
    assert caught.value.content[0]["errorCode"] == "DUPLICATE_USERNAME"

    clean_devorg.control("reset")  # users made through the API go with the records
    usernames = {u["Username"] for u in sf.query("SELECT Username FROM User")["records"]}
    assert usernames == {"integration@sfbridge.devorg", "sales@sfbridge.devorg"}


def test_account_fields_that_ownership_rules_read(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf("integration")
    sf.Account.create(
        {"Name": "Big", "Industry": "Technology", "NumberOfEmployees": 500, "BillingCountry": "US"}
    )
    sf.Account.create({"Name": "Small", "Industry": "Technology", "NumberOfEmployees": 5})
    segment = sf.query(
        "SELECT Name FROM Account WHERE Industry = 'Technology' AND NumberOfEmployees >= 100 "
        "AND BillingCountry IN ('US', 'CA')"
    )
    assert [r["Name"] for r in segment["records"]] == ["Big"]
    error = refused(sf.Account.create, {"Name": "Bad", "NumberOfEmployees": "many"})
    assert error["errorCode"] == "JSON_PARSER_ERROR"


# ---- price books and line items ----------------------------------------------------------------


def _standard_book(sf: Any) -> str:
    (book,) = sf.query("SELECT Id, Name, IsActive FROM Pricebook2 WHERE IsStandard = true")[
        "records"
    ]
    assert (book["Name"], book["IsActive"]) == ("Standard Price Book", True)
    return str(book["Id"])


def test_the_standard_price_book_exists_and_stays(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf("integration")
    standard = _standard_book(sf)
    error = refused(sf.Pricebook2.delete, standard)
    assert error["errorCode"] == "DELETE_FAILED"
    error = refused(sf.Pricebook2.update, standard, {"IsStandard": False})
    assert error["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    clean_devorg.control("reset")
    assert _standard_book(sf) == standard  # the same id after a reset, as in a real org
    describe = {f["name"]: f for f in sf.PricebookEntry.describe()["fields"]}
    assert describe["Pricebook2Id"]["referenceTo"] == ["Pricebook2"]
    assert describe["UnitPrice"]["nillable"] is False


def test_price_book_entries_need_a_standard_price_first(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf("integration")
    standard = _standard_book(sf)
    custom = sf.Pricebook2.create({"Name": "Partners", "IsActive": True})["id"]
    product = sf.Product2.create({"Name": "Widget", "ProductCode": "W-1", "IsActive": True})["id"]

    error = refused(
        sf.PricebookEntry.create,
        {"Pricebook2Id": custom, "Product2Id": product, "UnitPrice": 8, "IsActive": True},
    )
    assert (error["errorCode"], error["message"]) == (
        "STANDARD_PRICE_NOT_DEFINED", "No standard price defined for this product"
    )  # fmt: skip
    entry = sf.PricebookEntry.create(
        {"Pricebook2Id": standard, "Product2Id": product, "UnitPrice": 10, "IsActive": True}
    )["id"]
    row = sf.PricebookEntry.get(entry)
    assert (row["Name"], row["ProductCode"], row["UnitPrice"]) == ("Widget", "W-1", 10.0)
    error = refused(
        sf.PricebookEntry.create, {"Pricebook2Id": standard, "Product2Id": product, "UnitPrice": 9}
    )
    assert (error["errorCode"], error["message"]) == (
        "FIELD_INTEGRITY_EXCEPTION", "This price definition already exists in this price book"
    )  # fmt: skip
    partner = sf.PricebookEntry.create(
        {"Pricebook2Id": custom, "Product2Id": product, "UnitPrice": 1, "UseStandardPrice": True,
         "IsActive": True}
    )["id"]  # fmt: skip
    assert sf.PricebookEntry.get(partner)["UnitPrice"] == 10.0
    found = sf.query(
        "SELECT Id, UnitPrice, Product2.ProductCode FROM PricebookEntry "
        "WHERE Pricebook2.IsStandard = true AND Product2.ProductCode IN ('W-1', 'W-2')"
    )["records"]
    assert [(r["Id"], r["Product2"]["ProductCode"]) for r in found] == [(entry, "W-1")]


def test_line_items_come_from_the_opportunitys_price_book(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf("integration")
    standard = _standard_book(sf)
    custom = sf.Pricebook2.create({"Name": "Partners", "IsActive": True})["id"]
    widget = sf.Product2.create({"Name": "Widget", "ProductCode": "W-1"})["id"]
    gadget = sf.Product2.create({"Name": "Gadget", "ProductCode": "G-1"})["id"]
    widget_std = sf.PricebookEntry.create(
        {"Pricebook2Id": standard, "Product2Id": widget, "UnitPrice": 10, "IsActive": True}
    )["id"]
    gadget_std = sf.PricebookEntry.create(
        {"Pricebook2Id": standard, "Product2Id": gadget, "UnitPrice": 4, "IsActive": False}
    )["id"]
    widget_custom = sf.PricebookEntry.create(
        {"Pricebook2Id": custom, "Product2Id": widget, "UnitPrice": 8, "IsActive": True}
    )["id"]
    opp = sf.Opportunity.create(
        {"Name": "Acme sale", "StageName": "Prospecting", "CloseDate": "2026-12-31"}
    )["id"]

    item = sf.OpportunityLineItem.create(
        {"OpportunityId": opp, "PricebookEntryId": widget_std, "Quantity": 3, "UnitPrice": 9.5}
    )["id"]
    row = sf.OpportunityLineItem.get(item)
    assert (row["Product2Id"], row["ListPrice"], row["TotalPrice"], row["ProductCode"]) == (
        widget, 10.0, 28.5, "W-1"
    )  # fmt: skip
    deal = sf.Opportunity.get(opp)
    assert (deal["Pricebook2Id"], deal["Amount"], deal["HasOpportunityLineItem"]) == (
        standard, 28.5, True
    )  # the first line item sets the price book  # fmt: skip

    error = refused(
        sf.OpportunityLineItem.create,
        {"OpportunityId": opp, "PricebookEntryId": widget_custom, "Quantity": 1, "UnitPrice": 8},
    )
    assert error["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert "different pricebook than the one assigned to the opportunity" in error["message"]
    error = refused(
        sf.OpportunityLineItem.create,
        {"OpportunityId": opp, "PricebookEntryId": gadget_std, "Quantity": 1, "UnitPrice": 4},
    )
    assert "pricebook entry is inactive" in error["message"]
    error = refused(sf.OpportunityLineItem.create, {"OpportunityId": opp, "Quantity": 1,
                                                    "UnitPrice": 1})  # fmt: skip
    assert error["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert "must specify pricebook entry id" in error["message"]

    # by Product2Id: the entry of the opportunity's price book
    by_product = sf.OpportunityLineItem.create(
        {"OpportunityId": opp, "Product2Id": widget, "Quantity": 1, "UnitPrice": 10}
    )["id"]
    assert sf.OpportunityLineItem.get(by_product)["PricebookEntryId"] == widget_std
    assert sf.Opportunity.get(opp)["Amount"] == 38.5

    sf.Opportunity.update(opp, {"Amount": 1})  # ignored while it has line items
    assert sf.Opportunity.get(opp)["Amount"] == 38.5
    error = refused(sf.Opportunity.update, opp, {"Pricebook2Id": custom})
    assert error["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    items = sf.query(
        "SELECT Quantity, PricebookEntry.Product2.Name FROM OpportunityLineItem "
        f"WHERE OpportunityId = '{opp}' ORDER BY Quantity"
    )["records"]
    assert [(i["Quantity"], i["PricebookEntry"]["Product2"]["Name"]) for i in items] == [
        (1.0, "Widget"), (3.0, "Widget")
    ]  # fmt: skip


def test_members_and_line_items_in_batches(clean_devorg: DevOrg) -> None:
    """The bridge batches: one sObject Collections call adds a campaign's new members (a repeat
    fails alone) and one adds an opportunity's line items by product."""
    sf = clean_devorg.sf("integration")
    campaign = sf.Campaign.create({"Name": "Batch", "IsActive": True})["id"]
    leads = [sf.Lead.create({"LastName": f"L{i}", "Company": "Co"})["id"] for i in range(3)]
    members = [{"attributes": {"type": "CampaignMember"}, "CampaignId": campaign, "LeadId": lead}
               for lead in [*leads, leads[0]]]  # fmt: skip
    results = sf.restful("composite/sobjects", method="POST", json={"records": members})
    assert [r["success"] for r in results] == [True, True, True, False]
    assert results[3]["errors"][0]["statusCode"] == "DUPLICATE_VALUE"
    assert sf.Campaign.get(campaign)["NumberOfLeads"] == 3

    standard = _standard_book(sf)
    products = [sf.Product2.create({"Name": f"P{i}", "ProductCode": f"P-{i}"})["id"]
                for i in range(3)]  # fmt: skip
    entries = [{"attributes": {"type": "PricebookEntry"}, "Pricebook2Id": standard,
                "Product2Id": p, "UnitPrice": 5 * (i + 1), "IsActive": True}
               for i, p in enumerate(products)]  # fmt: skip
    assert all(r["success"] for r in sf.restful(
        "composite/sobjects", method="POST", json={"records": entries}))  # fmt: skip
    opp = sf.Opportunity.create(
        {"Name": "Batch sale", "StageName": "Qualification", "CloseDate": "2026-12-31"}
    )["id"]
    items = [{"attributes": {"type": "OpportunityLineItem"}, "OpportunityId": opp,
              "Product2Id": p, "Quantity": 2, "UnitPrice": 5 * (i + 1)}
             for i, p in enumerate(products)]  # fmt: skip
    results = sf.restful(
        "composite/sobjects", method="POST", json={"allOrNone": True, "records": items}
    )
    assert all(r["success"] for r in results)
    deal = sf.Opportunity.get(opp)
    assert (deal["Amount"], deal["Pricebook2Id"]) == (60.0, standard)
