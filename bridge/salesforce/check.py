"""Preflight of a connected org against the config: `sfbridge org check NAME`.

The comparisons are pure: sObject describe results (dicts shaped like Salesforce's) and the
config go in, findings come out, each **Ok** or **Issue** with the reason an admin can act on
(the mapping status of Sellfire-style integrations). `run_check` is the only part that talks
to the org: one describe per object and one PushTopic query.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from simple_salesforce.exceptions import SalesforceError as SimpleSalesforceError

from bridge.config import OrgConfig, parse_field_ref
from bridge.errors import BridgeError, PermanentError, UsageError
from bridge.salesforce import sitecheck, topics
from bridge.salesforce.findings import Finding, issue, ok
from bridge.salesforce.package import PACKAGE_OBJECTS, PERMISSION_SET, org_fields
from bridge.text import format_table
from bridge.vocabulary import STREAMED_OBJECTS
from bridge.writeback import phases

Describe = Mapping[str, Any]
"""An sObject describe result, or the text of the error that prevented it."""

ALWAYS_DESCRIBED = (*STREAMED_OBJECTS, "Task", "Event", "PushTopic")

TEXT_TYPES = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "combobox", "id", "reference"}
)
NUMBER_TYPES = frozenset({"int", "double", "currency", "percent", "long"})
# Compound and binary fields cannot be copied as one value (or selected in a PushTopic).
NOT_SCALAR = frozenset({"address", "location", "base64", "anyType", "complexvalue"})
PICKLIST_TYPES = frozenset({"picklist", "multipicklist"})

_NOT_VISIBLE = (
    "not found: the field does not exist, or the integration user cannot see it "
    f"(field-level security; is the {PERMISSION_SET} permission set assigned?)"
)


def as_rows(findings: Iterable[Finding]) -> list[dict[str, str]]:
    return [dict(vars(f)) for f in findings]


def has_issues(findings: Iterable[Finding]) -> bool:
    return any(f.status == "Issue" for f in findings)


def _fields(describe: Describe) -> dict[str, Mapping[str, Any]]:
    return {str(f["name"]): f for f in describe.get("fields", [])}


def _active_values(field: Mapping[str, Any]) -> list[str]:
    return [str(v["value"]) for v in field.get("picklistValues") or [] if v.get("active", True)]


# ---- what the config needs from the org -----------------------------------------------------

Role = Literal["id", "email", "value", "rule", "read", "write", "create", "static"]

ROLE_WHY = {
    "id": "holds an id or code the bridge matches on",
    "email": "holds an email address the bridge matches on",
    "value": "is copied onto the referral",
    "rule": "decides a referral status",
    "read": "is read into the bridge",
    "write": "is written by the bridge",
    "create": "is set on the records the bridge creates",
    "static": "is set on every write of this kind or object",
}


@dataclass(frozen=True)
class FieldUse:
    """One place in the config that names a Salesforce field, and what the bridge does with it."""

    where: str  # the config key, e.g. receiver.status_rules[0]
    sobject: str
    field: str
    role: Role
    values: tuple[Any, ...] = ()  # values compared with (rules) or written (static)
    needs_create: bool = False
    needs_update: bool = False

    @property
    def ref(self) -> str:
        return f"{self.sobject}.{self.field}"


def field_uses(org: OrgConfig) -> list[FieldUse]:
    """Every Salesforce field the config names or its settings imply, with what it is used for."""
    rcv = org.receiver
    uses: list[FieldUse] = []

    def refs(where: str, values: Sequence[str], role: Role) -> None:
        for i, ref in enumerate(values):
            obj, name = parse_field_ref(ref)
            uses.append(FieldUse(f"{where}[{i}]", obj, name, role))

    refs("receiver.target_match.direct_fields", rcv.target_match.direct_fields, "id")
    refs("receiver.member_match.referral_code", rcv.member_match.referral_code, "id")
    refs("receiver.member_match.member_email", rcv.member_match.member_email, "email")
    refs("receiver.member_match.member_external_id", rcv.member_match.member_external_id, "id")
    for key, ref in rcv.referral_fields.items():
        obj, name = parse_field_ref(ref)
        uses.append(FieldUse(f"receiver.referral_fields.{key}", obj, name, "value"))
    for i, rule in enumerate(rcv.status_rules):
        if rule.op == "is_blank":
            values: tuple[Any, ...] = ()
        elif isinstance(rule.value, list):
            values = tuple(rule.value)
        else:
            values = (rule.value,)
        uses.append(
            FieldUse(f"receiver.status_rules[{i}]", rule.object, rule.field, "rule", values)
        )

    # Fields the bridge reads or writes because of a setting rather than a field name.
    if rcv.target_match.fuzzy:
        for obj, names in topics.FUZZY_MATCH_FIELDS.items():
            uses += [FieldUse("receiver.target_match.fuzzy", obj, n, "read") for n in names]
    for obj, sync in org.writeback.objects.items():
        if sync.sync_mode != "disabled" and sync.dedupe == "root_domain":
            uses.append(FieldUse(f"writeback.objects.{obj}.dedupe", obj, "Website", "read"))
        elif sync.sync_mode != "disabled" and sync.dedupe == "email":
            uses.append(FieldUse(f"writeback.objects.{obj}.dedupe", obj, "Email", "read"))
    # Activities (email, call, LinkedIn, meeting) are written as Tasks and Events whether or
    # not `kinds` overrides their defaults.
    if org.writeback.activities.lead_resolution == "email":
        for obj in ("Lead", "Contact"):
            where = "writeback.activities.lead_resolution"
            uses.append(FieldUse(where, obj, "Email", "read"))
    for activity in ("Task", "Event"):
        for name in ("Subject", "WhoId"):
            uses.append(
                FieldUse("writeback.activities", activity, name, "create", needs_create=True)
            )

    add = org.writeback.referral_add
    update_existing = add.on_existing_email == "update"
    # local attribute -> Salesforce field of the Lead/Contact the referral is added as
    for section, mapping in (("member_fields", add.member_fields),
                             ("field_mappings", add.field_mappings)):  # fmt: skip
        for local, name in mapping.items():
            if not name:
                continue  # an empty value switches a default member field off
            uses.append(
                FieldUse(
                    f"writeback.referral_add.{section}.{local}",
                    add.create_as,
                    name,
                    "create",
                    needs_create=True,
                    needs_update=update_existing,
                )
            )
    for kind, spec in org.writeback.activities.kinds.items():
        for name, value in spec.static.items():
            uses.append(
                FieldUse(
                    f"writeback.activities.kinds.{kind}.static.{name}",
                    spec.object,
                    name,
                    "static",
                    (value,),
                    needs_create=True,
                    needs_update=True,
                )
            )
    for obj, static in org.writeback.static.items():
        for name, value in static.items():
            uses.append(
                FieldUse(
                    f"writeback.static.{obj}.{name}", obj, name, "static", (value,),
                    needs_create=True, needs_update=True,
                )
            )  # fmt: skip
    for obj, sync in org.writeback.objects.items():
        if sync.sync_mode == "disabled":
            continue
        for i, fm in enumerate(sync.fields):
            if fm.sync == "none":
                continue
            writes = fm.sync in ("read_write", "salesforce_unless_blank", "ours")
            for name in fm.salesforce:
                uses.append(
                    FieldUse(
                        f"writeback.objects.{obj}.fields[{i}]",
                        obj,
                        name,
                        "write" if writes else "read",
                        needs_create=writes and sync.sync_mode == "create_update",
                        needs_update=writes,
                    )
                )
    return uses


def object_needs(org: OrgConfig) -> dict[str, set[str]]:
    """Object-level access each object needs: read, create, update."""
    needs: dict[str, set[str]] = {name: {"read"} for name in STREAMED_OBJECTS}
    add = org.writeback.referral_add
    needs[add.create_as] |= (
        {"create", "update"} if add.on_existing_email == "update" else {"create"}
    )
    for obj, sync in org.writeback.objects.items():
        if sync.sync_mode == "create_update":
            needs[obj] |= {"create", "update"}
        elif sync.sync_mode == "update_only":
            needs[obj] |= {"update"}
    for activity in ("Task", "Event"):  # activity writeback upserts both
        needs[activity] = {"read", "create", "update"}
    needs["PushTopic"] = {"read", "create", "update"}
    if org.routing.campaign is not None:  # new Leads join it
        needs["Campaign"] = {"read"}
        needs["CampaignMember"] = {"read", "create"}
    return needs | sitecheck.site_objects(org)


# ---- pure comparisons -----------------------------------------------------------------------

_FLAG = {"read": "queryable", "create": "createable", "update": "updateable"}


def check_objects(
    needs: Mapping[str, set[str]], describes: Mapping[str, Describe | str]
) -> list[Finding]:
    out: list[Finding] = []
    for sobject in sorted(needs):
        desc = describes.get(sobject)
        if desc is None or isinstance(desc, str):
            out.append(issue("object", sobject, f"cannot describe {sobject}: {desc or 'missing'}"))
            continue
        missing = [n for n in ("read", "create", "update") if n in needs[sobject]
                   and not desc.get(_FLAG[n], False)]  # fmt: skip
        if missing:
            out.append(
                issue(
                    "object",
                    sobject,
                    f"the integration user cannot {' or '.join(missing)} {sobject} records; "
                    f"assign the {PERMISSION_SET} permission set",
                )
            )
        else:
            out.append(ok("object", sobject, ", ".join(sorted(needs[sobject]))))
    return out


def check_package_fields(describes: Mapping[str, Describe | str]) -> list[Finding]:
    """Every package field present with its type, external id flag and edit access."""
    out: list[Finding] = []
    for pf in org_fields():
        desc = describes.get(pf.sobject)
        if desc is None and pf.sobject in PACKAGE_OBJECTS:
            continue  # the multi-site objects: described (and checked) when the config uses them
        if desc is None or isinstance(desc, str):
            out.append(issue("package field", pf.ref, f"{pf.sobject} could not be described"))
            continue
        field = _fields(desc).get(pf.name)
        if field is None:
            out.append(
                issue(
                    "package field",
                    pf.ref,
                    "not found: deploy the package (sf project deploy start) and assign the "
                    f"{PERMISSION_SET} permission set",
                )
            )
        elif field.get("type") != pf.describe_type:
            out.append(
                issue(
                    "package field",
                    pf.ref,
                    f"is a {field.get('type')} field; the package defines it as "
                    f"{pf.describe_type}: redeploy the package",
                )
            )
        elif pf.external_id and not field.get("externalId"):
            out.append(
                issue("package field", pf.ref, "is not an External ID; redeploy the package")
            )
        elif pf.reference_to and pf.reference_to not in (field.get("referenceTo") or []):
            out.append(
                issue(
                    "package field",
                    pf.ref,
                    f"looks up {', '.join(field.get('referenceTo') or []) or 'nothing'}, not "
                    f"{pf.reference_to}; redeploy the package",
                )
            )
        elif not field.get("updateable"):
            out.append(
                issue(
                    "package field",
                    pf.ref,
                    f"is read-only for the integration user; the {PERMISSION_SET} permission "
                    "set grants edit",
                )
            )
        else:
            out.append(ok("package field", pf.ref))
    return out


READ_ROLES = frozenset({"id", "email", "value", "rule", "read"})

FORMULA_PROBLEM = (
    "is a formula field: its value changes without a new LastModifiedDate/SystemModstamp, so "
    "neither streaming nor polling sees the change. Remedy: a record-triggered Flow that copies "
    "the value into a plain field, and map that field; or set value_check.every so the bridge "
    "reads the formula values of the records it tracks on a schedule (API calls per run)"
)
"""Rox's caveat for mapped formula fields, with its remedy."""


def _type_problem(use: FieldUse, ftype: str) -> str | None:
    if ftype in NOT_SCALAR:
        return f"is a compound {ftype} field; name one of its component fields"
    if use.role == "id" and ftype not in TEXT_TYPES | NUMBER_TYPES:
        return f"is a {ftype} field; it {ROLE_WHY['id']}, so it must be a text field"
    if use.role == "email" and ftype not in ("email", "string"):
        return f"is a {ftype} field; it {ROLE_WHY['email']}, so it must be an email or text field"
    return None


def _value_problem(field: Mapping[str, Any], value: Any) -> str | None:
    ftype = str(field.get("type"))
    if ftype == "boolean":
        if not isinstance(value, bool) and str(value).lower() not in ("true", "false"):
            return f"{value!r} is not true or false (a checkbox field)"
    elif ftype in NUMBER_TYPES:
        if isinstance(value, bool) or not _is_number(value):
            return f"{value!r} is not a number ({ftype} field)"
    elif ftype in PICKLIST_TYPES:
        active = _active_values(field)
        parts = str(value).split(";") if ftype == "multipicklist" else [str(value)]
        unknown = [p for p in parts if p not in active]
        if unknown:
            return (
                f"{', '.join(repr(u) for u in unknown)} is not an active value of the "
                f"picklist (active values: {', '.join(active) or 'none'})"
            )
    elif ftype in TEXT_TYPES and field.get("length") and len(str(value)) > int(field["length"]):
        return f"{value!r} is longer than the field's {field['length']} characters"
    return None


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def check_mappings(
    uses: Sequence[FieldUse], describes: Mapping[str, Describe | str]
) -> list[Finding]:
    """Mapping status per configured field: Ok, or Issue with the reason."""
    out: list[Finding] = []
    for use in uses:
        subject = f"{use.where}: {use.ref}"
        desc = describes.get(use.sobject)
        if desc is None or isinstance(desc, str):
            out.append(issue("mapping", subject, f"{use.sobject} could not be described"))
            continue
        field = _fields(desc).get(use.field)
        if field is None:
            out.append(issue("mapping", subject, _NOT_VISIBLE))
            continue
        ftype = str(field.get("type"))
        problem = _type_problem(use, ftype)
        if problem is None and field.get("calculated") and use.role in READ_ROLES:
            problem = FORMULA_PROBLEM
        if problem is None and use.needs_create and not field.get("createable"):
            problem = f"cannot be set on new records (it {ROLE_WHY[use.role]})"
        if problem is None and use.needs_update and not field.get("updateable"):
            problem = f"is read-only for the integration user (it {ROLE_WHY[use.role]})"
        if problem is None:
            bad = [p for p in (_value_problem(field, v) for v in use.values) if p]
            if bad:
                problem = "; ".join(bad)
        if problem:
            out.append(issue("mapping", subject, f"{use.ref} {problem}"))
        else:
            out.append(ok("mapping", subject, f"{ftype}; {ROLE_WHY[use.role]}"))
    return out


def check_topics(
    actions: Sequence[topics.TopicAction], describes: Mapping[str, Describe | str], org_name: str
) -> list[Finding]:
    """Each planned topic present and matching, and its fields selectable by a PushTopic."""
    out: list[Finding] = []
    fix = f"run `sfbridge org topics {org_name} --apply`"
    for act in actions:
        name = act.spec.name
        desc = describes.get(act.spec.sobject)
        if isinstance(desc, Mapping):
            fields = _fields(desc)
            missing = [f for f in act.spec.fields if f not in fields]
            compound = [f for f in act.spec.fields if f in fields and
                        fields[f].get("type") in ("address", "location")]  # fmt: skip
            if missing:
                out.append(
                    issue(
                        "topic", name, f"selects fields the org does not show: {', '.join(missing)}"
                    )
                )
                continue
            if compound:
                out.append(
                    issue(
                        "topic",
                        name,
                        f"selects compound fields {', '.join(compound)}; PushTopics need their "
                        "component fields",
                    )
                )
                continue
        if act.action == "create":
            out.append(issue("topic", name, f"missing in the org; {fix}"))
        elif act.action == "update":
            out.append(issue("topic", name, f"differs in {', '.join(act.changes)}; {fix}"))
        else:
            out.append(ok("topic", name, f"{len(act.spec.fields)} fields, up to date"))
    return out


def check_describes(
    org_name: str,
    org: OrgConfig,
    describes: Mapping[str, Describe | str],
    existing_topics: Iterable[Mapping[str, Any]] | None,
) -> list[Finding]:
    """Every finding for the org; `existing_topics` None when they could not be read."""
    findings = check_objects(object_needs(org), describes)
    findings += check_package_fields(describes)
    findings += check_mappings(field_uses(org), describes)
    findings += sitecheck.check_sites(org, describes)
    for ref, why in phases.missing_values(org, describes):  # Sellfire's Inspect
        good = ok("phase picklist", ref, "every phase is a picklist value")
        findings.append(issue("phase picklist", ref, why) if why else good)
    try:
        desired = topics.desired_topics(org)
    except UsageError as exc:
        return [*findings, issue("topic", "streaming.topics", exc.message)]
    if existing_topics is None:
        findings += [issue("topic", t.name, "could not read the org's PushTopics") for t in desired]
    else:
        findings += check_topics(topics.plan(existing_topics, desired), describes, org_name)
    return findings


# ---- talking to the org ---------------------------------------------------------------------


def _error_text(exc: Exception) -> str:
    if isinstance(exc, SimpleSalesforceError):
        content = exc.content
        if isinstance(content, list) and content and isinstance(content[0], dict):
            return f"{content[0].get('errorCode')}: {content[0].get('message')}"
        return f"HTTP {exc.status}"
    if isinstance(exc, BridgeError):
        return f"{exc.code}: {exc.message}"
    return str(exc)


def describe_objects(org: topics.OrgClient, names: Iterable[str]) -> dict[str, Describe | str]:
    """Describe each object; an object the user cannot see gives the error text instead."""
    out: dict[str, Describe | str] = {}
    for name in names:
        try:
            # looked up inside the call: after re-authentication the client may be a new one
            out[name] = org.call(lambda n=name: getattr(org.sf, n).describe())
        except (SimpleSalesforceError, UsageError, PermanentError) as exc:
            out[name] = _error_text(exc)
    return out


def run_check(
    org: topics.OrgClient,
    org_name: str,
    org_config: OrgConfig,
    keep: Callable[[dict[str, Describe | str]], None] | None = None,
) -> list[Finding]:
    """Every check against the org; `keep` receives the describes (e.g. to cache them)."""
    names = sorted(set(ALWAYS_DESCRIBED) | set(object_needs(org_config)))
    describes = describe_objects(org, names)
    if keep is not None:
        keep(describes)
    existing: list[dict[str, Any]] | None
    try:
        existing = topics.fetch_existing(org, list(org_config.streaming.topics))
    except (SimpleSalesforceError, UsageError, PermanentError):
        existing = None
    findings = check_describes(org_name, org_config, describes, existing)
    return findings


def format_findings(findings: Sequence[Finding]) -> str:
    rows = [(f.check, f.subject, f.status, f.reason) for f in findings]
    table = format_table(("Check", "Subject", "Status", "Reason"), rows, max_width=400)
    issues = sum(1 for f in findings if f.status == "Issue")
    summary = f"{len(findings)} checks: {len(findings) - issues} Ok, {issues} Issue(s)"
    return f"{table}\n\n{summary}"
