"""Formula (calculated) fields of the local org, configured in strict mode (`formula_fields`).

Salesforce computes a formula field when the record is read, so its value changes whenever a
field it reads changes — a parent record's field for a cross-object formula
(`Account.Industry` on a Contact) — while the record itself is not saved: its
LastModifiedDate and SystemModstamp stay, and nothing is published for it: a PushTopic may
SELECT formula fields (not filter on them) but notifies only when the record is saved
(Streaming API, "Unsupported PushTopic Queries"), and "Formula fields aren't supported in
Change Data Capture" (CDC guide, "Change Event Trigger Considerations"). Describe marks such a field
``calculated: true`` with its ``calculatedFormula``, not createable, not updateable.

The local org keeps the value stored instead of computing it on read: after every committed
change, each formula field that reads the changed record (its own fields, or a parent's
through a lookup) is recomputed on the records concerned and stored as it is — no new
SystemModstamp, no notification, no event. The change of a save itself carries the record's
new formula values to the streaming side (this listener runs first), so queries, record reads,
describe and the messages of a save show what a real org shows.

``{"object": "Contact", "field": "Account_Tier__c", "type": "Text", "formula": "..."}``;
types Text, Number, Checkbox. The formula language is formula.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.devorg.formula import Formula, Node
from bridge.devorg.schema import FieldDef, ObjectDef
from bridge.devorg.state import DevOrgState, RecordChange

Resolver = Callable[[dict[str, Any], str], Any]

TYPES = {"Text": "string", "Number": "double", "Checkbox": "boolean"}


@dataclass
class CalculatedField:
    sobject: ObjectDef
    fd: FieldDef
    formula: Formula
    parents: bool  # reads a parent record's field (a cross-object formula)


def field_def(name: str, kind: str, formula: str) -> FieldDef:
    """The describe of a formula field: calculated, read-only, with its formula."""
    fd = FieldDef(name, TYPES[kind], length=1300 if kind == "Text" else 0, custom=True)
    if kind == "Number":
        fd.precision, fd.scale = 18, 2
    fd.calculated = True
    fd.createable = fd.updateable = False
    fd.nillable = kind != "Checkbox"
    fd.calculated_formula = formula
    return fd


def reads_parent(node: Node) -> bool:
    if node.kind == "field" and "." in str(node.value):
        return True
    return any(reads_parent(a) for a in node.args)


class Calculated:
    """The configured formula fields and the listener that keeps their values."""

    def __init__(self, state: DevOrgState, resolve: Resolver) -> None:
        self.state = state
        self.resolve = resolve
        self.fields: list[CalculatedField] = []
        state.add_listener(self)

    def set(self, fields: list[CalculatedField]) -> None:
        """Replace the formula fields (the previous ones leave the schema) and compute them."""
        for old in self.fields:
            old.sobject.fields.pop(old.fd.name, None)
            old.sobject.lower.pop(old.fd.name.lower(), None)
        self.fields = fields
        for cf in fields:
            cf.sobject.add(cf.fd)
        with self.state.transaction() as tx:
            for cf in fields:
                for rec in list(self.state.records(cf.sobject.name)):
                    self._compute(tx, cf, rec)

    def _compute(self, tx: Any, cf: CalculatedField, rec: dict[str, Any]) -> Any:
        try:
            value = cf.formula.evaluate(rec, None, self.resolve)
        except (ValueError, TypeError, ZeroDivisionError):
            value = None  # a formula error shows as a blank value (#Error! in the UI)
        if cf.fd.type == "boolean":
            value = bool(value)
        if rec.get(cf.fd.name) != value:
            tx.put(cf.sobject.name, {**rec, cf.fd.name: value})  # no change: no event
        return value

    def record_changed(self, change: RecordChange) -> None:
        if not self.fields or change.change_type == "deleted":
            return
        rid = change.record.get("Id")
        with self.state.transaction() as tx:
            for cf in self.fields:
                if cf.sobject.name == change.sobject:
                    rec = self.state.get(change.sobject, str(rid))
                    if rec is not None:
                        # the listeners after this one (streaming) see the saved record's
                        # value, as a real org evaluates the formula for the message
                        change.record[cf.fd.name] = self._compute(tx, cf, rec)
                elif cf.parents:
                    refs = [
                        f.name
                        for f in cf.sobject.fields.values()
                        if f.type == "reference" and change.sobject in (f.reference_to or [])
                    ]
                    for rec in list(self.state.records(cf.sobject.name)):
                        if any(rec.get(name) == rid for name in refs):
                            self._compute(tx, cf, rec)

    def reset(self) -> None:
        """The org's records went; the formula fields stay configured."""
