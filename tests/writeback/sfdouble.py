"""An HTTP double of the two REST resources writeback uses, answering like the REST API docs:

- ``GET /services/data/vXX.X/query/?q=...`` → ``{"totalSize", "done", "records": [...]}``
  (records carry ``attributes``); the double answers ``SELECT ... FROM <Object> WHERE ...
  Email IN (...)`` from the records it holds.
- ``POST|PATCH /services/data/vXX.X/composite/sobjects[/<Object>/<ExternalIdField>]`` →
  a list of SaveResult / UpsertResult objects in request order:
  ``{"id", "success": true, "errors": [], "created"}`` or
  ``{"success": false, "errors": [{"statusCode", "message", "fields"}]}``.

Requests are recorded so tests can assert what was sent and how many calls were made.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import responses
from simple_salesforce import Salesforce

from bridge.writeback.client import OrgWriter

INSTANCE = "https://acme.my.salesforce.com"
VERSION = "63.0"
PREFIX = {"Lead": "00Q", "Contact": "003", "Account": "001", "Task": "00T", "Event": "00U"}

RecordFault = Callable[[str, dict[str, Any]], dict[str, Any] | None]


@dataclass
class SalesforceDouble:
    rsps: responses.RequestsMock
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)
    writes: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    # (object, record) -> an error dict to fail that record with, or None
    fault: RecordFault | None = None
    # whole-request failure: (status, body) for the next N requests matching a path fragment
    request_faults: list[tuple[str, int, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        base = re.compile(re.escape(f"{INSTANCE}/services/data/v{VERSION}/") + r".*")
        for method in ("GET", "POST", "PATCH"):
            self.rsps.add_callback(method, base, callback=self._handle)

    def writer(self) -> OrgWriter:
        session = requests.Session()
        session.trust_env = False
        sf = Salesforce(
            instance_url=INSTANCE, session_id="00Dxx!token", version=VERSION, session=session
        )
        return OrgWriter(sf)

    def new_id(self, sobject: str) -> str:
        return f"{PREFIX.get(sobject, '0XX')}{next(self._ids):012d}AAA"

    def add(self, sobject: str, **values: Any) -> dict[str, Any]:
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        record = {"Id": self.new_id(sobject), "CreatedDate": created, **values}
        self.records.setdefault(sobject, []).append(record)
        return record

    # ---- HTTP ------------------------------------------------------------------------------

    def _handle(self, request: Any) -> tuple[int, dict[str, str], str]:
        url = urlsplit(request.url)
        path = url.path.split(f"/v{VERSION}/", 1)[1]
        for i, (fragment, status, body) in enumerate(self.request_faults):
            if fragment in path:
                del self.request_faults[i]
                return status, {"Content-Type": "application/json"}, json.dumps(body)
        if path.rstrip("/") == "query":
            soql = parse_qs(url.query)["q"][0]
            return self._query(soql)
        if path.startswith("composite/sobjects"):
            return self._collection(request.method, path, json.loads(request.body))
        if path.rstrip("/") == "composite":  # queries or collections, several in one call
            subs = json.loads(request.body)["compositeRequest"]
            assert len(subs) <= 5, "up to 5 sObject Collections or query subrequests"
            out = []
            for sub in subs:
                sub_url = urlsplit(sub["url"])
                sub_path = sub_url.path.split(f"/v{VERSION}/", 1)[1]
                kind = (
                    "composite/sobjects" if sub_path.startswith("composite/sobjects") else "query"
                )
                fault = next((f for f in self.request_faults if f[0] in kind), None)
                if fault is not None:  # a failing subrequest, as Salesforce reports one
                    self.request_faults.remove(fault)
                    status, text = fault[1], json.dumps(fault[2])
                elif kind == "query":
                    status, _h, text = self._query(parse_qs(sub_url.query)["q"][0])
                else:
                    status, _h, text = self._collection(sub["method"], sub_path, sub["body"])
                out.append(
                    {"body": json.loads(text), "httpHeaders": {}, "httpStatusCode": status,
                     "referenceId": sub["referenceId"]}
                )  # fmt: skip
            return 200, {"Content-Type": "application/json"}, json.dumps({"compositeResponse": out})
        return 404, {}, json.dumps([{"errorCode": "NOT_FOUND", "message": path}])

    def _query(self, soql: str) -> tuple[int, dict[str, str], str]:
        self.queries.append(soql)
        sobject = re.search(r"\bFROM (\w+)", soql).group(1)  # type: ignore[union-attr]
        converted_excluded = "IsConverted = false" in soql
        in_list = re.search(r"Email IN \(([^)]*)\)", soql)
        if in_list:
            emails = {e.lower() for e in re.findall(r"'((?:[^'\\]|\\.)*)'", in_list.group(1))}

            def wanted(r: dict[str, Any]) -> bool:
                return str(r.get("Email", "")).lower() in emails

        else:  # Website LIKE '%domain%' OR ...
            likes = [
                p.replace("\\", "").strip("%").lower()
                for p in re.findall(r"Website LIKE '((?:[^'\\]|\\.)*)'", soql)
            ]
            assert likes, f"the double does not answer: {soql}"

            def wanted(r: dict[str, Any]) -> bool:
                return any(x in str(r.get("Website") or "").lower() for x in likes)

        rows = [
            r
            for r in self.records.get(sobject, [])
            if wanted(r) and not (converted_excluded and r.get("IsConverted"))
        ]
        rows.sort(key=lambda r: (r.get("CreatedDate", ""), r["Id"]))
        body = {
            "totalSize": len(rows),
            "done": True,
            "records": [
                {
                    "attributes": {
                        "type": sobject,
                        "url": f"/services/data/v{VERSION}/sobjects/{sobject}/{r['Id']}",
                    },
                    **{k: v for k, v in r.items() if k != "IsConverted"},
                }
                for r in rows
            ],
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def _collection(
        self, method: str, path: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, str], str]:
        assert body["allOrNone"] is False
        assert len(body["records"]) <= 200
        parts = path.split("/")
        results = []
        for record in body["records"]:
            sobject = record["attributes"]["type"]
            fields = {k: v for k, v in record.items() if k != "attributes"}
            self.writes.append((method, path, record))
            error = self.fault(sobject, fields) if self.fault else None
            if error is not None:
                results.append({"success": False, "errors": [error]})
                continue
            if len(parts) == 4:  # upsert by external id
                assert parts[2] == sobject
                ext_field = parts[3]
                existing = next(
                    (
                        r
                        for r in self.records.get(sobject, [])
                        if r.get(ext_field) == fields[ext_field]
                    ),
                    None,
                )
                if existing:
                    existing.update(fields)
                    results.append(
                        {"id": existing["Id"], "success": True, "errors": [], "created": False}
                    )
                else:
                    created = self.add(sobject, **fields)
                    results.append(
                        {"id": created["Id"], "success": True, "errors": [], "created": True}
                    )
            elif method == "PATCH":  # update by id
                ids = {k: v for k, v in fields.items() if k.lower() == "id"}
                assert len(ids) == 1, "an update names its record by id"
                [(id_key, record_id)] = ids.items()
                target = next(r for r in self.records.get(sobject, []) if r["Id"] == record_id)
                target.update({k: v for k, v in fields.items() if k != id_key})
                results.append({"id": target["Id"], "success": True, "errors": []})
            else:
                created = self.add(sobject, **fields)
                results.append({"id": created["Id"], "success": True, "errors": []})
        return 200, {"Content-Type": "application/json"}, json.dumps(results)

    def collection_calls(self) -> list[Any]:
        """The calls that wrote: sObject Collections, alone or inside a composite call."""
        return [
            c
            for c in self.rsps.calls
            if "/composite/sobjects" in c.request.url
            or (c.request.url.rstrip("/").endswith("/composite")
                and "composite/sobjects" in str(c.request.body or ""))
        ]  # fmt: skip
