"""The receiver's `Lookup` (bridge.receiver.relational) over a Salesforce org.

SOQL by `format_soql`, `IN` lists of up to 200 ids. The org is opened only when a batch really
needs to read something: a batch whose events carry every field costs no login and no call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from simple_salesforce import format_soql

from bridge.errors import BridgeError

log = logging.getLogger(__name__)

IN_CHUNK = 200
"""Ids per IN lookup (one Salesforce collection)."""


def chunks(items: Sequence[str], size: int = IN_CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SalesforceLookup:
    """`Lookup` over the org `connect()` returns (a SalesforceOrg), opened on first use."""

    def __init__(self, connect: Callable[[], Any]):
        self._connect = connect
        self._sforg: Any = None
        self.calls = 0
        self._roles_unavailable = False

    def _query(self, soql: str) -> list[dict[str, Any]]:
        if self._sforg is None:
            self._sforg = self._connect()
        self.calls += 1
        result = self._sforg.call(self._sforg.sf.query_all, soql)
        return [
            {k: v for k, v in r.items() if k != "attributes"} for r in result.get("records", [])
        ]

    def _query_in(self, template: str, ids: Sequence[str], **params: Any) -> list[dict[str, Any]]:
        """`template` with `{ids}` run once per IN_CHUNK ids."""
        out: list[dict[str, Any]] = []
        for part in chunks(list(ids)):
            out += self._query(format_soql(template, ids=list(part), **params))
        return out

    def records(
        self, sobject: str, ids: Sequence[str], fields: Sequence[str]
    ) -> list[dict[str, Any]]:
        return self._query_in(
            "SELECT {fields:literal} FROM {obj:literal} WHERE Id IN {ids}",
            ids,
            fields=", ".join(fields),
            obj=sobject,
        )

    def children(
        self, sobject: str, parent_field: str, parent_ids: Sequence[str], fields: Sequence[str]
    ) -> list[dict[str, Any]]:
        select = list(fields) + ([parent_field] if parent_field not in fields else [])
        return self._query_in(
            "SELECT {fields:literal} FROM {obj:literal} WHERE {parent:literal} IN {ids}",
            parent_ids,
            fields=", ".join(select),
            obj=sobject,
            parent=parent_field,
        )

    def contact_roles(self, by: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        if self._roles_unavailable:
            return []
        try:
            return self._query_in(
                "SELECT OpportunityId, ContactId FROM OpportunityContactRole "
                "WHERE {by:literal} IN {ids}",
                ids,
                by=by,
            )
        except BridgeError as exc:
            if exc.code not in ("INVALID_TYPE", "INVALID_FIELD"):
                raise
            # An org (or user) without access to contact roles: no 1-to-many via roles.
            log.warning(
                "contact roles unavailable (%s); Contact<->Opportunity left empty", exc.code
            )
            self._roles_unavailable = True
            return []
