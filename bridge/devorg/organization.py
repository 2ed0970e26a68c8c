"""The Organization object: one read-only record describing the org.

Clients read it to learn what they are connected to; simple-salesforce's `is_sandbox()` runs
`SELECT IsSandbox FROM Organization LIMIT 1`. The fields are the ones a real Developer Edition
org returns (as recorded in CumulusCI's `tests/shared_cassettes/GET_sobjects_Organization.yaml`).
The record is built from the org's state rather than stored, so a reset cannot remove it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.devorg.schema import DT, RO, B, N, ObjectDef, P, S, _system_fields

if TYPE_CHECKING:
    from bridge.devorg.server import DevOrgServer

NAME = "Organization"
ORG_NAME = "sfbridge local org"


def organization_object() -> ObjectDef:
    o = ObjectDef(
        NAME, "Organization", "Organizations", "00D", createable=False, updateable=False,
        deletable=False,
    )  # fmt: skip
    for fd in _system_fields(None):
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


def record(server: DevOrgServer) -> dict[str, Any]:
    """The org's one Organization record (a Developer Edition, not a sandbox)."""
    state = server.state
    integration = state.user_by_role("integration")
    first_user = state.get("User", integration.id) if integration is not None else None
    created = (first_user or {}).get("CreatedDate")
    creator = integration.id if integration is not None else None
    return {
        "Id": state.org_id,
        "Name": ORG_NAME,
        "Country": "US",
        "PrimaryContact": integration.name if integration is not None else None,
        "DefaultLocaleSidKey": "en_US",
        "TimeZoneSidKey": "GMT",
        "LanguageLocaleKey": "en_US",
        "ReceivesInfoEmails": False,
        "ReceivesAdminInfoEmails": False,
        "PreferencesRequireOpportunityProducts": False,
        "PreferencesTransactionSecurityPolicy": False,
        "PreferencesTerminateOldestSession": False,
        "PreferencesConsentManagementEnabled": False,
        "PreferencesAutoSelectIndividualOnMerge": False,
        "PreferencesLightningLoginEnabled": False,
        "PreferencesOnlyLLPermUserAllowed": False,
        "FiscalYearStartMonth": 1,
        "UsesStartDateAsFiscalYearName": False,
        "DefaultAccountAccess": "Edit",
        "DefaultContactAccess": "ControlledByParent",
        "DefaultOpportunityAccess": "Edit",
        "DefaultLeadAccess": "ReadEditTransfer",
        "DefaultCaseAccess": "ReadEditTransfer",
        "DefaultCalendarAccess": "HideDetailsInsert",
        "DefaultPricebookAccess": "ReadSelect",
        "DefaultCampaignAccess": "All",
        "NumKnowledgeService": 0,
        "UiSkin": "Theme3",
        "SignupCountryIsoCode": "US",
        "OrganizationType": "Developer Edition",
        "InstanceName": "LOCAL",
        "IsSandbox": False,
        "IsReadOnly": False,
        "WebToCaseDefaultOrigin": "Web",
        "MonthlyPageViewsUsed": 0,
        "MonthlyPageViewsEntitlement": 0,
        "CreatedDate": created,
        "CreatedById": creator,
        "LastModifiedDate": created,
        "LastModifiedById": creator,
        "SystemModstamp": created,
    }
