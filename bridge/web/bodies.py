"""The JSON API's request bodies: pydantic models the views validate with, whose JSON Schemas
are the OpenAPI document's request schemas (`bridge.web.openapi`), so the two cannot drift.

Ids are 64-bit, record ids and field names Salesforce's, emails as Salesforce checks them
(`bridge.vocabulary`); NaN and Infinity are refused.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bridge.vocabulary import (
    EMAIL_MAX_LENGTH,
    EMAIL_PATTERN,
    FIELD_NAME_PATTERN,
    RECORD_ID_PATTERN,
    ActivityKind,
    ChangeType,
    DemoState,
    StreamedObject,
)

Scalar = str | int | float | bool | None
Email = Annotated[str, Field(pattern=EMAIL_PATTERN, max_length=EMAIL_MAX_LENGTH)]
Short = Annotated[str, Field(min_length=1, max_length=255)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("is blank: give the location's name or address")
    return value


Location = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_not_blank)]
"""One of a sale's locations (a site): its name or address."""

Phase = Annotated[
    str,
    Field(
        min_length=1, max_length=64,
        description="the lead phase: a name of the org's writeback.sales.phases",
    ),
]  # fmt: skip
RowId = Annotated[int, Field(ge=1, le=2**63 - 1)]  # a stored row's id (64-bit)
RecordId = Annotated[str, Field(pattern=RECORD_ID_PATTERN)]
FieldName = Annotated[str, Field(pattern=FIELD_NAME_PATTERN)]
# What Salesforce sends, e.g. 2026-12-03T11:36:09.000+0000 (part of the change's key: bounded)
Modstamp = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
        r"(Z|[+-][0-9]{2}:?[0-9]{2})?$"
    ),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)


class MemberRef(_Body):
    """Which member referred: give one of these."""

    id: RowId | None = None
    external_id: Short | None = None
    referral_code: Short | None = None
    email: Email | None = None


class _Routed(_Body):
    """What lead routing reads of a referral (`bridge.writeback.routing`)."""

    score: Annotated[float, Field(ge=0, le=1e9)] | None = Field(
        default=None, description="the routing criteria's score (Signals' stars 0-3, or any)"
    )
    meeting_owner: Short | None = Field(
        default=None, description="the rep whose calendar the meeting was booked on"
    )
    routed_owner: Short | None = Field(
        default=None, description="the rep last routed into the conversation"
    )
    closed_by: Short | None = Field(default=None, description="the rep who closed it")
    owner: Short | None = Field(
        default=None,
        description="the owner rep (one of the org's users:): Lead/Contact OwnerId flows from "
        "it and it wins over routing's owner priority; unset, routing's choice for a new Lead "
        "becomes the owner",
    )
    conversation_closed_at: datetime | None = Field(
        default=None, description="when the conversation closed: the delay counts from it"
    )


class ReferralIn(_Routed):
    program: Short
    first_name: Short | None = None
    last_name: Short
    email: Email | None = None
    company: Short | None = None
    phone: Annotated[str, Field(max_length=64)] | None = None
    external_id: Short | None = None
    member: MemberRef | None = None
    fields: dict[str, Scalar] = Field(default_factory=dict)
    phase: Phase | None = None


class MemberIn(_Body):
    program: Short
    name: Short
    email: Email | None = None
    external_id: Short | None = None
    referral_code: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    phone: Annotated[str, Field(max_length=64)] | None = None
    url: Annotated[str, Field(max_length=500, pattern=r"^https?://")] | None = None
    fields: dict[str, Scalar] = Field(
        default_factory=dict,
        description="custom member fields; writeback.referral_add.member_fields maps them",
    )


class ReferralPatch(_Routed):
    """The fields to change; `fields` keys are merged (null removes one)."""

    first_name: Short | None = None
    last_name: Short | None = Field(default=None, description="cannot be cleared")
    email: Email | None = None
    company: Short | None = None
    phone: Annotated[str, Field(max_length=64)] | None = None
    fields: dict[str, Scalar] = Field(default_factory=dict)
    phase: Phase | None = None


class MemberPatch(_Body):
    """The fields to change (ids used for matching, external_id and referral_code, stay)."""

    name: Short | None = Field(default=None, description="cannot be cleared")
    email: Email | None = None
    phone: Annotated[str, Field(max_length=64)] | None = None
    url: Annotated[str, Field(max_length=500, pattern=r"^https?://")] | None = None


class ActivityIn(_Body):
    org: Short
    activity_id: Annotated[str, Field(min_length=1, max_length=100)]
    kind: ActivityKind
    subject: Short
    occurred_at: datetime
    description: Annotated[str, Field(max_length=32000)] | None = None
    who_email: Email | None = None
    referral_id: RowId | None = None
    duration_minutes: Annotated[int, Field(ge=0, le=14 * 24 * 60)] | None = None
    ended_at: datetime | None = None


class RecordIn(BaseModel):
    """A Salesforce record: its Id, SystemModstamp when it has one, and any other fields by
    their API names."""

    model_config = ConfigDict(
        extra="allow",
        allow_inf_nan=False,
        json_schema_extra={"propertyNames": {"pattern": FIELD_NAME_PATTERN}},
    )

    Id: RecordId
    SystemModstamp: Modstamp | None = None

    @model_validator(mode="after")
    def _field_names(self) -> RecordIn:
        for name in self.model_extra or {}:
            if not re.fullmatch(FIELD_NAME_PATTERN, name):
                raise ValueError(f"'{name[:80]}' is not a Salesforce field name")
        return self


class RelatedIn(RecordIn):
    """A related record (the Account of a Contact…): its Id when it has one, and its fields."""

    Id: RecordId | None = None  # type: ignore[assignment]


class EntryIn(_Body):
    org: Short
    sobject_type: StreamedObject
    record: RecordIn = Field(
        description="the changed record, Salesforce field names, with Id; the same Id and "
        "SystemModstamp (or, without one, the same content) again is the same change"
    )
    related: dict[StreamedObject, RelatedIn | None] = Field(default_factory=dict)
    previous: dict[FieldName, Scalar] = Field(default_factory=dict)
    change_type: ChangeType = "updated"


EditedFields = dict[StreamedObject, dict[FieldName, Scalar]]


class EntryPatch(_Body):
    fields: EditedFields = Field(min_length=1)


class RetryIn(_Body):
    fields: EditedFields | None = None
    referral_id: RowId | None = None


class RepushIn(_Body):
    """Salesforce fields to write differently (null: leave the field out); checked against the
    org's field lengths and picklists like new input."""

    fields: dict[FieldName, Scalar] | None = None
    apply_to_referral: bool = Field(
        default=False,
        description="also save the `fields` that come from the push's referral (or its member) "
        "there, as `PATCH /referrals/{id}` does (audited, field history, sync rules), so the "
        "next push built from the referral carries the fix; default false: the push alone",
    )


class NoBody(_Body):
    """This action takes no fields (an empty body or `{}`)."""


class RejectIn(_Body):
    note: Annotated[str, Field(max_length=2000)] | None = None


# ---- sales-engagement events (`POST /sales`, `POST /demos`) --------------------------------

ClientId = Annotated[str, Field(min_length=1, max_length=100, description="the client's id")]
Phone = Annotated[str, Field(min_length=1, max_length=64)]
Money = Annotated[Decimal, Field(ge=0, max_digits=16, decimal_places=2)]


class SaleItem(_Body):
    """One product sold: its code or its name (Product2.ProductCode / Name)."""

    product_code: Short | None = None
    product_name: Short | None = None
    quantity: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]
    unit_price: Money

    @model_validator(mode="after")
    def _names_a_product(self) -> SaleItem:
        if not (self.product_code or self.product_name):
            raise ValueError("give product_code or product_name")
        return self


class SaleContact(_Body):
    """Another person of the business, connected or created as a Contact of its Account."""

    first_name: Short | None = None
    last_name: Short
    phone: Phone | None = None
    email: Email | None = None


class SaleIn(_Body):
    org: Short
    id: ClientId
    referral_id: RowId = Field(description="the referral (the person) the sale belongs to")
    business_name: Short
    phone: Phone | None = Field(default=None, description="the business's primary phone")
    city: Short | None = None
    state: Short | None = None
    amount: Money | None = None
    closed_at: datetime
    items: list[SaleItem] = Field(default_factory=list, max_length=200)
    contacts: list[SaleContact] = Field(default_factory=list, max_length=50)
    locations: list[Location] = Field(
        default_factory=list,
        max_length=100,
        description="the business's sites: one custom object record each, linked to the "
        "Account, when the org's writeback.sales.sites is set (the same location again is "
        "the same site)",
    )
    fields: dict[str, Scalar] = Field(
        default_factory=dict, description="values for mappings of local sale.<key>"
    )
    owner: Short | None = Field(
        default=None, description="the rep: the org's user mapping (users:) maps it"
    )


class DemoIn(_Body):
    org: Short
    id: ClientId
    referral_id: RowId = Field(description="the referral (the person) the demo is with")
    state: DemoState
    at: datetime = Field(description="when the demo takes place")
    business_name: Short | None = Field(default=None, description="default: the referral's company")
    phone: Phone | None = Field(default=None, description="default: the referral's phone")
    city: Short | None = None
    state_code: Short | None = None
    owner: Short | None = Field(
        default=None, description="the rep: the org's user mapping (users:) maps it"
    )


REQUEST_MODELS: dict[str, type[BaseModel]] = {
    m.__name__: m
    for m in (
        MemberRef,
        ReferralIn,
        ReferralPatch,
        MemberIn,
        MemberPatch,
        ActivityIn,
        EntryIn,
        EntryPatch,
        RetryIn,
        RejectIn,
        RepushIn,
        NoBody,
        RecordIn,
        RelatedIn,
        SaleItem,
        SaleContact,
        SaleIn,
        DemoIn,
    )
}
