"""The two Salesforce calls writeback needs: a SOQL query and an sObject Collections request.

`OrgWriter` runs them on a connected org through its `call` (one re-authentication on an
expired session, failures turned into classified `SalesforceError`s). Per-record errors inside
a 200 response are classified with the same table.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from bridge.errors import ErrorClass, TransientError
from bridge.salesforce.bulk import BulkWriter
from bridge.salesforce.errors import category_for, classify, make_error

COLLECTION_LIMIT = 200
"""sObject Collections take at most 200 records per request."""

LOOKUP_CHUNK = 100
"""Values per IN list: keeps the query URL well under Salesforce's request size limits."""

COMPOSITE_HEAVY = 5
"""Queries or sObject Collections per composite request: "You can have up to 25 subrequests in
a single call. Up to 5 of these subrequests can be sObject Collections or query operations"
(REST API Developer Guide, Composite); the whole request counts as one API call."""

CollectionRequest = tuple[str, str, list[dict[str, Any]]]
"""One sObject Collections request: method, path (composite/sobjects...), records."""


def classify_code(code: str) -> ErrorClass:
    """Who can fix a Salesforce error code (the connection's table): retry (transient), the
    admin (usage), or the data (permanent: STRING_TOO_LONG, REQUIRED_FIELD_MISSING...)."""
    return category_for(code, None)


@dataclass(frozen=True)
class RecordError:
    """The first error of one record in an sObject Collections response."""

    code: str
    message: str
    fields: list[str]

    @property
    def error_class(self) -> ErrorClass:
        return classify_code(self.code)


def record_error(result: dict[str, Any]) -> RecordError:
    errors = result.get("errors") or [{}]
    first = errors[0]
    code = str(first.get("statusCode") or first.get("errorCode") or "UNKNOWN_EXCEPTION")
    message = str(first.get("message") or "Salesforce reported the record as not saved")
    if len(errors) > 1:
        message += "".join(f"; {e.get('statusCode')}: {e.get('message')}" for e in errors[1:])
    return RecordError(code, message, [str(f) for f in first.get("fields") or []])


class Writer(Protocol):
    def query(self, soql: str) -> list[dict[str, Any]]: ...

    def queries(self, soqls: list[str]) -> list[list[dict[str, Any]]]: ...

    def collection(
        self, method: str, path: str, records: list[dict[str, Any]]
    ) -> list[dict[str, Any]]: ...

    def collections(
        self, requests: list[CollectionRequest]
    ) -> list[list[dict[str, Any]] | Exception]: ...

    def bulk(
        self,
        sobject: str,
        operation: str,
        records: list[dict[str, Any]],
        *,
        external_id_field: str | None = None,
    ) -> list[dict[str, Any]]: ...


def direct_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a call on a bare simple-salesforce client, classifying Salesforce failures."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        err = classify(exc)
        if err is None:
            raise  # a bug must not be saved as if Salesforce had answered it
        raise err from exc


@dataclass
class OrgWriter:
    """Queries and sObject Collections on a simple-salesforce client.

    Built `for_org`, every call goes through the org's `call` and reads `org.sf` when it runs,
    so a re-authentication (new token, maybe a new instance) is picked up.
    """

    sf: Any
    call: Callable[..., Any] = direct_call
    org: Any = None

    @classmethod
    def for_org(cls, org: Any) -> OrgWriter:
        """From a connected `SalesforceOrg` (its `.sf` client and classifying `.call`)."""
        return cls(org.sf, org.call, org)

    def _client(self) -> Any:
        return self.org.sf if self.org is not None else self.sf

    def query(self, soql: str) -> list[dict[str, Any]]:
        result = self.call(lambda: self._client().query_all(soql))
        return [dict(r) for r in result.get("records", [])]

    def queries(self, soqls: list[str]) -> list[list[dict[str, Any]]]:
        """Several queries, COMPOSITE_HEAVY per composite request (one API call each
        instead of one per query); each query's records, pages followed."""
        if len(soqls) <= 1:
            return [self.query(q) for q in soqls]
        out: list[list[dict[str, Any]]] = []
        for part in chunks(soqls, COMPOSITE_HEAVY):
            out += self.call(lambda part=part: self._composite_queries(part))
        return out

    def _composite_queries(self, soqls: list[str]) -> list[list[dict[str, Any]]]:
        client = self._client()
        body = {
            "allOrNone": False,
            "compositeRequest": [
                {
                    "method": "GET",
                    "url": f"/services/data/v{client.sf_version}/query?{urlencode({'q': q})}",
                    "referenceId": f"q{i}",
                }
                for i, q in enumerate(soqls)
            ],
        }
        result = client.restful("composite", method="POST", data=json.dumps(body))
        answers = (result or {}).get("compositeResponse") if isinstance(result, dict) else None
        if not isinstance(answers, list) or len(answers) != len(soqls):
            raise TransientError(
                f"Salesforce answered composite with {type(result).__name__} for "
                f"{len(soqls)} queries",
                code="UNEXPECTED_RESPONSE",
            )
        out = []
        for answer in answers:
            page = answer.get("body")
            status = int(answer.get("httpStatusCode") or 500)
            if status >= 400 or not isinstance(page, dict):
                first = (page or [{}])[0] if isinstance(page, list) else {}
                raise make_error(
                    str(first.get("errorCode") or "UNKNOWN_EXCEPTION"),
                    str(first.get("message") or f"query failed with {status}"),
                    status=status,
                )
            records = [dict(r) for r in page.get("records", [])]
            while not page.get("done", True) and page.get("nextRecordsUrl"):
                page = client.query_more(page["nextRecordsUrl"], identifier_is_url=True)
                records += [dict(r) for r in page.get("records", [])]
            out.append(records)
        return out

    def collection(
        self, method: str, path: str, records: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if len(records) > COLLECTION_LIMIT:
            raise ValueError(f"{len(records)} records: sObject Collections take {COLLECTION_LIMIT}")
        body = json.dumps({"allOrNone": False, "records": records}, default=str)
        result = self.call(lambda: self._client().restful(path, method=method, data=body))
        # An empty answer (None) is as unexpected as a short list: no push may be left unsaved.
        if not isinstance(result, list) or len(result) != len(records):
            raise TransientError(
                f"Salesforce answered {path} with {type(result).__name__} for "
                f"{len(records)} records",
                code="UNEXPECTED_RESPONSE",
            )
        return [dict(r) for r in result]

    def collections(
        self, requests: list[CollectionRequest]
    ) -> list[list[dict[str, Any]] | Exception]:
        """Up to COMPOSITE_HEAVY sObject Collections requests in ONE composite call (allOrNone
        false: each subrequest stands alone). Per request: its records' results in order, or
        the classified error that failed that subrequest as a whole. One request alone is sent
        as a plain collection call (the same one call, no envelope). The call itself failing
        (auth, limits, an outage) raises, for every request alike."""
        if len(requests) > COMPOSITE_HEAVY:
            raise ValueError(f"{len(requests)} requests: a composite takes {COMPOSITE_HEAVY}")
        if len(requests) == 1:
            return [self.collection(*requests[0])]
        for _method, _path, records in requests:
            if len(records) > COLLECTION_LIMIT:
                raise ValueError(
                    f"{len(records)} records: sObject Collections take {COLLECTION_LIMIT}"
                )
        return self.call(lambda: self._composite_collections(requests))

    def _composite_collections(
        self, requests: list[CollectionRequest]
    ) -> list[list[dict[str, Any]] | Exception]:
        client = self._client()
        body = {
            "allOrNone": False,
            "compositeRequest": [
                {
                    "method": method,
                    "url": f"/services/data/v{client.sf_version}/{path}",
                    "referenceId": f"w{i}",
                    "body": {"allOrNone": False, "records": records},
                }
                for i, (method, path, records) in enumerate(requests)
            ],
        }
        data = json.dumps(body, default=str)
        result = client.restful("composite", method="POST", data=data)
        answers = (result or {}).get("compositeResponse") if isinstance(result, dict) else None
        if not isinstance(answers, list) or len(answers) != len(requests):
            raise TransientError(
                f"Salesforce answered composite with {type(result).__name__} for "
                f"{len(requests)} collection requests",
                code="UNEXPECTED_RESPONSE",
            )
        out: list[list[dict[str, Any]] | Exception] = []
        for (_method, path, records), answer in zip(requests, answers, strict=True):
            page = answer.get("body")
            status = int(answer.get("httpStatusCode") or 500)
            if status < 400 and isinstance(page, list) and len(page) == len(records):
                out.append([dict(r) for r in page])
                continue
            first = (page or [{}])[0] if isinstance(page, list) else {}
            if status < 400:  # a short or odd answer: no push may be left unsaved
                out.append(
                    TransientError(
                        f"Salesforce answered {path} with {type(page).__name__} for "
                        f"{len(records)} records",
                        code="UNEXPECTED_RESPONSE",
                    )
                )
                continue
            out.append(
                make_error(
                    str(first.get("errorCode") or "UNKNOWN_EXCEPTION"),
                    str(first.get("message") or f"{path} failed with {status}"),
                    status=status,
                )
            )
        return out

    def bulk(
        self,
        sobject: str,
        operation: str,
        records: list[dict[str, Any]],
        *,
        external_id_field: str | None = None,
    ) -> list[dict[str, Any]]:
        """Many records through Bulk API 2.0 (`BulkWriter`): one result per record, shaped as
        a collection's. Needs a connected org (its session and `request`)."""
        if self.org is None:
            raise TransientError("Bulk API 2.0 needs a connected org", code="NO_BULK_CLIENT")
        return BulkWriter(self.org).write(
            sobject, operation, records, external_id_field=external_id_field
        )


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
