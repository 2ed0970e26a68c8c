"""Object definitions of the local org and their describe results.

Standard objects carry their real API names, types, lengths, picklist values and flags (from
the Salesforce Object Reference); custom objects and fields are added by `metadata`, from the
package or deployed through the control API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge.devorg.state import API_VERSION


@dataclass
class FieldDef:
    name: str
    type: str  # id string textarea email phone url picklist multipicklist combobox boolean int
    # double currency percent date datetime reference
    label: str = ""
    length: int = 0
    precision: int = 0
    scale: int = 0
    createable: bool = True
    updateable: bool = True
    nillable: bool = True
    defaulted: bool = False  # defaultedOnCreate
    default_value: Any = None
    external_id: bool = False
    unique: bool = False
    case_sensitive: bool = False
    picklist: list[str] | None = None
    default_picklist: str | None = None
    restricted: bool = False
    reference_to: list[str] = field(default_factory=list)
    relationship_name: str | None = None
    custom: bool = False
    calculated: bool = False
    calculated_formula: str | None = None
    name_field: bool = False
    id_lookup: bool = False
    master_detail: bool = False  # a custom master-detail field: deleting the parent deletes it
    child_relationship: str | None = None  # a custom lookup's relationship name on the parent
    auto_number: str | None = None  # an auto-number Name's display format, e.g. "SITE-{0000}"

    @property
    def required_on_create(self) -> bool:
        return (
            self.createable and not self.nillable and not self.defaulted and self.type != "boolean"
        )


@dataclass
class ObjectDef:
    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: dict[str, FieldDef] = field(default_factory=dict)
    createable: bool = True
    updateable: bool = True
    deletable: bool = True
    custom: bool = False
    # lower-case name -> canonical name, for SOQL and JSON bodies written in any case
    lower: dict[str, str] = field(default_factory=dict)
    # relationshipName (lower) -> reference field
    relationships: dict[str, FieldDef] = field(default_factory=dict)

    def add(self, fd: FieldDef) -> None:
        if not fd.label:
            fd.label = default_label(fd.name)
        self.fields[fd.name] = fd
        self.lower[fd.name.lower()] = fd.name
        if fd.relationship_name:
            self.relationships[fd.relationship_name.lower()] = fd

    def field(self, name: str) -> FieldDef | None:
        canonical = self.lower.get(name.lower())
        return self.fields[canonical] if canonical else None


def default_label(name: str) -> str:
    base = name[:-3] if name.endswith("__c") else name
    if base.endswith("Id") and len(base) > 2:
        base = base[:-2] + " ID"
    out = []
    for i, ch in enumerate(base):
        if ch == "_":
            out.append(" ")
        elif ch.isupper() and i and (base[i - 1].islower()):
            out.append(" " + ch)
        else:
            out.append(ch)
    return "".join(out).replace("  ", " ").strip()


# ---- field constructors -----------------------------------------------------------------


def S(name: str, length: int, **kw: Any) -> FieldDef:  # noqa: N802
    return FieldDef(name, kw.pop("type", "string"), length=length, **kw)


def TA(name: str, length: int = 32000, **kw: Any) -> FieldDef:  # noqa: N802
    return FieldDef(name, "textarea", length=length, **kw)


def P(name: str, values: list[str], *, default: str | None = None, **kw: Any) -> FieldDef:  # noqa: N802
    length = kw.pop("length", 255 if kw.get("type") != "multipicklist" else 4099)
    fd = FieldDef(
        name,
        kw.pop("type", "picklist"),
        length=length,
        picklist=values,
        default_picklist=default,
        **kw,
    )
    if default is not None:
        fd.defaulted = True
    return fd


def B(name: str, default: bool = False, **kw: Any) -> FieldDef:  # noqa: N802
    kw.setdefault("nillable", False)
    return FieldDef(name, "boolean", defaulted=True, default_value=default, **kw)


def N(name: str, kind: str = "double", precision: int = 18, scale: int = 2, **kw: Any) -> FieldDef:  # noqa: N802
    if kind == "int":
        precision, scale = 0, 0
    return FieldDef(name, kind, precision=precision, scale=scale, **kw)


def D(name: str, **kw: Any) -> FieldDef:  # noqa: N802
    return FieldDef(name, "date", **kw)


def DT(name: str, **kw: Any) -> FieldDef:  # noqa: N802
    return FieldDef(name, "datetime", **kw)


def R(name: str, to: list[str], rel: str | None, **kw: Any) -> FieldDef:  # noqa: N802
    return FieldDef(name, "reference", length=18, reference_to=to, relationship_name=rel, **kw)


def RO(fd: FieldDef) -> FieldDef:  # noqa: N802 - read-only (system-maintained or calculated)
    fd.createable = False
    fd.updateable = False
    return fd


def system_fields(owner: list[str] | None) -> list[FieldDef]:
    fields = [
        RO(FieldDef("Id", "id", length=18, nillable=False, defaulted=True, id_lookup=True)),
        RO(B("IsDeleted")),
        RO(DT("CreatedDate", nillable=False, defaulted=True)),
        RO(R("CreatedById", ["User"], "CreatedBy", nillable=False, defaulted=True)),
        RO(DT("LastModifiedDate", nillable=False, defaulted=True)),
        RO(R("LastModifiedById", ["User"], "LastModifiedBy", nillable=False, defaulted=True)),
        RO(DT("SystemModstamp", nillable=False, defaulted=True)),
    ]
    if owner:
        fields.append(R("OwnerId", owner, "Owner", nillable=False, defaulted=True))
    return fields


SALUTATION = ["Mr.", "Ms.", "Mrs.", "Dr.", "Prof.", "Mx."]
LEAD_SOURCE = ["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"]
LEAD_STATUS = [
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
]
CONVERTED_STATUS = "Closed - Converted"
INDUSTRY = [
    "Agriculture", "Apparel", "Banking", "Biotechnology", "Chemicals", "Communications",
    "Construction", "Consulting", "Education", "Electronics", "Energy", "Engineering",
    "Entertainment", "Environmental", "Finance", "Food & Beverage", "Government", "Healthcare",
    "Hospitality", "Insurance", "Machinery", "Manufacturing", "Media", "Not For Profit",
    "Recreation", "Retail", "Shipping", "Technology", "Telecommunications", "Transportation",
    "Utilities", "Other",
]  # fmt: skip
RATING = ["Hot", "Warm", "Cold"]
ACCOUNT_TYPE = [
    "Prospect",
    "Customer - Direct",
    "Customer - Channel",
    "Channel Partner / Reseller",
    "Installation Partner",
    "Technology Partner",
    "Other",
]
# StageName -> (probability, IsClosed, IsWon, ForecastCategoryName)
STAGES: dict[str, tuple[float, bool, bool, str]] = {
    "Prospecting": (10, False, False, "Pipeline"),
    "Qualification": (10, False, False, "Pipeline"),
    "Needs Analysis": (20, False, False, "Pipeline"),
    "Value Proposition": (50, False, False, "Pipeline"),
    "Id. Decision Makers": (60, False, False, "Pipeline"),
    "Perception Analysis": (70, False, False, "Pipeline"),
    "Proposal/Price Quote": (75, False, False, "Pipeline"),
    "Negotiation/Review": (90, False, False, "Pipeline"),
    "Closed Won": (100, True, True, "Closed"),
    "Closed Lost": (0, True, False, "Omitted"),
}
FORECAST = {"Omitted": "Omitted", "Pipeline": "Pipeline", "Best Case": "BestCase",
            "Commit": "Forecast", "Closed": "Closed"}  # fmt: skip
TASK_STATUS = ["Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"]
TASK_CLOSED = {"Completed"}
PRIORITY = ["High", "Normal", "Low"]
OCR_ROLE = [
    "Business User", "Decision Maker", "Economic Buyer", "Economic Decision Maker", "Evaluator",
    "Executive Sponsor", "Influencer", "Technical Buyer", "Other",
]  # fmt: skip


def _lead() -> ObjectDef:
    o = ObjectDef("Lead", "Lead", "Leads", "00Q")
    for f in system_fields(["Group", "User"]):
        o.add(f)
    for f in [
        RO(R("MasterRecordId", ["Lead"], "MasterRecord")),
        S("LastName", 80, nillable=False),
        S("FirstName", 40),
        P("Salutation", SALUTATION, length=40),
        RO(S("Name", 121, name_field=True, nillable=False, defaulted=True)),
        S("Title", 128),
        S("Company", 255, nillable=False),
        TA("Street", 255),
        S("City", 40),
        S("State", 80),
        S("PostalCode", 20),
        S("Country", 80),
        N("Latitude", precision=18, scale=15),
        N("Longitude", precision=18, scale=15),
        S("Phone", 40, type="phone"),
        S("MobilePhone", 40, type="phone"),
        S("Fax", 40, type="phone"),
        S("Email", 80, type="email", id_lookup=True),
        S("Website", 255, type="url"),
        RO(S("PhotoUrl", 255, type="url")),
        TA("Description"),
        P("LeadSource", LEAD_SOURCE, length=255),
        P(
            "Status",
            LEAD_STATUS,
            default="Open - Not Contacted",
            nillable=False,
            restricted=True,
            length=40,
        ),
        P("Industry", INDUSTRY),
        P("Rating", RATING),
        N("AnnualRevenue", "currency", 18, 0),
        N("NumberOfEmployees", "int"),
        RO(B("IsConverted")),
        RO(D("ConvertedDate")),
        RO(R("ConvertedAccountId", ["Account"], "ConvertedAccount")),
        RO(R("ConvertedContactId", ["Contact"], "ConvertedContact")),
        RO(R("ConvertedOpportunityId", ["Opportunity"], "ConvertedOpportunity")),
        B("IsUnreadByOwner"),
        RO(D("LastActivityDate")),
        RO(DT("LastViewedDate")),
        RO(DT("LastReferencedDate")),
        RO(S("EmailBouncedReason", 255)),
        RO(DT("EmailBouncedDate")),
        B("HasOptedOutOfEmail"),
        B("DoNotCall"),
    ]:
        o.add(f)
    return o


def _contact() -> ObjectDef:
    o = ObjectDef("Contact", "Contact", "Contacts", "003")
    for f in system_fields(["User"]):
        o.add(f)
    for f in [
        RO(R("MasterRecordId", ["Contact"], "MasterRecord")),
        R("AccountId", ["Account"], "Account"),
        S("LastName", 80, nillable=False),
        S("FirstName", 40),
        P("Salutation", SALUTATION, length=40),
        RO(S("Name", 121, name_field=True, nillable=False, defaulted=True)),
        TA("OtherStreet", 255),
        S("OtherCity", 40),
        S("OtherState", 80),
        S("OtherPostalCode", 20),
        S("OtherCountry", 80),
        TA("MailingStreet", 255),
        S("MailingCity", 40),
        S("MailingState", 80),
        S("MailingPostalCode", 20),
        S("MailingCountry", 80),
        S("Phone", 40, type="phone"),
        S("Fax", 40, type="phone"),
        S("MobilePhone", 40, type="phone"),
        S("HomePhone", 40, type="phone"),
        S("OtherPhone", 40, type="phone"),
        S("AssistantPhone", 40, type="phone"),
        R("ReportsToId", ["Contact"], "ReportsTo"),
        S("Email", 80, type="email", id_lookup=True),
        S("Title", 128),
        S("Department", 80),
        S("AssistantName", 40),
        P("LeadSource", LEAD_SOURCE),
        D("Birthdate"),
        TA("Description"),
        B("HasOptedOutOfEmail"),
        B("DoNotCall"),
        RO(D("LastActivityDate")),
        RO(DT("LastViewedDate")),
        RO(DT("LastReferencedDate")),
        RO(S("EmailBouncedReason", 255)),
        RO(DT("EmailBouncedDate")),
        RO(S("PhotoUrl", 255, type="url")),
    ]:
        o.add(f)
    return o


def _account() -> ObjectDef:
    o = ObjectDef("Account", "Account", "Accounts", "001")
    for f in system_fields(["User"]):
        o.add(f)
    for f in [
        RO(R("MasterRecordId", ["Account"], "MasterRecord")),
        S("Name", 255, nillable=False, name_field=True),
        P("Type", ACCOUNT_TYPE),
        R("ParentId", ["Account"], "Parent"),
        TA("BillingStreet", 255),
        S("BillingCity", 40),
        S("BillingState", 80),
        S("BillingPostalCode", 20),
        S("BillingCountry", 80),
        TA("ShippingStreet", 255),
        S("ShippingCity", 40),
        S("ShippingState", 80),
        S("ShippingPostalCode", 20),
        S("ShippingCountry", 80),
        S("Phone", 40, type="phone"),
        S("Fax", 40, type="phone"),
        S("AccountNumber", 40),
        S("Website", 255, type="url"),
        RO(S("PhotoUrl", 255, type="url")),
        S("Sic", 20),
        P("Industry", INDUSTRY),
        N("AnnualRevenue", "currency", 18, 0),
        N("NumberOfEmployees", "int"),
        P("Ownership", ["Public", "Private", "Subsidiary", "Other"]),
        S("TickerSymbol", 20),
        TA("Description"),
        P("Rating", RATING),
        S("Site", 80),
        RO(D("LastActivityDate")),
        RO(DT("LastViewedDate")),
        RO(DT("LastReferencedDate")),
        P("AccountSource", LEAD_SOURCE),
    ]:
        o.add(f)
    return o


def _opportunity() -> ObjectDef:
    o = ObjectDef("Opportunity", "Opportunity", "Opportunities", "006")
    for f in system_fields(["User"]):
        o.add(f)
    for f in [
        R("AccountId", ["Account"], "Account"),
        B("IsPrivate"),
        S("Name", 120, nillable=False, name_field=True),
        TA("Description"),
        P("StageName", list(STAGES), nillable=False, restricted=True),
        N("Amount", "currency", 18, 2),
        N("Probability", "percent", 3, 0, defaulted=True),
        RO(N("ExpectedRevenue", "currency", 18, 2)),
        N("TotalOpportunityQuantity", "double", 18, 2),
        D("CloseDate", nillable=False),
        P(
            "Type",
            [
                "Existing Customer - Upgrade",
                "Existing Customer - Replacement",
                "Existing Customer - Downgrade",
                "New Customer",
            ],
        ),
        S("NextStep", 255),
        P("LeadSource", LEAD_SOURCE),
        RO(B("IsClosed")),
        RO(B("IsWon")),
        RO(P("ForecastCategory", list(FORECAST.values()), length=40)),
        P("ForecastCategoryName", list(FORECAST), defaulted=True),
        R("CampaignId", ["Campaign"], "Campaign"),
        RO(B("HasOpportunityLineItem")),
        R("Pricebook2Id", ["Pricebook2"], "Pricebook2"),
        R("ContactId", ["Contact"], "Contact"),
        RO(D("LastActivityDate")),
        RO(N("FiscalQuarter", "int")),
        RO(N("FiscalYear", "int")),
        RO(S("Fiscal", 6)),
        RO(DT("LastViewedDate")),
        RO(DT("LastReferencedDate")),
        RO(DT("LastStageChangeDate")),
    ]:
        o.add(f)
    return o


def _line_item() -> ObjectDef:
    o = ObjectDef("OpportunityLineItem", "Opportunity Product", "Opportunity Product", "00k")
    for f in system_fields(None):
        o.add(f)
    for f in [
        FieldDef("OpportunityId", "reference", length=18, reference_to=["Opportunity"],
                 relationship_name="Opportunity", nillable=False, updateable=False),
        FieldDef("SortOrder", "int"),
        FieldDef("PricebookEntryId", "reference", length=18, reference_to=["PricebookEntry"],
                 relationship_name="PricebookEntry", updateable=False, defaulted=True),
        FieldDef("Product2Id", "reference", length=18, reference_to=["Product2"],
                 relationship_name="Product2", updateable=False),
        RO(S("ProductCode", 255)),
        RO(S("Name", 376, name_field=True)),
        N("Quantity", "double", 12, 2, nillable=False),
        N("TotalPrice", "currency", 18, 2),
        N("UnitPrice", "currency", 18, 2),
        RO(N("ListPrice", "currency", 18, 2)),
        D("ServiceDate"),
        S("Description", 255),
    ]:  # fmt: skip
        o.add(f)
    return o


def _contact_role() -> ObjectDef:
    o = ObjectDef("OpportunityContactRole", "Contact Role", "Contact Roles", "00K")
    for f in system_fields(None):
        o.add(f)
    for f in [
        FieldDef("OpportunityId", "reference", length=18, reference_to=["Opportunity"],
                 relationship_name="Opportunity", nillable=False, updateable=False),
        R("ContactId", ["Contact"], "Contact", nillable=False),
        P("Role", OCR_ROLE, length=40),
        B("IsPrimary"),
    ]:  # fmt: skip
        o.add(f)
    return o


def _product() -> ObjectDef:
    o = ObjectDef("Product2", "Product", "Products", "01t")
    for f in system_fields(None):
        o.add(f)
    for f in [
        S("Name", 255, nillable=False, name_field=True),
        S("ProductCode", 255),
        TA("Description", 4000),
        B("IsActive"),
        P("Family", ["None"]),
        S("ExternalId", 255, external_id=True),
        S("StockKeepingUnit", 180),
        P("QuantityUnitOfMeasure", ["Each"]),
        RO(B("IsArchived")),
        RO(DT("LastViewedDate")),
        RO(DT("LastReferencedDate")),
    ]:
        o.add(f)
    return o


CAMPAIGN_TYPE = [
    "Conference", "Webinar", "Trade Show", "Public Relations", "Partners", "Referral Program",
    "Advertisement", "Banner Ads", "Direct Mail", "Email", "Telemarketing", "Other",
]  # fmt: skip
CAMPAIGN_STATUS = ["Planned", "In Progress", "Completed", "Aborted"]
STANDARD_PRICE_BOOK = "Standard Price Book"


def _campaign() -> ObjectDef:
    o = ObjectDef("Campaign", "Campaign", "Campaigns", "701")
    for f in system_fields(["User"]):
        o.add(f)
    for f in [
        S("Name", 80, nillable=False, name_field=True),
        R("ParentId", ["Campaign"], "Parent"),
        P("Type", CAMPAIGN_TYPE),
        P("Status", CAMPAIGN_STATUS, default="Planned"),
        D("StartDate"),
        D("EndDate"),
        N("ExpectedRevenue", "currency", 18, 0),
        N("BudgetedCost", "currency", 18, 0),
        N("ActualCost", "currency", 18, 0),
        N("ExpectedResponse", "percent", 10, 2),
        N("NumberSent", "double", 18, 0),
        B("IsActive"),
        TA("Description"),
        RO(N("NumberOfLeads", "int")),
        RO(N("NumberOfConvertedLeads", "int")),
        RO(N("NumberOfContacts", "int")),
        RO(N("NumberOfResponses", "int")),
        RO(N("NumberOfOpportunities", "int")),
        RO(N("NumberOfWonOpportunities", "int")),
        RO(N("AmountAllOpportunities", "currency", 18, 0)),
        RO(N("AmountWonOpportunities", "currency", 18, 0)),
        RO(D("LastActivityDate")),
        RO(DT("LastViewedDate")),
        RO(DT("LastReferencedDate")),
    ]:
        o.add(f)
    return o


def _campaign_member() -> ObjectDef:
    o = ObjectDef("CampaignMember", "Campaign Member", "Campaign Members", "00v")
    for f in system_fields(None):
        o.add(f)
    for f in [
        FieldDef("CampaignId", "reference", length=18, reference_to=["Campaign"],
                 relationship_name="Campaign", nillable=False, updateable=False),
        R("LeadId", ["Lead"], "Lead", updateable=False),
        R("ContactId", ["Contact"], "Contact", updateable=False),
        # the campaign's member statuses (CampaignMemberStatus) are the values, checked on save
        P("Status", [], length=40),
        RO(B("HasResponded")),
        RO(D("FirstRespondedDate")),
        RO(R("LeadOrContactId", ["Contact", "Lead"], None)),
        RO(R("LeadOrContactOwnerId", ["Group", "User"], "LeadOrContactOwner")),
        RO(S("Type", 40)),
        RO(S("Name", 121, name_field=True)),
        RO(S("FirstName", 40)),
        RO(S("LastName", 80)),
        RO(S("Title", 128)),
        RO(S("CompanyOrAccount", 255)),
        RO(S("Email", 80, type="email")),
        RO(S("Phone", 40, type="phone")),
        RO(S("MobilePhone", 40, type="phone")),
        RO(S("City", 40)),
        RO(S("State", 80)),
        RO(S("Country", 80)),
        RO(P("LeadSource", LEAD_SOURCE)),
        RO(B("DoNotCall")),
        RO(B("HasOptedOutOfEmail")),
        S("Description", 255),
    ]:  # fmt: skip
        o.add(f)
    return o


def _campaign_member_status() -> ObjectDef:
    o = ObjectDef(
        "CampaignMemberStatus", "Campaign Member Status", "Campaign Member Statuses", "01Y"
    )
    for f in system_fields(None):
        o.add(f)
    for f in [
        FieldDef("CampaignId", "reference", length=18, reference_to=["Campaign"],
                 relationship_name=None, nillable=False, updateable=False),
        S("Label", 765, nillable=False, name_field=True),
        N("SortOrder", "int"),
        B("IsDefault"),
        B("HasResponded"),
    ]:  # fmt: skip
        o.add(f)
    return o


def _pricebook() -> ObjectDef:
    o = ObjectDef("Pricebook2", "Price Book", "Price Books", "01s")
    for f in system_fields(None):
        o.add(f)
    for f in [
        S("Name", 255, nillable=False, name_field=True),
        B("IsActive"),
        RO(B("IsArchived")),
        S("Description", 255),
        RO(B("IsStandard")),
        RO(DT("LastViewedDate")),
        RO(DT("LastReferencedDate")),
    ]:
        o.add(f)
    return o


def _pricebook_entry() -> ObjectDef:
    o = ObjectDef("PricebookEntry", "Price Book Entry", "Price Book Entries", "01u")
    for f in system_fields(None):
        o.add(f)
    for f in [
        RO(S("Name", 255, name_field=True)),
        FieldDef("Pricebook2Id", "reference", length=18, reference_to=["Pricebook2"],
                 relationship_name="Pricebook2", nillable=False, updateable=False),
        FieldDef("Product2Id", "reference", length=18, reference_to=["Product2"],
                 relationship_name="Product2", nillable=False, updateable=False),
        N("UnitPrice", "currency", 18, 2, nillable=False),
        B("IsActive"),
        B("UseStandardPrice"),
        RO(S("ProductCode", 255)),
        RO(B("IsArchived")),
    ]:  # fmt: skip
        o.add(f)
    return o


def _activity_common() -> list[FieldDef]:
    return [
        R("WhoId", ["Contact", "Lead"], "Who"),
        R("WhatId", ["Account", "Opportunity", "Product2", "Asset", "Campaign", "Case"], "What"),
        S("Subject", 255, type="combobox", picklist=["Call", "Send Letter", "Send Quote", "Other"]),
        D("ActivityDate"),
        TA("Description"),
        RO(R("AccountId", ["Account"], "Account")),
        B("IsPrivate"),
        RO(B("IsArchived")),
        RO(N("WhoCount", "int")),
        RO(N("WhatCount", "int")),
    ]


def _task() -> ObjectDef:
    o = ObjectDef("Task", "Task", "Tasks", "00T")
    for f in system_fields(["User", "Group"]):
        o.add(f)
    for f in _activity_common() + [
        P("Status", TASK_STATUS, default="Not Started", nillable=False, restricted=True, length=40),
        P("Priority", PRIORITY, default="Normal", nillable=False, restricted=True, length=40),
        RO(B("IsHighPriority")),
        RO(B("IsClosed")),
        P("Type", ["Call", "Email", "Meeting", "Other"], length=40),
        N("CallDurationInSeconds", "int"),
        P("CallType", ["Internal", "Inbound", "Outbound"], length=40),
        S("CallDisposition", 255),
        S("CallObject", 255),
        DT("ReminderDateTime"),
        B("IsReminderSet"),
        P("TaskSubtype", ["Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"],
          length=40, updateable=False),
        DT("CompletedDateTime"),
    ]:  # fmt: skip
        o.add(f)
    return o


def _event() -> ObjectDef:
    o = ObjectDef("Event", "Event", "Events", "00U")
    for f in system_fields(["User", "Calendar"]):
        o.add(f)
    for f in _activity_common() + [
        S("Location", 255),
        B("IsAllDayEvent"),
        DT("ActivityDateTime"),
        N("DurationInMinutes", "int"),
        DT("StartDateTime"),
        DT("EndDateTime"),
        RO(D("EndDate")),
        P("Type", ["Call", "Email", "Meeting", "Other"], length=40),
        P("ShowAs", ["Busy", "OutOfOffice", "Free"], default="Busy", length=40),
        P("EventSubtype", ["Event"], length=40, updateable=False),
        B("IsReminderSet"),
        DT("ReminderDateTime"),
    ]:
        o.add(f)
    return o


def _user() -> ObjectDef:
    o = ObjectDef("User", "User", "Users", "005", deletable=False)
    for f in system_fields(None):
        o.add(f)
    for f in [
        S("Username", 80, nillable=False, unique=True, id_lookup=True),
        S("LastName", 80, nillable=False),
        S("FirstName", 40),
        RO(S("Name", 121, name_field=True, nillable=False, defaulted=True)),
        S("CompanyName", 80),
        S("Title", 80),
        S("Department", 80),
        S("Email", 128, type="email", nillable=False),
        S("Alias", 8, nillable=False),
        S("CommunityNickname", 40, defaulted=True),
        B("IsActive", True),
        P("TimeZoneSidKey", ["GMT", "America/Los_Angeles", "America/New_York", "Europe/London"],
          nillable=False, length=40),
        P("LocaleSidKey", ["en_US", "en_GB"], nillable=False, length=40),
        P("EmailEncodingKey", ["UTF-8", "ISO-8859-1"], nillable=False, length=40),
        P("LanguageLocaleKey", ["en_US"], nillable=False, length=40),
        R("ProfileId", ["Profile"], "Profile", nillable=False),
        RO(P("UserType", ["Standard", "PowerPartner", "CsnOnly", "Guest"], length=40)),
        S("FederationIdentifier", 512),
        R("ManagerId", ["User"], "Manager"),
    ]:  # fmt: skip
        o.add(f)
    return o


def _push_topic() -> ObjectDef:
    o = ObjectDef("PushTopic", "Push Topic", "Push Topics", "0IF")
    for f in system_fields(None):
        o.add(f)
    for f in [
        S("Name", 25, nillable=False, name_field=True),
        TA("Query", 1300, nillable=False),
        N("ApiVersion", "double", 18, 1, nillable=False),
        B("IsActive", True),
        P("NotifyForFields", ["Select", "Where", "Referenced", "All"], default="Referenced",
          nillable=False, restricted=True, length=40),
        P("NotifyForOperations", ["All", "Create", "Extended", "Update"], default="All",
          nillable=False, length=40),
        S("Description", 400),
        B("NotifyForOperationCreate", True),
        B("NotifyForOperationUpdate", True),
        B("NotifyForOperationDelete", True),
        B("NotifyForOperationUndelete", True),
    ]:  # fmt: skip
        o.add(f)
    return o


# The Organization object: the fields a real Developer Edition org returns (as recorded in
# CumulusCI's `tests/shared_cassettes/GET_sobjects_Organization.yaml`); `organization` builds
# its one record.
def _organization() -> ObjectDef:
    o = ObjectDef(
        "Organization", "Organization", "Organizations", "00D", createable=False, updateable=False,
        deletable=False,
    )  # fmt: skip
    for fd in system_fields(None):
        if fd.name != "IsDeleted":  # an org is never in the recycle bin: no IsDeleted field
            o.add(fd)
    access = ["None", "Read", "Edit", "ReadEditTransfer", "ControlledByParent", "All",
              "ReadSelect", "HideDetailsInsert", "ControlledByLeadOrContact"]  # fmt: skip
    for fd in [
        S("Name", 80, name_field=True, nillable=False),
        S("Division", 80),
        S("Street", 255, type="textarea"),
        S("City", 40),
        S("State", 80),
        S("PostalCode", 20),
        S("Country", 80),
        N("Latitude", precision=18, scale=15),
        N("Longitude", precision=18, scale=15),
        P(
            "GeocodeAccuracy",
            [
                "Address",
                "NearAddress",
                "Block",
                "Street",
                "ExtendedZip",
                "Zip",
                "City",
                "County",
                "State",
                "Unknown",
            ],
            length=40,
        ),
        S("Phone", 40, type="phone"),
        S("Fax", 40, type="phone"),
        S("PrimaryContact", 80),
        P("DefaultLocaleSidKey", ["en_US"], length=40),
        P("TimeZoneSidKey", ["GMT"], length=40),
        P("LanguageLocaleKey", ["en_US"], length=40),
        B("ReceivesInfoEmails"),
        B("ReceivesAdminInfoEmails"),
        B("PreferencesRequireOpportunityProducts"),
        B("PreferencesTransactionSecurityPolicy"),
        B("PreferencesTerminateOldestSession"),
        B("PreferencesConsentManagementEnabled"),
        B("PreferencesAutoSelectIndividualOnMerge"),
        B("PreferencesLightningLoginEnabled"),
        B("PreferencesOnlyLLPermUserAllowed"),
        N("FiscalYearStartMonth", "int"),
        B("UsesStartDateAsFiscalYearName"),
        *(
            P(f"Default{what}Access", access, length=40)
            for what in (
                "Account",
                "Contact",
                "Opportunity",
                "Lead",
                "Case",
                "Calendar",
                "Pricebook",
                "Campaign",
            )
        ),
        S("UiSkin", 40),
        S("SignupCountryIsoCode", 2),
        DT("TrialExpirationDate"),
        N("NumKnowledgeService", "int"),
        P("OrganizationType", ["Developer Edition", "Enterprise Edition", "Unlimited Edition"]),
        S("NamespacePrefix", 15),
        S("InstanceName", 5),
        B("IsSandbox"),
        B("IsReadOnly"),
        P("WebToCaseDefaultOrigin", ["Web", "Phone", "Email"]),
        N("MonthlyPageViewsUsed", "int"),
        N("MonthlyPageViewsEntitlement", "int"),
        S("ComplianceBccEmail", 80, type="email"),
        S("DelegatedAuthenticationServiceUrl", 1000, type="url"),
    ]:
        o.add(RO(fd))
    return o


# (child object, reference field) -> child relationship name on the parent
CHILD_RELATIONSHIPS = {
    ("Contact", "AccountId"): "Contacts",
    ("Opportunity", "AccountId"): "Opportunities",
    ("Opportunity", "ContactId"): "Opportunities",
    ("OpportunityLineItem", "OpportunityId"): "OpportunityLineItems",
    ("OpportunityContactRole", "OpportunityId"): "OpportunityContactRoles",
    ("OpportunityContactRole", "ContactId"): "OpportunityContactRoles",
    ("Task", "WhoId"): "Tasks",
    ("Task", "WhatId"): "Tasks",
    ("Event", "WhoId"): "Events",
    ("Event", "WhatId"): "Events",
    ("Account", "ParentId"): "ChildAccounts",
    ("Contact", "ReportsToId"): "ReportsTo",
    ("CampaignMember", "CampaignId"): "CampaignMembers",
    ("CampaignMember", "LeadId"): "CampaignMembers",
    ("CampaignMember", "ContactId"): "CampaignMembers",
    ("Campaign", "ParentId"): "ChildCampaigns",
    ("Opportunity", "CampaignId"): "Opportunities",
    ("PricebookEntry", "Pricebook2Id"): "PricebookEntries",
    ("PricebookEntry", "Product2Id"): "PricebookEntries",
    ("OpportunityLineItem", "PricebookEntryId"): "OpportunityLineItems",
    ("Opportunity", "Pricebook2Id"): "Opportunities",
}


_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _base62(n: int) -> str:
    out = ""
    while True:
        n, digit = divmod(n, 62)
        out = _BASE62[digit] + out
        if not n:
            return out


# ---- the schema -----------------------------------------------------------------------------


class Schema:
    """The objects of the org: the standard ones, plus custom objects and fields added by
    `metadata` (from the package or deployed through the control API)."""

    def __init__(self) -> None:
        self.objects: dict[str, ObjectDef] = {}
        for builder in (_lead, _contact, _account, _opportunity, _line_item, _contact_role,
                        _product, _pricebook, _pricebook_entry, _campaign, _campaign_member,
                        _campaign_member_status, _task, _event, _user, _push_topic,
                        _organization):  # fmt: skip
            o = builder()
            self.objects[o.name] = o
        # (child object, reference field) -> child relationship name; custom lookups add theirs
        self.child_relationships = dict(CHILD_RELATIONSHIPS)
        self.lower: dict[str, str] = {}
        self.by_prefix: dict[str, str] = {}
        self.custom_field_count = 0
        self._index()

    def _index(self) -> None:
        self.lower = {name.lower(): name for name in self.objects}
        self.by_prefix = {o.key_prefix: o.name for o in self.objects.values()}

    def add_object(self, o: ObjectDef) -> None:
        """Add (or replace, keeping its key prefix and custom fields) a custom object."""
        old = self.objects.get(o.name)
        if old is not None:
            o.key_prefix = old.key_prefix
            for fd in old.fields.values():
                if fd.custom and fd.name not in o.fields:
                    o.add(fd)
        self.objects[o.name] = o
        self._owned_through_master(o)
        self._index()

    def add_field(self, sobject: str, fd: FieldDef) -> None:
        o = self.objects[sobject]
        o.add(fd)
        if fd.child_relationship:
            self.child_relationships[(o.name, fd.name)] = fd.child_relationship
        self.custom_field_count += 1
        self._owned_through_master(o)

    def next_custom_prefix(self, taken: set[str] | None = None) -> str:
        """The next free custom object key prefix (a01, a02, ...), not in ``taken`` either."""
        n = 1
        while (prefix := "a" + _base62(n).rjust(2, "0")) in self.by_prefix or prefix in (
            taken or set()
        ):
            n += 1
        return prefix

    @staticmethod
    def _owned_through_master(o: ObjectDef) -> None:
        """An object with a master-detail field has no owner of its own."""
        if o.custom and any(f.master_detail for f in o.fields.values()):
            o.fields.pop("OwnerId", None)
            o.lower.pop("ownerid", None)
            o.relationships.pop("owner", None)

    def cleared_lookups(self, parent: str) -> list[tuple[str, str]]:
        """(child, field) of the package's lookups to ``parent``: deleting a parent clears them
        (the default delete constraint, "Clear the value of this field")."""
        return [
            (o.name, fd.name)
            for o in self.objects.values()
            for fd in o.fields.values()
            if fd.child_relationship and not fd.master_detail and fd.reference_to == [parent]
        ]

    def cascades(self) -> list[tuple[str, str, str]]:
        """(parent, child, field) of the package's master-detail fields."""
        return [
            (fd.reference_to[0], o.name, fd.name)
            for o in self.objects.values()
            for fd in o.fields.values()
            if fd.master_detail
        ]

    def object(self, name: str) -> ObjectDef | None:
        canonical = self.lower.get(name.lower())
        return self.objects[canonical] if canonical else None

    def sobject_for_prefix(self, prefix: str) -> str | None:
        return self.by_prefix.get(prefix)

    def indexed_fields(self, o: ObjectDef) -> list[str]:
        return [f.name for f in o.fields.values() if f.external_id or f.unique]


# ---- describe -------------------------------------------------------------------------------

_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}


def object_urls(name: str, v: str = API_VERSION) -> dict[str, str]:
    base = f"/services/data/v{v}/sobjects/{name}"
    return {
        "compactLayouts": f"{base}/describe/compactLayouts",
        "rowTemplate": f"{base}/{{ID}}",
        "approvalLayouts": f"{base}/describe/approvalLayouts",
        "listviews": f"{base}/listviews",
        "describe": f"{base}/describe",
        "quickActions": f"{base}/quickActions",
        "layouts": f"{base}/describe/layouts",
        "sobject": base,
    }


def object_summary(o: ObjectDef, version: str = API_VERSION) -> dict[str, Any]:
    return {
        "activateable": False,
        "associateEntityType": None,
        "associateParentEntity": None,
        "createable": o.createable,
        "custom": o.custom,
        "customSetting": False,
        "deepCloneable": False,
        "deletable": o.deletable,
        "deprecatedAndHidden": False,
        "feedEnabled": False,
        "hasSubtypes": False,
        "isInterface": False,
        "isSubtype": False,
        "keyPrefix": o.key_prefix,
        "label": o.label,
        "labelPlural": o.label_plural,
        "layoutable": True,
        "mergeable": o.name in ("Lead", "Contact", "Account"),
        "mruEnabled": True,
        "name": o.name,
        "queryable": True,
        "replicateable": True,
        "retrieveable": True,
        "searchable": True,
        "triggerable": True,
        "undeletable": o.deletable,
        "updateable": o.updateable,
        "urls": object_urls(o.name, version),
    }


def field_describe(fd: FieldDef) -> dict[str, Any]:
    text_like = fd.type in ("string", "textarea", "email", "phone", "url", "picklist",
                            "multipicklist", "combobox", "id", "reference")  # fmt: skip
    picklist = []
    if fd.picklist is not None:
        picklist = [
            {
                "active": True,
                "defaultValue": v == fd.default_picklist,
                "label": v,
                "validFor": None,
                "value": v,
            }
            for v in fd.picklist
        ]
    return {
        "aggregatable": fd.type not in ("textarea",),
        "aiPredictionField": False,
        "autoNumber": False,
        "byteLength": fd.length * 3 if text_like else 0,
        "calculated": fd.calculated,
        "calculatedFormula": fd.calculated_formula,
        "cascadeDelete": False,
        "caseSensitive": fd.case_sensitive,
        "compoundFieldName": None,
        "controllerName": None,
        "createable": fd.createable,
        "custom": fd.custom,
        "defaultValue": fd.default_value if fd.type == "boolean" else fd.default_picklist,
        "defaultValueFormula": None,
        "defaultedOnCreate": fd.defaulted,
        "dependentPicklist": False,
        "deprecatedAndHidden": False,
        "digits": 9 if fd.type == "int" else 0,
        "displayLocationInDecimal": False,
        "encrypted": False,
        "externalId": fd.external_id,
        "extraTypeInfo": None,
        "filterable": fd.type != "textarea" or fd.length <= 255,
        "filteredLookupInfo": None,
        "formulaTreatNullNumberAsZero": False,
        "groupable": fd.type not in ("textarea", "double", "currency", "percent", "datetime"),
        "highScaleNumber": False,
        "htmlFormatted": False,
        "idLookup": fd.id_lookup or fd.external_id or fd.name == "Id",
        "inlineHelpText": None,
        "label": fd.label,
        "length": fd.length if text_like else 0,
        "mask": None,
        "maskType": None,
        "name": fd.name,
        "nameField": fd.name_field,
        "namePointing": fd.relationship_name in ("Owner", "Who", "What"),
        "nillable": fd.nillable,
        "permissionable": fd.nillable and not fd.calculated and fd.createable,
        "picklistValues": picklist,
        "polymorphicForeignKey": len(fd.reference_to) > 1,
        "precision": fd.precision if fd.type in ("double", "currency", "percent") else 0,
        "queryByDistance": False,
        "referenceTargetField": None,
        "referenceTo": list(fd.reference_to),
        "relationshipName": fd.relationship_name,
        "relationshipOrder": None,
        "restrictedDelete": False,
        # Standard picklists describe as unrestricted even where the platform checks their
        # values (Lead Status, StageName: recorded from a real org); custom ones say what they are.
        "restrictedPicklist": fd.restricted and fd.custom,
        "scale": fd.scale if fd.type in ("double", "currency", "percent") else 0,
        "searchPrefilterable": fd.type == "reference",
        "soapType": _SOAP_TYPES.get(fd.type, "xsd:string"),
        "sortable": fd.type != "textarea" or fd.length <= 255,
        "type": fd.type,
        "unique": fd.unique,
        "updateable": fd.updateable,
        "writeRequiresMasterRead": False,
    }


def _scopes(o: ObjectDef) -> list[dict[str, str]]:
    """The USING SCOPE names SOQL accepts for the object (see query.SCOPES_OF_OWNED)."""
    plural = o.label_plural.lower()
    out = [{"label": "All " + plural, "name": "everything"}]
    if "OwnerId" in o.fields:
        out.append({"label": "My " + plural, "name": "mine"})
    return out


def describe(schema: Schema, o: ObjectDef, version: str = API_VERSION) -> dict[str, Any]:
    out = object_summary(o, version)
    children = []
    for child in schema.objects.values():
        for fd in child.fields.values():
            if fd.type == "reference" and o.name in fd.reference_to:
                children.append(
                    {
                        "cascadeDelete": (
                            child.name in ("Contact", "Opportunity") and fd.name == "AccountId"
                        )
                        or fd.master_detail,
                        "childSObject": child.name,
                        "deprecatedAndHidden": False,
                        "field": fd.name,
                        "junctionIdListNames": [],
                        "junctionReferenceTo": [],
                        "relationshipName": schema.child_relationships.get((child.name, fd.name)),
                        "restrictedDelete": False,
                    }
                )
    out.update(
        {
            "actionOverrides": [],
            "childRelationships": children,
            "compactLayoutable": True,
            "defaultImplementation": None,
            "extendedBy": None,
            "extendsInterfaces": None,
            "fields": [field_describe(fd) for fd in o.fields.values()],
            "implementedBy": None,
            "implementsInterfaces": None,
            "listviewable": None,
            "lookupLayoutable": None,
            "namedLayoutInfos": [],
            "networkScopeFieldName": None,
            "recordTypeInfos": [
                {
                    "active": True,
                    "available": True,
                    "defaultRecordTypeMapping": True,
                    "developerName": "Master",
                    "master": True,
                    "name": "Master",
                    "recordTypeId": "012000000000000AAA",
                    "urls": {
                        "layout": f"/services/data/v{version}/sobjects/{o.name}"
                        "/describe/layouts/012000000000000AAA"
                    },
                }
            ],
            "searchLayoutable": True,
            "sobjectDescribeOption": "FULL",
            "supportedScopes": _scopes(o),
        }
    )
    return out
