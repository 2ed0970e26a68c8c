"""`POST /api/v1/sales` and `POST /api/v1/demos`: sales-engagement events about a referral.

Each is saved with its pending push before anything is sent (`bridge.writeback.events`) and
answered 201; the same `id` with the same body is answered 200 with the saved event, the same
`id` with another body 409. The views are registered on the API blueprint; their bodies join
the OpenAPI document's schemas.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from flask import jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, Field, model_validator

from bridge.store.models import Demo, Sale
from bridge.vocabulary import DemoState, SalesKind
from bridge.web import actions, serialize
from bridge.web.api import RowId, Scalar, Short, _Body, body, bp, require_scope
from bridge.web.extensions import store
from bridge.writeback import events

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
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=255)] | None = (
        None
    )


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
    locations: list[Short] = Field(default_factory=list, max_length=100)
    fields: dict[str, Scalar] = Field(
        default_factory=dict, description="values for mappings of local sale.<key>"
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


REQUEST_MODELS: dict[str, type[BaseModel]] = {
    m.__name__: m for m in (SaleItem, SaleContact, SaleIn, DemoIn)
}


def _record(kind: SalesKind, data: dict[str, Any], at: datetime) -> ResponseReturnValue:
    with store().session() as s:
        conn, _org = actions.connected_org(s, data["org"])
        referral = actions.referral_named(s, data["referral_id"])
        try:
            event, push, created = events.record(s, kind, conn, referral, data, at)
        except events.EventConflict as exc:
            raise actions.Conflict(exc.message, code=exc.code, fields=exc.fields) from None
        out = {kind: event_out(event), "push": serialize.push(push)}
        push_id = push.id
    if created:
        out["push"]["note"] = actions.enqueue_pushes([push_id])
    return jsonify(out), 201 if created else 200


def event_out(event: Sale | Demo) -> dict[str, Any]:
    return {"id": event.client_id, "referral_id": event.referral_id, **event.body}


@bp.post("/sales")
@require_scope("sales:write")
def create_sale() -> ResponseReturnValue:
    sale = body(SaleIn)
    return _record("sale", sale.model_dump(exclude_none=True, mode="json"), sale.closed_at)


@bp.post("/demos")
@require_scope("sales:write")
def create_demo() -> ResponseReturnValue:
    demo = body(DemoIn)
    return _record("demo", demo.model_dump(exclude_none=True, mode="json"), demo.at)
