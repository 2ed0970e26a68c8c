"""HTTP-level doubles of describe, query and PushTopic endpoints (with `responses`), shaped
like Salesforce's answers. A real `SalesforceOrg` talks to them where the local org would be
overkill.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlparse

import responses

from bridge.salesforce.connection import OrgCredentials, SalesforceOrg, build_session
from bridge.salesforce.oauth import TokenResponse

INSTANCE = "https://acme.my.salesforce.com"
API = f"{INSTANCE}/services/data/v63.0"


LOGIN_URL = "https://login.salesforce.com"
ORG_ID = "00D000000000001AAA"
USER_ID = "005000000000001AAA"


@functools.cache
def _private_key() -> str:
    from tests.sf_doubles import new_rsa_key

    return new_rsa_key()[0]  # generating one takes a while: one per test session


def connected_org(access_token: str = "00D000000000001!first") -> SalesforceOrg:  # noqa: S107
    """A real `SalesforceOrg` (JWT credentials) that already holds a token for INSTANCE."""
    creds = OrgCredentials(
        login_url=LOGIN_URL,
        client_id="3MVG9orgdoubles",
        username="integration@acme.example",
        private_key_pem=_private_key(),
    )
    token = TokenResponse(
        access_token=access_token,
        instance_url=INSTANCE,
        id_url=f"{LOGIN_URL}/id/{ORG_ID}/{USER_ID}",
    )
    return SalesforceOrg(creds, build_session(LOGIN_URL), token)


def register_token_endpoint(rsps: responses.RequestsMock, access_token: str) -> None:
    """The JWT bearer grant answering with `access_token` (for re-authentication)."""
    body = {
        "access_token": access_token,
        "instance_url": INSTANCE,
        "id": f"{LOGIN_URL}/id/{ORG_ID}/{USER_ID}",
        "token_type": "Bearer",
        "scope": "api",
    }
    rsps.add(responses.POST, f"{LOGIN_URL}/services/oauth2/token", json=body)


def error(status: int, code: str, message: str) -> tuple[int, dict[str, str], str]:
    body = [{"errorCode": code, "message": message, "fields": []}]
    return status, {"Content-Type": "application/json"}, json.dumps(body)


class PushTopicTable:
    """PushTopic records kept in memory behind query/create/update endpoints."""

    def __init__(self, live_tokens: set[str] | None = None) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.writes: list[tuple[str, dict[str, Any]]] = []
        # When set, only these bearer tokens are accepted (others: 401 INVALID_SESSION_ID).
        self.live_tokens = live_tokens
        self.tokens_seen: list[str] = []

    def _session_problem(self, request: Any) -> tuple[int, dict[str, str], str] | None:
        token = str(request.headers.get("Authorization", "")).removeprefix("Bearer ")
        self.tokens_seen.append(token)
        if self.live_tokens is not None and token not in self.live_tokens:
            return error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        return None

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
        if problem := self._session_problem(request):
            return problem
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
        if problem := self._session_problem(request):
            return problem
        fields = json.loads(request.body)
        if any(r.get("Name") == fields.get("Name") for r in self.records.values()):
            return error(400, "DUPLICATE_VALUE", "duplicate value found: Name")
        self.writes.append(("create", fields))
        topic_id = self.add(**fields)
        body = {"id": topic_id, "success": True, "errors": []}
        return 201, {"Content-Type": "application/json"}, json.dumps(body)

    def _update(self, request: Any) -> tuple[int, dict[str, str], str]:
        if problem := self._session_problem(request):
            return problem
        topic_id = request.url.rstrip("/").rsplit("/", 1)[-1]
        if topic_id not in self.records:
            return error(404, "NOT_FOUND", "The requested resource does not exist")
        fields = json.loads(request.body)
        self.writes.append(("update", {"Id": topic_id, **fields}))
        self.records[topic_id].update(fields)
        return 204, {}, ""


# ---- describe results -----------------------------------------------------------------------


def field(name: str, ftype: str = "string", **overrides: Any) -> dict[str, Any]:
    """One entry of a describe's `fields`, with Salesforce's keys and typical defaults."""
    system = name in ("Id", "SystemModstamp", "LastModifiedById", "IsConverted", "Name") or (
        name.startswith("Converted")
    )
    body: dict[str, Any] = {
        "name": name,
        "label": name.replace("__c", "").replace("_", " "),
        "type": ftype,
        "length": 255
        if ftype in ("string", "textarea", "url", "phone", "combobox", "email")
        else 0,
        "createable": not system,
        "updateable": not system,
        "nillable": name != "Id",
        "externalId": False,
        "calculated": False,
        "custom": name.endswith("__c"),
        "picklistValues": [],
    }
    body.update(overrides)
    return body


def picklist(name: str, values: list[str], inactive: tuple[str, ...] = ()) -> dict[str, Any]:
    entries = [
        {"value": v, "label": v, "active": True, "defaultValue": False, "validFor": None}
        for v in values
    ]
    entries += [
        {"value": v, "label": v, "active": False, "defaultValue": False, "validFor": None}
        for v in inactive
    ]
    return field(name, "picklist", picklistValues=entries)


def sobject(name: str, fields: list[dict[str, Any]], **flags: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "label": name,
        "custom": False,
        "queryable": True,
        "createable": True,
        "updateable": True,
        "deletable": False,
        "fields": fields,
        "urls": {"describe": f"/services/data/v63.0/sobjects/{name}/describe"},
    }
    body.update(flags)
    return body


def _package_fields(sobject_name: str) -> list[dict[str, Any]]:
    from bridge.salesforce.package import org_fields

    return [
        field(f.name, f.describe_type, externalId=f.external_id, length=f.length or 255)
        for f in org_fields()
        if f.sobject == sobject_name
    ]


def _keys() -> list[dict[str, Any]]:
    return [
        field("Id", "id", length=18),
        field("SystemModstamp", "datetime"),
        field("LastModifiedById", "reference", length=18),
    ]


def healthy_describes() -> dict[str, dict[str, Any]]:
    """An org where the package is deployed and every field the example config names exists."""
    lead = sobject(
        "Lead",
        [
            *_keys(),
            field("IsConverted", "boolean"),
            field("ConvertedContactId", "reference", length=18),
            field("ConvertedAccountId", "reference", length=18),
            field("ConvertedOpportunityId", "reference", length=18),
            picklist("Status", ["Open - Not Contacted", "Working - Contacted",
                                "Closed - Converted", "Closed - Not Converted"]),
            field("Email", "email", length=80),
            field("Name", "string"),
            field("FirstName"),
            field("LastName"),
            field("Company"),
            field("Phone", "phone"),
            field("Title", length=128),
            field("Website", "url"),
            field("Address", "address", createable=False, updateable=False),
            *_package_fields("Lead"),
        ],
    )  # fmt: skip
    contact = sobject(
        "Contact",
        [
            *_keys(),
            field("AccountId", "reference", length=18),
            field("Email", "email", length=80),
            field("Name"),
            field("FirstName"),
            field("LastName"),
            field("Phone", "phone"),
            field("MobilePhone", "phone"),
            field("Title", length=128),
            field("MailingAddress", "address", createable=False, updateable=False),
            *_package_fields("Contact"),
        ],
    )
    account = sobject(
        "Account",
        [
            *_keys(),
            field("Name"),
            field("Website", "url"),
            picklist("Industry", ["Agriculture", "Banking", "Technology"]),
            field("BillingAddress", "address", createable=False, updateable=False),
        ],
    )
    opportunity = sobject(
        "Opportunity",
        [
            *_keys(),
            field("AccountId", "reference", length=18),
            field("Amount", "currency"),
            picklist("StageName", ["Prospecting", "Qualification", "Negotiation/Review",
                                   "Closed Won", "Closed Lost"]),
        ],
    )  # fmt: skip
    task = sobject(
        "Task",
        [
            field("Id", "id", length=18),
            field("Subject", "combobox"),
            picklist("Type", ["Call", "Email", "Meeting", "Other"]),
            picklist("Status", ["Not Started", "In Progress", "Completed"]),
            field("WhoId", "reference", length=18),
            *_package_fields("Task"),
        ],
    )
    event = sobject(
        "Event",
        [
            field("Id", "id", length=18),
            field("Subject", "combobox"),
            picklist("Type", ["Call", "Email", "Meeting", "Other"]),
            field("WhoId", "reference", length=18),
            *_package_fields("Event"),
        ],
    )
    pushtopic = sobject(
        "PushTopic",
        [field("Id", "id", length=18), field("Name", length=25), field("Query", length=1300)],
    )
    return {d["name"]: d for d in (lead, contact, account, opportunity, task, event, pushtopic)}


def register_describes(
    rsps: responses.RequestsMock,
    describes: dict[str, dict[str, Any]],
    missing: tuple[str, ...] = (),
) -> None:
    for name, body in describes.items():
        if name in missing:
            continue
        rsps.add(responses.GET, f"{API}/sobjects/{name}/describe", json=body)
    for name in missing:
        status, headers, text = error(404, "NOT_FOUND", "The requested resource does not exist")
        rsps.add(
            responses.GET,
            f"{API}/sobjects/{name}/describe",
            status=status,
            headers=headers,
            body=text,
        )
