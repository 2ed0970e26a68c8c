"""The shared parts of the sales steps (`bridge.writeback.sales`): the event on its way, and
record writes shared by several pushes (one Account create for the sales of one business),
sent through the drain's packing (`bridge.writeback.writes`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bridge.config import OrgConfig
from bridge.errors import PermanentError
from bridge.vocabulary import SyncTrigger
from bridge.writeback.client import COLLECTION_LIMIT, Writer, chunks, record_error
from bridge.writeback.mapping import plan_fields
from bridge.writeback.planning import Item, Op, Outcome, Write, failure_outcome
from bridge.writeback.writes import groups, send


@dataclass
class Event:
    """One sale or demo push on its way, with what the steps decided so far."""

    item: Item
    kind: str
    body: dict[str, Any]
    referral_id: int
    person: dict[str, Any]  # the referral's values, with its sf_* ids
    result: dict[str, Any]
    failed: Outcome | None = None
    skipped: str | None = None

    @property
    def trigger(self) -> SyncTrigger:
        return "sale" if self.kind == "sale" else "demo_set"

    @property
    def business(self) -> str | None:
        return self.body.get("business_name") or self.person.get("company")

    @property
    def phone(self) -> str | None:
        return self.body.get("phone") or self.person.get("phone")

    @property
    def at(self) -> str:
        return str(self.body["closed_at"] if self.kind == "sale" else self.body["at"])

    @property
    def account_id(self) -> str | None:
        return (self.result.get("account") or {}).get("record_id")

    @property
    def people(self) -> list[dict[str, Any]]:
        """The referral's person first, then the associated contacts."""
        first = {k: self.person.get(k) for k in ("first_name", "last_name", "phone", "email")}
        return [first, *self.body.get("contacts", [])]

    def fail(self, outcome: Outcome) -> None:
        self.failed = self.failed or outcome

    def live(self) -> bool:
        return self.failed is None and self.skipped is None


def permanent(push_id: int, code: str, message: str, fields: list[str] | None = None) -> Outcome:
    return failure_outcome(push_id, PermanentError(message, code=code, fields=fields or []))


@dataclass
class SharedWrite:
    events: list[Event]  # the pushes that share this record
    fields: dict[str, Any]
    record_id: str | None = None
    saved_id: str | None = None
    ok: bool = False
    created: bool = False  # an upsert that inserted (a create always does)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Records:
    """One object's shared writes in a step: created (no record_id) or updated, or upserted
    by `upsert_by` (an external id field every write carries); `static` (the object's
    `writeback.static` values) goes under what each write carries."""

    sobject: str
    writes: list[SharedWrite]
    static: Mapping[str, Any] | None = None
    upsert_by: str | None = None


def write(
    writer: Writer,
    sobject: str,
    writes: list[SharedWrite],
    static: Mapping[str, Any] | None = None,
    *,
    upsert_by: str | None = None,
) -> None:
    """One object's records (`Records`), sent as `write_all` sends them."""
    write_all(writer, [Records(sobject, writes, static, upsert_by)])


def write_all(writer: Writer, records: list[Records]) -> None:
    """The records of one step (of one or several objects, independent of each other) through
    the drain's packing (`writes.send`: 200 per collection, up to five collections in one
    composite call); a failed record fails every push that shares it, with Salesforce's
    error."""
    shared: dict[int, SharedWrite] = {}
    planned: list[Write] = []
    for r in records:
        for w in r.writes:
            op: Op = "upsert" if r.upsert_by else "update" if w.record_id else "create"
            fields = {**(r.static or {}), **w.fields}
            record_id = w.record_id if op == "update" else None
            one = Write(0, r.sobject, op, fields, record_id, external_id_field=r.upsert_by)
            shared[id(one)] = w
            planned.append(one)
    parts = [part for group in groups(planned) for part in chunks(group, COLLECTION_LIMIT)]
    for call in send(writer, parts):
        for part, answer in call:
            if isinstance(answer, Exception):
                for one in part:
                    w = shared[id(one)]
                    for event in w.events:
                        outcome = failure_outcome(event.item.push_id, answer, fields=w.fields)
                        event.fail(replace(outcome, sobject=one.sobject))
                continue
            for one, result in zip(part, answer, strict=True):
                w = shared[id(one)]
                if result.get("success"):
                    w.ok, w.saved_id = True, str(result.get("id") or w.record_id)
                    w.created = one.op == "create" or bool(result.get("created"))
                    continue
                err = record_error(result)
                for event in w.events:
                    event.fail(
                        Outcome(
                            event.item.push_id,
                            "failed",
                            sobject=one.sobject,
                            error=err,
                            error_class=err.error_class,
                            fields=w.fields,
                        )
                    )


def mapped(cfg: OrgConfig, sobject: str, event: Event) -> dict[str, Any]:
    """The fields of `sobject`'s mappings that this event (sale / demo set) sends."""
    spec = cfg.writeback.objects.get(sobject)  # type: ignore[call-overload]
    if spec is None:
        return {}
    local = dict(event.person)
    for key, value in event.body.items():
        local[f"sale.{key}"] = value
    for key, value in (event.body.get("fields") or {}).items():
        local[f"sale.{key}"] = value
    return plan_fields(local, None, spec.fields, event.trigger).writes
