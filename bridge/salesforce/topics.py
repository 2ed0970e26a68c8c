"""The PushTopics the bridge subscribes to: planned from the config, checked, then applied by Name.

PushTopics are records, not metadata, so the package cannot deploy them. Planning is pure:
`desired_topics(org_config)` builds one topic per streamed object and checks every documented
PushTopic restriction before anything is sent; `plan(existing, desired)` compares them with
what the org has; `apply(plan, org)` creates or updates only what differs, so running it twice
changes nothing the second time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

from simple_salesforce import Salesforce, SFType, format_soql

from bridge.config import OrgConfig
from bridge.errors import UsageError
from bridge.salesforce.package import PACKAGE_API_VERSION
from bridge.text import format_table
from bridge.vocabulary import READ_SYNC_RULES, TOPIC_NAMES

MAX_NAME_LENGTH = 25
"""PushTopic.Name limit."""

MAX_QUERY_LENGTH = 1300
"""PushTopic.Query limit."""

ALWAYS_SELECTED = ("Id", "SystemModstamp", "LastModifiedById")
"""Id (required by Salesforce), the change stamp for cursors, and the author for own-write skips."""

RELATIONAL_KEYS: dict[str, tuple[str, ...]] = {
    "Lead": ("IsConverted", "ConvertedContactId", "ConvertedAccountId", "ConvertedOpportunityId"),
    "Contact": ("AccountId",),
    "Account": (),
    "Opportunity": ("AccountId",),
}
"""Keys the inbound side follows to related records (SPEC §6 relational rules)."""

FUZZY_MATCH_FIELDS: dict[str, tuple[str, ...]] = {
    "Lead": ("Email", "Name", "FirstName", "LastName", "Company", "Phone"),
    "Contact": ("Email", "Name", "FirstName", "LastName", "Phone"),
}
"""Read by fuzzy matching (email, then name with company/phone). `Name` is listed because a
PushTopic only notices changes to a compound name when the query names `Name` itself."""

_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

# PushTopic fields the bridge manages; anything else on the record is left alone.
_MANAGED = (
    "Query",
    "ApiVersion",
    "NotifyForFields",
    "NotifyForOperationCreate",
    "NotifyForOperationUpdate",
    "NotifyForOperationDelete",
    "NotifyForOperationUndelete",
    "IsActive",
    "Description",
)


@dataclass(frozen=True)
class TopicSpec:
    """One PushTopic as the bridge wants it."""

    name: str
    sobject: str
    fields: tuple[str, ...]
    api_version: str = PACKAGE_API_VERSION
    notify_for_fields: str = "Referenced"

    @property
    def query(self) -> str:
        # Identifiers cannot be quoted in SOQL; every one was checked against _IDENT first.
        return format_soql(
            "SELECT {:literal} FROM {:literal}", ", ".join(self.fields), self.sobject
        )

    @property
    def description(self) -> str:
        return f"sfbridge: changes to {self.sobject} records (managed by `sfbridge org topics`)"

    def record(self) -> dict[str, Any]:
        """The PushTopic field values to send (create or update)."""
        return {
            "Query": self.query,
            "ApiVersion": float(self.api_version),
            "NotifyForFields": self.notify_for_fields,
            "NotifyForOperationCreate": True,
            "NotifyForOperationUpdate": True,
            "NotifyForOperationDelete": True,
            "NotifyForOperationUndelete": True,
            "IsActive": True,
            "Description": self.description,
        }


def topic_fields(org: OrgConfig, sobject: str) -> list[str]:
    """Every field of `sobject` the bridge reads: fixed keys first, then the config's fields."""
    out: list[str] = [*ALWAYS_SELECTED, *RELATIONAL_KEYS.get(sobject, ())]
    wanted = list(org.fields_read(sobject))
    if org.receiver.target_match.fuzzy:
        wanted += FUZZY_MATCH_FIELDS.get(sobject, ())
    sync = org.writeback.objects.get(sobject)  # type: ignore[call-overload]
    if sync is not None:
        for mapping in sync.fields:
            if mapping.sync in READ_SYNC_RULES:
                wanted += mapping.salesforce
    for name in wanted:
        if name not in out:
            out.append(name)
    return out


def query_problems(name: str, query: str) -> list[str]:
    """Every documented PushTopic restriction `name`/`query` break (empty when fine)."""
    problems: list[str] = []
    if not _IDENT.match(name):
        problems.append(f"{name}: a PushTopic name is letters, digits and _")
    if len(name) > MAX_NAME_LENGTH:
        problems.append(f"{name}: name is {len(name)} characters; the limit is {MAX_NAME_LENGTH}")
    if len(query) > MAX_QUERY_LENGTH:
        problems.append(
            f"{name}: query is {len(query)} characters; the limit is {MAX_QUERY_LENGTH} "
            "(read fewer fields of this object in the config)"
        )
    # String literals may legitimately contain any word: judge only the SOQL around them.
    bare = re.sub(r"'(?:\\.|[^'\\])*'", "''", query)
    upper = " ".join(bare.upper().split())
    match = re.match(r"^SELECT (.+?) FROM ([A-Za-z0-9_]+)(?: (.*))?$", upper)
    if not match:
        problems.append(f"{name}: the query must have the form: SELECT fields FROM object")  # noqa: S608 - a message
        return problems
    rest = match.group(3) or ""
    fields = [f.strip() for f in bare.split(" FROM ", 1)[0][len("SELECT ") :].split(",")]
    if "ID" not in [f.upper() for f in fields]:
        problems.append(f"{name}: the SELECT list must include Id")
    for f in fields:
        if "." in f:
            problems.append(f"{name}: {f}: relationships are not supported; select the Id field")
        elif "(" in f:
            problems.append(f"{name}: {f}: aggregate queries are not supported")
        elif not _IDENT.match(f):
            problems.append(f"{name}: {f!r} is not a field name")
    checks = [
        (r"\bLIMIT\b", "LIMIT is not allowed"),
        (r"\bORDER BY\b", "ORDER BY is not allowed"),
        (r"\bGROUP BY\b", "GROUP BY (aggregate queries) is not supported"),
        (r"\bNOT\b(?! IN\b)", "NOT is not supported (NOT IN is; use != instead)"),
        (r"\b(COUNT|COUNT_DISTINCT|SUM|AVG|MIN|MAX) ?\(", "aggregate queries are not supported"),
        (r"\( ?SELECT\b", "semi-joins and anti-joins are not supported"),
    ]
    problems += [f"{name}: {message}" for pattern, message in checks if re.search(pattern, rest)]
    return problems


def desired_topics(org: OrgConfig, api_version: str = PACKAGE_API_VERSION) -> list[TopicSpec]:
    """The topics in `org.streaming.topics`, built and checked; UsageError lists every problem."""
    by_name = {topic: sobject for sobject, topic in TOPIC_NAMES.items()}
    problems: list[str] = []
    out: list[TopicSpec] = []
    for name in org.streaming.topics:
        sobject = by_name.get(name)
        if sobject is None:
            problems.append(
                f"streaming.topics: {name}: sfbridge plans only {', '.join(TOPIC_NAMES.values())}"
            )
            continue
        fields = topic_fields(org, sobject)
        bad = [f for f in fields if not _IDENT.match(f)]
        if bad:
            problems += [f"{name}: {f!r} is not a field name" for f in bad]
            continue
        spec = TopicSpec(name, sobject, tuple(fields), api_version)
        problems += query_problems(spec.name, spec.query)
        out.append(spec)
    if problems:
        raise UsageError(
            "PushTopics cannot be created as configured: " + "; ".join(problems),
            code="invalid_pushtopic",
        )
    return out


# ---- plan -----------------------------------------------------------------------------------

Action = Literal["create", "update", "unchanged"]


@dataclass(frozen=True)
class TopicAction:
    """What `apply` will do for one topic, and why."""

    action: Action
    spec: TopicSpec
    topic_id: str | None = None
    changes: tuple[str, ...] = ()
    values: Mapping[str, Any] = field(default_factory=dict)


def _same(field_name: str, have: Any, want: Any) -> bool:
    if field_name == "Query":
        return " ".join(str(have or "").split()) == " ".join(str(want).split())
    if field_name == "ApiVersion":
        try:
            return float(have) == float(want)
        except (TypeError, ValueError):
            return False
    return bool(have == want)


def plan(existing: Iterable[Mapping[str, Any]], desired: Sequence[TopicSpec]) -> list[TopicAction]:
    """Compare the org's PushTopics (records with at least Id, Name and the managed fields)."""
    by_name = {str(rec.get("Name")): rec for rec in existing}
    actions: list[TopicAction] = []
    for spec in desired:
        want = spec.record()
        have = by_name.get(spec.name)
        if have is None:
            actions.append(TopicAction("create", spec, values=want))
            continue
        changed = tuple(k for k in _MANAGED if not _same(k, have.get(k), want[k]))
        if changed:
            values = {k: want[k] for k in changed}
            actions.append(TopicAction("update", spec, str(have["Id"]), changed, values))
        else:
            actions.append(TopicAction("unchanged", spec, str(have["Id"])))
    return actions


# ---- talking to the org ---------------------------------------------------------------------


class OrgClient(Protocol):
    """The part of `bridge.salesforce.connection.SalesforceOrg` this module uses."""

    @property
    def sf(self) -> Salesforce: ...

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any: ...


def fetch_existing(org: OrgClient, names: Sequence[str]) -> list[dict[str, Any]]:
    """The org's PushTopics with these names (one query)."""
    if not names:
        return []
    soql = format_soql(
        "SELECT Id, Name, {:literal} FROM PushTopic WHERE Name IN {}",
        ", ".join(_MANAGED),
        list(names),
    )
    result = org.call(org.sf.query_all, soql)
    return [dict(r) for r in result.get("records", [])]


@dataclass(frozen=True)
class Applied:
    name: str
    action: Action
    topic_id: str | None


def _pushtopic(org: OrgClient) -> SFType:
    return cast(SFType, org.sf.PushTopic)


def apply(actions: Sequence[TopicAction], org: OrgClient) -> list[Applied]:
    """Create or update what the plan says; unchanged topics are not touched."""
    done: list[Applied] = []
    for act in actions:
        # The client is looked up inside the call: a re-authentication that moves the org to
        # another instance replaces it, and the repeat must use the new one.
        if act.action == "create":
            payload = {"Name": act.spec.name, **act.values}
            created = org.call(lambda p=payload: _pushtopic(org).create(p))
            done.append(Applied(act.spec.name, "create", str(created.get("id"))))
        elif act.action == "update":
            assert act.topic_id is not None
            topic_id, changes = act.topic_id, dict(act.values)
            org.call(lambda t=topic_id, c=changes: _pushtopic(org).update(t, c))
            done.append(Applied(act.spec.name, "update", act.topic_id))
        else:
            done.append(Applied(act.spec.name, "unchanged", act.topic_id))
    return done


def sync_topics(
    org: OrgClient, org_config: OrgConfig, *, dry_run: bool = False
) -> tuple[list[TopicAction], list[Applied]]:
    """Plan against what the org has now and (unless `dry_run`) apply it."""
    desired = desired_topics(org_config)
    actions = plan(fetch_existing(org, [t.name for t in desired]), desired)
    return actions, ([] if dry_run else apply(actions, org))


# ---- anonymous Apex -------------------------------------------------------------------------


def _apex_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def apex_script(desired: Sequence[TopicSpec]) -> str:
    """Anonymous Apex that upserts the same topics by Name (for admins without the bridge CLI)."""
    lines = [
        "// Creates or updates the sfbridge PushTopics by Name: run it again and it only updates.",
        "// Generated by `sfbridge org topics NAME --apex`; run it with",
        "//   sf apex run --file scripts/apex/create_pushtopics.apex --target-org <alias>",
        "List<PushTopic> topics = new List<PushTopic>{",
    ]
    entries = []
    for spec in desired:
        rec = spec.record()
        entries.append(
            "    new PushTopic(\n"
            f"        Name = {_apex_string(spec.name)},\n"
            f"        Query = {_apex_string(rec['Query'])},\n"
            f"        ApiVersion = {rec['ApiVersion']},\n"
            f"        NotifyForFields = {_apex_string(rec['NotifyForFields'])},\n"
            "        NotifyForOperationCreate = true,\n"
            "        NotifyForOperationUpdate = true,\n"
            "        NotifyForOperationDelete = true,\n"
            "        NotifyForOperationUndelete = true,\n"
            "        IsActive = true,\n"
            f"        Description = {_apex_string(rec['Description'])}\n"
            "    )"
        )
    lines.append(",\n".join(entries))
    lines += [
        "};",
        "Set<String> names = new Set<String>();",
        "for (PushTopic t : topics) {",
        "    names.add(t.Name);",
        "}",
        "Map<String, Id> existing = new Map<String, Id>();",
        "for (PushTopic t : [SELECT Id, Name FROM PushTopic WHERE Name IN :names]) {",
        "    existing.put(t.Name, t.Id);",
        "}",
        "for (PushTopic t : topics) {",
        "    t.Id = existing.get(t.Name);",
        "}",
        "upsert topics;",
        "System.debug('sfbridge PushTopics created or updated: ' + names);",
        "",
    ]
    return "\n".join(lines)


# ---- report ---------------------------------------------------------------------------------


def format_plan(actions: Sequence[TopicAction]) -> str:
    """The plan as a table, then each topic's query."""
    rows = [
        (
            a.spec.name,
            a.spec.sobject,
            a.action,
            ", ".join(a.changes) if a.action == "update" else "",
            len(a.spec.fields),
            f"{len(a.spec.query)}/{MAX_QUERY_LENGTH}",
        )
        for a in actions
    ]
    table = format_table(("Topic", "Object", "Action", "Changes", "Fields", "Query"), rows)
    queries = "\n".join(f"{a.spec.name}: {a.spec.query}" for a in actions)
    return f"{table}\n\n{queries}"
