"""What the Salesforce package in `force-app/` contains, as the bridge relies on it.

The XML under `force-app/` is what admins deploy; this module is the bridge's view of it (the
package API version, the permission set and every custom field with its type), used by
`sfbridge org check` and `sfbridge org topics`. A test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

PACKAGE_NAME = "sfbridge"
"""The package name in sfdx-project.json."""

PACKAGE_API_VERSION = "63.0"
"""sourceApiVersion of the package; PushTopics are created with this ApiVersion."""

PERMISSION_SET = "SFBridge_Integration"
"""The permission set the admin assigns to the integration user."""

ACTIVITY_ID_FIELD = "SFBridge_Activity_Id__c"
"""The Activity field writeback upserts Tasks and Events by."""


@dataclass(frozen=True)
class PackageField:
    """A custom field the package adds, with the describe type Salesforce reports for it."""

    sobject: str
    name: str
    metadata_type: str  # CustomField <type> in the package
    describe_type: str  # `type` in the sObject describe of an org where it is deployed
    length: int | None = None
    external_id: bool = False
    unique: bool = False
    reference_to: str | None = None  # a Lookup's parent object

    @property
    def ref(self) -> str:
        return f"{self.sobject}.{self.name}"


def _referral_fields(sobject: str) -> list[PackageField]:
    return [
        PackageField(sobject, "Referral_ID__c", "Text", "string", 100, external_id=True),
        PackageField(sobject, "Referral_Code__c", "Text", "string", 100),
        PackageField(sobject, "Referral_Source__c", "Text", "string", 255),
        PackageField(sobject, "Referral_Source_Note__c", "Text", "string", 255),
        PackageField(sobject, "Referral_URL__c", "Url", "url"),
        PackageField(sobject, "Referring_Member_Name__c", "Text", "string", 255),
        PackageField(sobject, "Referring_Member_Email__c", "Email", "email"),
        PackageField(sobject, "Referring_Member_External_ID__c", "Text", "string", 100),
        PackageField(sobject, "Referring_Member_Phone__c", "Phone", "phone"),
        PackageField(sobject, "Referring_Member_URL__c", "Url", "url"),
        PackageField(sobject, "Referring_Member_Code__c", "Text", "string", 100),
        PackageField(sobject, "Sales_Phase__c", "Picklist", "picklist"),  # phase sync
    ]


ACTIVITY_FIELDS = [
    PackageField("Activity", ACTIVITY_ID_FIELD, "Text", "string", 100, external_id=True),
]
"""Custom fields on Activity; Salesforce shows each one on both Task and Event."""

ORGANIZATION_OBJECT = "SFBridge_Organization__c"
"""The multi-site sync's organization: one per Account, the sites link to it."""

SITE_OBJECT = "SFBridge_Site__c"
"""The multi-site sync's site: one per location of a sale, per Account."""

PACKAGE_OBJECTS = (ORGANIZATION_OBJECT, SITE_OBJECT)
"""The custom objects in force-app; `org check` describes them when the config uses them."""

SITE_FIELDS = [
    PackageField(ORGANIZATION_OBJECT, "Account__c", "Lookup", "reference", reference_to="Account"),
    PackageField(ORGANIZATION_OBJECT, "Organization_Key__c", "Text", "string", 100,
                 external_id=True, unique=True),
    PackageField(SITE_OBJECT, "Account__c", "Lookup", "reference", reference_to="Account"),
    PackageField(SITE_OBJECT, "Organization__c", "Lookup", "reference",
                 reference_to=ORGANIZATION_OBJECT),
    PackageField(SITE_OBJECT, "Site_Key__c", "Text", "string", 255, external_id=True,
                 unique=True),
    PackageField(SITE_OBJECT, "Location__c", "Text", "string", 255),
]  # fmt: skip
"""The fields of the multi-site objects (`writeback.sales.sites` defaults to them)."""

PACKAGE_FIELDS: list[PackageField] = (
    ACTIVITY_FIELDS + _referral_fields("Lead") + _referral_fields("Contact") + SITE_FIELDS
)
"""Every custom field in force-app, in the order an admin reads them."""


def org_fields() -> list[PackageField]:
    """The package fields as an org's describe shows them: Activity fields on Task and Event."""
    out: list[PackageField] = []
    for f in PACKAGE_FIELDS:
        if f.sobject == "Activity":
            out += [replace(f, sobject="Task"), replace(f, sobject="Event")]
        else:
            out.append(f)
    return out
