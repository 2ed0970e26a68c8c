"""The Organization object: one read-only record describing the org.

Clients read it to learn what they are connected to; simple-salesforce's `is_sandbox()` runs
`SELECT IsSandbox FROM Organization LIMIT 1`. The fields are the ones a real Developer Edition
org returns (as recorded in CumulusCI's `tests/shared_cassettes/GET_sobjects_Organization.yaml`).
The record is built from the org's state rather than stored, so a reset cannot remove it; the
object's description is in `schema` with the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.devorg.server import DevOrgServer

NAME = "Organization"
ORG_NAME = "sfbridge local org"


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
