"""The config of the multi-site sync (`writeback.sales.sites`), per org.

A sale's location list becomes custom object records: one site per location value, linked
to the Account (and to its organization), and one organization per Account that the sites
link to. Both are upserted by an external id field the bridge fills in, so a repeated or
resent sale never adds a second record. `sites: {}` takes the package's objects
(SFBridge_Site__c, SFBridge_Organization__c); every name can point at the org's own:

```yaml
writeback:
  sales:
    sites:
      object: SFBridge_Site__c
      key_field: Site_Key__c            # External ID: <account id>:<location, normalised>
      name_field: Name                  # the location (its first 80 characters)
      location_field: Location__c       # the location as given; null: not written
      account_field: Account__c         # lookup to Account
      organization_field: Organization__c   # lookup to the organization object
      organization:                     # null: no organization records
        object: SFBridge_Organization__c
        key_field: Organization_Key__c  # External ID: the Account's id
        name_field: Name                # the business name
        account_field: Account__c       # lookup to Account
```
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bridge.salesforce.package import ORGANIZATION_OBJECT, SITE_OBJECT

_CUSTOM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*__c$")


def _custom_name(value: str) -> str:
    if len(value) > 43 or not _CUSTOM_NAME.match(value):
        raise ValueError(f"'{value}' is not the API name of a custom object or field (Name__c)")
    return value


CustomName = Annotated[str, AfterValidator(_custom_name)]
"""A custom object's or field's API name: the objects, the external ids and the lookups the
bridge writes are custom."""

FieldName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,79}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _distinct(where: str, names: dict[str, str | None]) -> None:
    seen: dict[str, str] = {}
    for key, name in names.items():
        if name is None:
            continue
        if name.lower() in seen:
            raise ValueError(
                f"{where}{key} and {where}{seen[name.lower()]} both name {name}; each value "
                "needs its own field"
            )
        seen[name.lower()] = key


class SiteOrganization(_Model):
    """The organization-level object: one record per Account, the sites link to it."""

    object: CustomName = ORGANIZATION_OBJECT
    key_field: CustomName = "Organization_Key__c"
    name_field: FieldName = "Name"
    account_field: CustomName = "Account__c"

    @model_validator(mode="after")
    def _fields_differ(self) -> SiteOrganization:
        _distinct("organization.", {"key_field": self.key_field, "name_field": self.name_field,
                                    "account_field": self.account_field})  # fmt: skip
        return self


class Sites(_Model):
    """One record of `object` per location of a sale, per Account."""

    object: CustomName = SITE_OBJECT
    key_field: CustomName = "Site_Key__c"
    name_field: FieldName = "Name"
    location_field: CustomName | None = "Location__c"
    account_field: CustomName = "Account__c"
    organization_field: CustomName | None = "Organization__c"
    organization: SiteOrganization | None = Field(default_factory=SiteOrganization)

    @model_validator(mode="after")
    def _consistent(self) -> Sites:
        if self.organization is not None and self.organization.object == self.object:
            raise ValueError(
                f"organization.object is {self.object}, the sites' object too; the "
                "organization needs an object of its own"
            )
        if self.organization is None and self.organization_field is not None:
            raise ValueError(
                f"organization_field {self.organization_field} links to an organization, but "
                "organization is null; set organization_field: null too, or configure one"
            )
        _distinct("", {"key_field": self.key_field, "name_field": self.name_field,
                       "location_field": self.location_field,
                       "account_field": self.account_field,
                       "organization_field": self.organization_field})  # fmt: skip
        return self
