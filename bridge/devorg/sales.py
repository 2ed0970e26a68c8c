"""The record rules of campaigns and price books in the local org (Object Reference: Campaign,
CampaignMember, CampaignMemberStatus, Pricebook2, PricebookEntry, OpportunityLineItem).

`dml` calls these on every write: `derive` fills the fields Salesforce computes, `check` adds
Salesforce's refusals to the write's error list, `after_write` keeps the parents' roll-ups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.devorg import ids
from bridge.devorg.replies import sf_error
from bridge.devorg.schema import STANDARD_PRICE_BOOK, ObjectDef

if TYPE_CHECKING:
    from bridge.devorg.state import DevOrgState, Transaction

#: The member statuses Salesforce gives every new campaign: (label, is default, has responded).
DEFAULT_MEMBER_STATUSES = [("Sent", True, False), ("Responded", False, True)]

#: The standard price book's id: the same in every reset of a local org, as in a real org.
STANDARD_PRICE_BOOK_ID = ids.make_id("01s", 1)

_PERSON_FIELDS = {  # CampaignMember field -> (Lead field, Contact field)
    "FirstName": ("FirstName", "FirstName"),
    "LastName": ("LastName", "LastName"),
    "Name": ("Name", "Name"),
    "Title": ("Title", "Title"),
    "Email": ("Email", "Email"),
    "Phone": ("Phone", "Phone"),
    "MobilePhone": ("MobilePhone", "MobilePhone"),
    "City": ("City", "MailingCity"),
    "State": ("State", "MailingState"),
    "Country": ("Country", "MailingCountry"),
    "LeadSource": ("LeadSource", "LeadSource"),
    "DoNotCall": ("DoNotCall", "DoNotCall"),
    "HasOptedOutOfEmail": ("HasOptedOutOfEmail", "HasOptedOutOfEmail"),
    "LeadOrContactOwnerId": ("OwnerId", "OwnerId"),
}
_NO_ENTRY = (
    "field integrity exception: PricebookEntryId, unknown (versions 3.0 and higher must specify "
    "pricebook entry id, others must specify product id)"
)


def member_statuses(state: DevOrgState, campaign_id: str) -> list[dict[str, Any]]:
    rows = [r for r in state.records("CampaignMemberStatus") if r.get("CampaignId") == campaign_id]
    return sorted(rows, key=lambda r: r.get("SortOrder") or 0)


def standard_entry(state: DevOrgState, product_id: str) -> dict[str, Any] | None:
    return _entry(state, STANDARD_PRICE_BOOK_ID, product_id)


def _entry(state: DevOrgState, pricebook_id: str, product_id: str) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in state.records("PricebookEntry")
            if r.get("Pricebook2Id") == pricebook_id and r.get("Product2Id") == product_id
        ),
        None,
    )


# ---- derived fields ----------------------------------------------------------------------------


def derive(
    state: DevOrgState, o: ObjectDef, rec: dict[str, Any], old: dict[str, Any] | None
) -> None:
    if o.name == "CampaignMember":
        _derive_member(state, rec, old)
    elif o.name == "PricebookEntry":
        product = state.get("Product2", rec.get("Product2Id") or "") or {}
        rec["Name"], rec["ProductCode"] = product.get("Name"), product.get("ProductCode")
        standard = standard_entry(state, rec.get("Product2Id") or "")
        if rec.get("UseStandardPrice") and standard is not None and standard["Id"] != rec["Id"]:
            rec["UnitPrice"] = standard.get("UnitPrice")
    elif o.name == "OpportunityLineItem" and old is None:
        _derive_line_item(state, rec)


def drop_ignored(o: ObjectDef, old: dict[str, Any], values: dict[str, Any]) -> None:
    """Drop what an update may send but Salesforce ignores: an opportunity's Amount once it has
    line items ("The API ignores any attempt to update this field")."""
    if o.name == "Opportunity" and old.get("HasOpportunityLineItem"):
        values.pop("Amount", None)


def _derive_member(state: DevOrgState, rec: dict[str, Any], old: dict[str, Any] | None) -> None:
    if old is None and rec.get("ContactId") and rec.get("LeadId"):
        rec["LeadId"] = None  # "only the ContactId is inserted" (Object Reference)
    person_id = rec.get("ContactId") or rec.get("LeadId")
    kind = "Contact" if rec.get("ContactId") else "Lead"
    person = state.get(kind, person_id or "", include_deleted=True) or {}
    rec["LeadOrContactId"], rec["Type"] = person_id, kind
    for member_field, (lead_field, contact_field) in _PERSON_FIELDS.items():
        rec[member_field] = person.get(lead_field if kind == "Lead" else contact_field)
    if kind == "Lead":
        rec["CompanyOrAccount"] = person.get("Company")
    else:
        account = state.get("Account", person.get("AccountId") or "") or {}
        rec["CompanyOrAccount"] = account.get("Name")
    statuses = member_statuses(state, rec.get("CampaignId") or "")
    if not rec.get("Status"):
        default = next((s for s in statuses if s.get("IsDefault")), None)
        rec["Status"] = default.get("Label") if default else None
    status = next((s for s in statuses if s.get("Label") == rec.get("Status")), None)
    rec["HasResponded"] = bool(status and status.get("HasResponded"))
    if rec["HasResponded"] and not rec.get("FirstRespondedDate"):
        rec["FirstRespondedDate"] = rec["LastModifiedDate"][:10]


def _derive_line_item(state: DevOrgState, rec: dict[str, Any]) -> None:
    """The price book entry of a new line item (given, or found for its Product2Id in the
    opportunity's price book, else the standard one), and the fields it brings."""
    opp = state.get("Opportunity", rec.get("OpportunityId") or "") or {}
    entry = state.get("PricebookEntry", rec.get("PricebookEntryId") or "")
    if entry is None and rec.get("Product2Id") and not rec.get("PricebookEntryId"):
        book = opp.get("Pricebook2Id") or STANDARD_PRICE_BOOK_ID
        entry = _entry(state, book, rec["Product2Id"])
        if entry is not None:
            rec["PricebookEntryId"] = entry["Id"]
    if entry is None:
        return  # check() refuses it
    rec["Product2Id"] = entry.get("Product2Id")
    rec["ListPrice"] = entry.get("UnitPrice")
    product = state.get("Product2", entry.get("Product2Id") or "") or {}
    rec["ProductCode"] = product.get("ProductCode")
    rec["Name"] = f"{opp.get('Name', '')} {product.get('Name', '')}".strip()


# ---- refusals ----------------------------------------------------------------------------------


def check(
    state: DevOrgState,
    o: ObjectDef,
    rec: dict[str, Any],
    old: dict[str, Any] | None,
    errors: list[dict[str, Any]],
) -> None:
    if o.name == "CampaignMember":
        _check_member(state, rec, errors)
    elif o.name == "PricebookEntry" and old is None:
        _check_entry(state, rec, errors)
    elif o.name == "OpportunityLineItem" and old is None:
        _check_line_item(state, rec, errors)
    elif (
        o.name == "Opportunity"
        and old is not None
        and old.get("HasOpportunityLineItem")
        and rec.get("Pricebook2Id") != old.get("Pricebook2Id")
    ):
        errors.append(
            sf_error(
                "FIELD_INTEGRITY_EXCEPTION",
                "field integrity exception: unknown (cannot change pricebook on an "
                "opportunity with line items)",
                ["Pricebook2Id"],
            )
        )


def _check_member(state: DevOrgState, rec: dict[str, Any], errors: list[dict[str, Any]]) -> None:
    if not (rec.get("LeadId") or rec.get("ContactId")):
        errors.append(
            sf_error(
                "REQUIRED_FIELD_MISSING",
                "Required fields are missing: [LeadId, ContactId]",
                ["LeadId", "ContactId"],
            )
        )
        return
    person = "ContactId" if rec.get("ContactId") else "LeadId"
    for other in state.records("CampaignMember"):
        if (
            other["Id"] != rec["Id"]
            and other.get("CampaignId") == rec.get("CampaignId")
            and other.get(person) == rec[person]
        ):
            errors.append(sf_error("DUPLICATE_VALUE", "Already a campaign member.", []))
            return
    labels = [s.get("Label") for s in member_statuses(state, rec.get("CampaignId") or "")]
    if rec.get("Status") not in labels:
        errors.append(
            sf_error(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"Status: bad value for restricted picklist field: {rec.get('Status')}",
                ["Status"],
            )
        )


def _check_entry(state: DevOrgState, rec: dict[str, Any], errors: list[dict[str, Any]]) -> None:
    book, product = rec.get("Pricebook2Id") or "", rec.get("Product2Id") or ""
    if _entry(state, book, product) is not None:
        errors.append(
            sf_error(
                "FIELD_INTEGRITY_EXCEPTION",
                "This price definition already exists in this price book",
                [],
            )
        )
    elif book != STANDARD_PRICE_BOOK_ID and standard_entry(state, product) is None:
        errors.append(
            sf_error("STANDARD_PRICE_NOT_DEFINED", "No standard price defined for this product", [])
        )


def _check_line_item(state: DevOrgState, rec: dict[str, Any], errors: list[dict[str, Any]]) -> None:
    entry = state.get("PricebookEntry", rec.get("PricebookEntryId") or "")
    if entry is None:
        if not rec.get("PricebookEntryId"):  # (a bad or deleted id is refused as a reference)
            errors.append(sf_error("FIELD_INTEGRITY_EXCEPTION", _NO_ENTRY, ["PricebookEntryId"]))
        return
    opp = state.get("Opportunity", rec.get("OpportunityId") or "") or {}
    book = opp.get("Pricebook2Id")
    if book and entry.get("Pricebook2Id") != book:
        errors.append(
            sf_error(
                "FIELD_INTEGRITY_EXCEPTION",
                "field integrity exception: PricebookEntryId (pricebook entry is in a different "
                "pricebook than the one assigned to the opportunity)",
                ["PricebookEntryId"],
            )
        )
    elif not entry.get("IsActive"):
        errors.append(
            sf_error(
                "FIELD_INTEGRITY_EXCEPTION",
                "field integrity exception: PricebookEntryId (pricebook entry is inactive)",
                ["PricebookEntryId"],
            )
        )


# ---- roll-ups and seeds --------------------------------------------------------------------------


def campaign_rollup(state: DevOrgState, campaign_id: str) -> dict[str, Any]:
    """The member counts Salesforce keeps on a campaign."""
    members = [r for r in state.records("CampaignMember") if r.get("CampaignId") == campaign_id]
    return {
        "NumberOfLeads": sum(1 for m in members if m.get("Type") == "Lead"),
        "NumberOfContacts": sum(1 for m in members if m.get("Type") == "Contact"),
        "NumberOfResponses": sum(1 for m in members if m.get("HasResponded")),
    }


def seed(state: DevOrgState, tx: Transaction, user_id: str, stamp: str) -> None:
    """What every org has from the start: the active standard price book."""
    if state.get("Pricebook2", STANDARD_PRICE_BOOK_ID) is not None:
        return
    tx.put(
        "Pricebook2",
        {
            "Id": STANDARD_PRICE_BOOK_ID,
            "IsDeleted": False,
            "Name": STANDARD_PRICE_BOOK,
            "IsActive": True,
            "IsArchived": False,
            "IsStandard": True,
            "CreatedDate": stamp,
            "CreatedById": user_id,
            "LastModifiedDate": stamp,
            "LastModifiedById": user_id,
            "SystemModstamp": stamp,
        },
    )
