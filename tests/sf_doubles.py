"""HTTP-level doubles of the Salesforce REST API (with `responses`), shaped like Salesforce's.

Used where the local org would be overkill: a real simple-salesforce client talks to these.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests
import responses
from simple_salesforce import Salesforce

INSTANCE = "https://acme.my.salesforce.com"
API = f"{INSTANCE}/services/data/v63.0"


class StubOrg:
    """The `SalesforceOrg` surface the org tools use: `.sf` and `.call(fn, ...)`."""

    def __init__(self) -> None:
        session = requests.Session()
        session.trust_env = False
        self.sf = Salesforce(
            instance_url=INSTANCE,
            session_id="00D000000000001!token",
            version="63.0",
            session=session,
        )

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)


def error(status: int, code: str, message: str) -> tuple[int, dict[str, str], str]:
    body = [{"errorCode": code, "message": message, "fields": []}]
    return status, {"Content-Type": "application/json"}, json.dumps(body)


class PushTopicTable:
    """PushTopic records kept in memory behind query/create/update endpoints."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.writes: list[tuple[str, dict[str, Any]]] = []

    def add(self, **fields: Any) -> str:
        topic_id = f"0IF{len(self.records) + 1:015d}"
        self.records[topic_id] = {"Id": topic_id, **fields}
        return topic_id

    def register(self, rsps: responses.RequestsMock) -> None:
        rsps.add_callback(
            responses.GET, re.compile(rf"{re.escape(API)}/query/?\?.*"), callback=self._query
        )
        rsps.add_callback(responses.POST, f"{API}/sobjects/PushTopic/", callback=self._create)
        rsps.add_callback(
            responses.PATCH,
            re.compile(rf"{re.escape(API)}/sobjects/PushTopic/\w+"),
            callback=self._update,
        )

    def _query(self, request: Any) -> tuple[int, dict[str, str], str]:
        soql = parse_qs(urlparse(request.url).query)["q"][0]
        if " FROM PushTopic" not in soql:
            return error(400, "INVALID_TYPE", "unexpected query in this double")
        match = re.search(r"Name IN \(([^)]*)\)", soql)
        names = re.findall(r"'((?:\\.|[^'])*)'", match.group(1)) if match else []
        records = [
            {
                "attributes": {
                    "type": "PushTopic",
                    "url": f"/services/data/v63.0/sobjects/PushTopic/{r['Id']}",
                },
                **r,
            }
            for r in self.records.values()
            if r.get("Name") in names
        ]
        body = {"totalSize": len(records), "done": True, "records": records}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def _create(self, request: Any) -> tuple[int, dict[str, str], str]:
        fields = json.loads(request.body)
        if any(r.get("Name") == fields.get("Name") for r in self.records.values()):
            return error(400, "DUPLICATE_VALUE", "duplicate value found: Name")
        self.writes.append(("create", fields))
        topic_id = self.add(**fields)
        body = {"id": topic_id, "success": True, "errors": []}
        return 201, {"Content-Type": "application/json"}, json.dumps(body)

    def _update(self, request: Any) -> tuple[int, dict[str, str], str]:
        topic_id = request.url.rstrip("/").rsplit("/", 1)[-1]
        if topic_id not in self.records:
            return error(404, "NOT_FOUND", "The requested resource does not exist")
        fields = json.loads(request.body)
        self.writes.append(("update", {"Id": topic_id, **fields}))
        self.records[topic_id].update(fields)
        return 204, {}, ""
