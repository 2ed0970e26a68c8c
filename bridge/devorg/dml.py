"""Record writes (create, update, upsert, delete, undelete, lead conversion) with Salesforce's
validation, system fields and error bodies.

Every write runs inside `state.transaction()`; listeners hear about it after it commits.
Error texts and codes follow the REST API Developer Guide ("Status Codes and Error Responses")
and the SOAP API's StatusCode list, which REST shares.
"""

from __future__ import annotations

import importlib
import re
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bridge.devorg import ids, sales
from bridge.devorg.replies import DmlError, sf_error
from bridge.devorg.schema import CONVERTED_STATUS, STAGES, TASK_CLOSED, FieldDef, ObjectDef
from bridge.devorg.state import RecordChange, User

if TYPE_CHECKING:
    from bridge.devorg.server import DevOrgServer

_EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_SF_DATETIME = "%Y-%m-%dT%H:%M:%S"

__all__ = ["Ctx", "DmlError", "MultipleMatches", "sf_error"]


@dataclass
class Ctx:
    """Who is writing, and through which API (version, and "rest" or "bulkapi")."""

    server: DevOrgServer
    user: User
    version: str = "63.0"
    api: str = "rest"


def format_datetime(when: datetime) -> str:
    when = when.astimezone(UTC)
    return when.strftime(_SF_DATETIME) + f".{when.microsecond // 1000:03d}+0000"


def parse_datetime(value: str) -> datetime | None:
    text = value.strip().replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def obj_or_error(server: DevOrgServer, name: str) -> ObjectDef:
    o = server.schema.object(name)
    if o is None:
        raise DmlError.one("NOT_FOUND", "The requested resource does not exist", status=404)
    return o


def record_url(o: ObjectDef, rid: str, version: str) -> str:
    return f"/services/data/v{version}/sobjects/{o.name}/{rid}"


def present(
    o: ObjectDef, rec: dict[str, Any], version: str, fields: list[str] | None = None
) -> dict[str, Any]:
    """A record as the REST API returns it: attributes first, then every (or each asked) field."""
    out: dict[str, Any] = {"attributes": {"type": o.name, "url": record_url(o, rec["Id"], version)}}
    names = fields if fields is not None else list(o.fields)
    for name in names:
        out[name] = rec.get(name)
    return out


# ---- value coercion -------------------------------------------------------------------------


def _json_error(fd: FieldDef, value: Any, kind: str) -> DmlError:
    return DmlError.one(
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {kind} from {_json_kind(value)} value {value} or request "
        f"may be missing a required field at [line:1, column:1]",
    )


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if isinstance(value, str):
        return "VALUE_STRING"
    if isinstance(value, int):
        return "VALUE_NUMBER_INT"
    if isinstance(value, float):
        return "VALUE_NUMBER_FLOAT"
    if isinstance(value, list):
        return "START_ARRAY"
    return "START_OBJECT"


def coerce(fd: FieldDef, value: Any, errors: list[dict[str, Any]]) -> Any:
    """The stored form of a value for a field; type errors raise, rule errors are collected."""
    t = fd.type
    if value is None:
        return None
    if isinstance(value, dict | list):
        raise _json_error(fd, value, {"boolean": "boolean", "int": "int"}.get(t, "String"))
    if t == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _json_error(fd, value, "boolean")
    if t in ("int", "double", "currency", "percent"):
        if isinstance(value, bool):
            raise _json_error(fd, value, "double" if t != "int" else "int")
        try:
            number = float(value) if not isinstance(value, int) else value
        except (TypeError, ValueError):
            raise _json_error(fd, value, "double" if t != "int" else "int") from None
        if t == "int":
            if isinstance(number, float) and not number.is_integer():
                raise _json_error(fd, value, "int")
            return int(number)
        number = float(number)
        if fd.precision and abs(number) >= 10 ** (fd.precision - fd.scale):
            errors.append(
                sf_error(
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    f"{fd.label}: value outside of valid range on numeric field: {value}",
                    [fd.name],
                )
            )
        return round(number, fd.scale) if fd.scale or fd.precision else number
    if t == "date":
        if isinstance(value, str):
            text = value.strip()
            try:
                return date.fromisoformat(text[:10]).isoformat()
            except ValueError:
                pass
        raise _json_error(fd, value, "date")
    if t == "datetime":
        if isinstance(value, str):
            when = parse_datetime(value)
            if when is None and len(value) == 10:
                when = parse_datetime(value + "T00:00:00Z")
            if when is not None:
                return format_datetime(when)
        raise _json_error(fd, value, "datetime")
    # text-like types
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = str(value)
    else:
        text = str(value)
    if text == "":
        return None  # Salesforce stores an empty string as null
    if t in ("reference", "id"):
        return text
    if t == "picklist" and fd.picklist is not None and fd.restricted and text not in fd.picklist:
        errors.append(
            sf_error(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{fd.label}: bad value for restricted picklist field: {text}",
                [fd.name],
            )
        )
        return text
    if t == "multipicklist" and fd.picklist is not None and fd.restricted:
        for part in text.split(";"):
            if part not in fd.picklist:
                errors.append(
                    sf_error(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        f"{fd.label}: bad value for restricted picklist field: {part}",
                        [fd.name],
                    )
                )
    if fd.length and len(text) > fd.length:
        errors.append(
            sf_error(
                "STRING_TOO_LONG",
                f"{fd.label}: data value too large: {text} (max length={fd.length})",
                [fd.name],
            )
        )
    if t == "email" and not _EMAIL_RE.match(text):
        errors.append(
            sf_error(
                "INVALID_EMAIL_ADDRESS", f"{fd.label}: invalid email address: {text}", [fd.name]
            )
        )
    return text


# ---- the write path -------------------------------------------------------------------------


def _check_reference(
    server: DevOrgServer, fd: FieldDef, value: str, errors: list[dict[str, Any]]
) -> str:
    rid = ids.normalize(value)
    if rid is None:
        errors.append(
            sf_error("MALFORMED_ID", f"{fd.label}: id value of incorrect type: {value}", [fd.name])
        )
        return value
    target = server.schema.sobject_for_prefix(rid[:3])
    modelled = [t for t in fd.reference_to if server.schema.object(t) is not None]
    if target is None or target not in fd.reference_to:
        if modelled and (target is not None or rid[:3] in _KNOWN_PREFIXES):
            errors.append(
                sf_error(
                    "FIELD_INTEGRITY_EXCEPTION",
                    f"{fd.label}: id value of incorrect type: {value}",
                    [fd.name],
                )
            )
        return rid  # a reference to an object the local org does not model: kept as given
    rec = server.state.get(target, rid, include_deleted=True)
    if rec is None:
        errors.append(
            sf_error(
                "INVALID_CROSS_REFERENCE_KEY",
                "invalid cross reference id",
                [fd.name],
            )
        )
    elif rec.get("IsDeleted"):
        errors.append(sf_error("ENTITY_IS_DELETED", "entity is deleted", [fd.name]))
    return rid


_KNOWN_PREFIXES = {"00Q", "003", "001", "006", "00k", "00K", "01t", "00T", "00U", "005", "0IF",
                   "701", "00v", "01Y", "01s", "01u"}  # fmt: skip


def _resolve_foreign_key(
    server: DevOrgServer, o: ObjectDef, key: str, value: dict[str, Any]
) -> tuple[str, str]:
    """A parent given by external id (`"Account": {"Ext__c": "x"}`) -> (field name, parent id)."""
    rel = o.relationships.get(key.lower())
    if rel is None:
        raise DmlError.one("INVALID_FIELD", f"No such column '{key}' on sobject of type {o.name}")
    fields = {k: v for k, v in value.items() if k != "attributes"}
    target_name = (value.get("attributes") or {}).get("type") or rel.reference_to[0]
    target = server.schema.object(str(target_name))
    if target is None or len(fields) != 1:
        raise DmlError.one(
            "INVALID_FIELD",
            f"{rel.relationship_name}: a foreign key reference needs exactly one external id field",
            [rel.name],
        )
    ((ext_name, ext_value),) = fields.items()
    ext = target.field(ext_name)
    if ext is None or not (ext.external_id or ext.name == "Id" or ext.id_lookup):
        raise DmlError.one(
            "INVALID_FIELD",
            f"Field {ext_name} is not an external id field or does not exist on {target.name}",
            [rel.name],
        )
    matches = find_by_field(server, target, ext, ext_value)
    if not matches:
        raise DmlError.one(
            "INVALID_FIELD",
            f"Foreign key external ID: {ext_value} not found for field {ext.name} in entity "
            f"{target.name}",
            [rel.name],
        )
    if len(matches) > 1:
        raise DmlError.one(
            "INVALID_FIELD",
            f"Foreign key external ID: {ext_value} matches more than one record for field "
            f"{ext.name} in entity {target.name}",
            [rel.name],
        )
    return rel.name, matches[0]


def find_by_field(server: DevOrgServer, o: ObjectDef, fd: FieldDef, value: Any) -> list[str]:
    """Ids of live records whose field equals value (external id matching: case-insensitive)."""
    if fd.name == "Id":
        rid = ids.normalize(str(value))
        return [rid] if rid and server.state.get(o.name, rid) else []
    hits = server.state.lookup(o.name, fd.name, value)
    if hits is not None:
        return hits
    needle = str(value).lower()
    return [
        r["Id"]
        for r in server.state.records(o.name)
        if r.get(fd.name) is not None and str(r[fd.name]).lower() == needle
    ]


def _validate_body(
    ctx: Ctx, o: ObjectDef, body: dict[str, Any], *, creating: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Field values of a create/update body in stored form, and the rule errors found."""
    if not isinstance(body, dict):
        raise DmlError.one(
            "JSON_PARSER_ERROR",
            "Cannot deserialize instance of the sObject from a non-object value",
        )
    server = ctx.server
    values: dict[str, Any] = {}
    not_writable: list[str] = []
    errors: list[dict[str, Any]] = []
    for key, raw in body.items():
        if key == "attributes":
            continue
        if isinstance(raw, dict) and o.field(key) is None:
            name, parent = _resolve_foreign_key(server, o, key, raw)
            values[name] = parent
            continue
        fd = o.field(key)
        if fd is None:
            raise DmlError.one(
                "INVALID_FIELD", f"No such column '{key}' on sobject of type {o.name}"
            )
        if fd.name == "Id":
            if creating:
                raise DmlError.one(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    "Record ID: cannot specify Id in an insert call",
                    ["Id"],
                )
            continue  # the id in the URL wins; an equal Id in the body is harmless
        if not (fd.createable if creating else fd.updateable):
            not_writable.append(fd.name)
            continue
        value = coerce(fd, raw, errors)
        if fd.type == "reference" and value is not None:
            value = _check_reference(server, fd, value, errors)
        if value is None and not fd.nillable and not creating and fd.type != "boolean":
            errors.append(
                sf_error(
                    "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{fd.name}]", [fd.name]
                )
            )
        if value is None and fd.type == "boolean":
            value = False
        values[fd.name] = value
    if not_writable:
        raise DmlError.one(
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            f"Unable to create/update fields: {', '.join(not_writable)}. Please check the security "
            "settings of this field and verify that it is read/write for your profile or "
            "permission set.",
            not_writable,
        )
    return values, errors


_DUPLICATE_USERNAME = (
    "Duplicate Username.<br>The username already exists in this or another Salesforce "
    "organization. Usernames must be unique across all Salesforce organizations. To resolve, use "
    "a different username (it doesn't need to match the user's email address). "
)


def _check_unique(
    ctx: Ctx, o: ObjectDef, rec: dict[str, Any], changed: set[str], errors: list[dict[str, Any]]
) -> None:
    for name in changed:
        fd = o.fields.get(name)
        if fd is None or not fd.unique or rec.get(name) is None:
            continue
        others = [i for i in find_by_field(ctx.server, o, fd, rec[name]) if i != rec["Id"]]
        if others and o.name == "User" and name == "Username":
            errors.append(sf_error("DUPLICATE_USERNAME", _DUPLICATE_USERNAME, ["Username"]))
        elif others:
            errors.append(
                sf_error(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {fd.name} duplicates value on record with id: "
                    f"{others[0]}",
                    [],
                )
            )


def _derive(ctx: Ctx, o: ObjectDef, rec: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Fields Salesforce computes from others."""
    name = o.name
    if name in ("Lead", "Contact", "User"):
        rec["Name"] = " ".join(p for p in (rec.get("FirstName"), rec.get("LastName")) if p) or None
    if name == "Opportunity":
        stage = rec.get("StageName")
        if stage in STAGES:
            stage_probability, closed, won, forecast = STAGES[stage]
            stage_changed = old is None or old.get("StageName") != stage
            if stage_changed and "Probability" not in ctx_explicit(rec):
                rec["Probability"] = float(stage_probability)
            rec["IsClosed"], rec["IsWon"] = closed, won
            if stage_changed:
                rec["ForecastCategoryName"] = forecast
                rec["LastStageChangeDate"] = rec["LastModifiedDate"]
            rec["ForecastCategory"] = {"Best Case": "BestCase", "Commit": "Forecast"}.get(
                rec.get("ForecastCategoryName") or forecast,
                rec.get("ForecastCategoryName") or forecast,
            )
        amount = rec.get("Amount")
        probability = rec.get("Probability")
        rec["ExpectedRevenue"] = (
            round(amount * probability / 100, 2)
            if amount is not None and probability is not None
            else None
        )
        close = rec.get("CloseDate")
        if close:
            d = date.fromisoformat(close)
            rec["FiscalYear"], rec["FiscalQuarter"] = d.year, (d.month - 1) // 3 + 1
            rec["Fiscal"] = f"{d.year} {(d.month - 1) // 3 + 1}"
    if name == "Task":
        rec["IsClosed"] = rec.get("Status") in TASK_CLOSED
        rec["IsHighPriority"] = rec.get("Priority") == "High"
        rec.setdefault("TaskSubtype", "Task")
        if rec["IsClosed"] and not rec.get("CompletedDateTime"):
            rec["CompletedDateTime"] = rec["LastModifiedDate"]
    if name == "Event" and rec.get("IsAllDayEvent"):
        _all_day_event(rec)
    elif name == "Event":
        start = rec.get("StartDateTime") or rec.get("ActivityDateTime")
        if start:
            rec["StartDateTime"] = rec["ActivityDateTime"] = start
            begin = parse_datetime(start)
            assert begin is not None
            if rec.get("DurationInMinutes") is not None and (
                old is None or rec.get("EndDateTime") == (old or {}).get("EndDateTime")
            ):
                end = begin + timedelta(minutes=int(rec["DurationInMinutes"]))
                rec["EndDateTime"] = format_datetime(end)
            elif rec.get("EndDateTime"):
                end = parse_datetime(rec["EndDateTime"]) or begin
                rec["DurationInMinutes"] = int((end - begin).total_seconds() // 60)
            rec["ActivityDate"] = start[:10]
            if rec.get("EndDateTime"):
                rec["EndDate"] = rec["EndDateTime"][:10]
        rec.setdefault("EventSubtype", "Event")
    if name in ("Task", "Event"):
        rec["AccountId"] = _activity_account(ctx, rec)
    if name == "OpportunityLineItem":
        qty, unit, total = rec.get("Quantity"), rec.get("UnitPrice"), rec.get("TotalPrice")
        if unit is not None and qty is not None:
            rec["TotalPrice"] = round(float(qty) * float(unit), 2)
        elif total is not None and qty:
            rec["UnitPrice"] = round(float(total) / float(qty), 2)
    if o.custom and not rec.get("Name"):
        rec["Name"] = _auto_number(ctx, o) if o.fields["Name"].auto_number else rec["Id"]
    sales.derive(ctx.server.state, o, rec, old)


def _auto_number(ctx: Ctx, o: ObjectDef) -> str:
    """The next number of an auto-number Name ("SITE-{0000}" -> SITE-0001, SITE-0002, ...)."""
    fmt = o.fields["Name"].auto_number or "{0}"
    match = re.search(r"\{(0+)\}", fmt)
    width = len(match.group(1)) if match else 1
    taken = len(list(ctx.server.state.records(o.name, include_deleted=True)))
    number = str(taken + 1).rjust(width, "0")
    return fmt[: match.start()] + number + fmt[match.end() :] if match else fmt + number


_EXPLICIT_KEY = "__explicit__"
_MIDNIGHT = "T00:00:00.000+0000"


def _all_day_event(rec: dict[str, Any]) -> None:
    """An all-day event: its day is ActivityDate, it starts at midnight (GMT) and lasts whole
    days, one unless a duration or an end says otherwise (Object Reference, Event)."""
    explicit = ctx_explicit(rec)
    start = rec.get("StartDateTime") or rec.get("ActivityDateTime")
    moved = bool({"StartDateTime", "ActivityDateTime"} & explicit)
    day = rec.get("ActivityDate")
    if start and (not day or (moved and "ActivityDate" not in explicit)):
        day = start[:10]
    if not day:
        return  # REQUIRED_FIELD_MISSING in _special_rules
    first = date.fromisoformat(day)
    end = rec.get("EndDateTime")
    if "EndDateTime" in explicit and "DurationInMinutes" not in explicit and end:
        days = max(1, (date.fromisoformat(end[:10]) - first).days + 1)
    else:
        minutes = int(rec.get("DurationInMinutes") or 1440)
        days = max(1, -(-minutes // 1440))
    last = (first + timedelta(days=days - 1)).isoformat()
    rec.update(
        {
            "ActivityDate": day,
            "StartDateTime": day + _MIDNIGHT,
            "ActivityDateTime": day + _MIDNIGHT,
            "DurationInMinutes": days * 1440,
            "EndDateTime": last + _MIDNIGHT,
            "EndDate": last,
        }
    )


def ctx_explicit(rec: dict[str, Any]) -> set[str]:
    return rec.get(_EXPLICIT_KEY) or set()


def _activity_account(ctx: Ctx, rec: dict[str, Any]) -> str | None:
    state = ctx.server.state
    what = rec.get("WhatId")
    if what:
        if what.startswith("001"):
            return what
        if what.startswith("006"):
            opp = state.get("Opportunity", what)
            return opp.get("AccountId") if opp else None
    who = rec.get("WhoId")
    if who and who.startswith("003"):
        contact = state.get("Contact", who)
        return contact.get("AccountId") if contact else None
    return None


def _special_rules(
    ctx: Ctx,
    o: ObjectDef,
    rec: dict[str, Any],
    errors: list[dict[str, Any]],
    old: dict[str, Any] | None = None,
) -> None:
    sales.check(ctx.server.state, o, rec, old, errors)
    owner = rec.get("OwnerId")
    if owner and owner != (old or {}).get("OwnerId") and owner.startswith("005"):
        user = ctx.server.state.get("User", owner)
        if user is not None and not user.get("IsActive"):
            errors.append(
                sf_error(
                    "INACTIVE_OWNER_OR_USER",
                    f"operation performed with inactive user [{owner}] as owner of "
                    f"[{o.name.lower()}]",
                    [],
                )
            )
    if (
        o.name == "OpportunityLineItem"
        and rec.get("UnitPrice") is None
        and rec.get("TotalPrice") is None
    ):
        errors.append(
            sf_error(
                "FIELD_INTEGRITY_EXCEPTION",
                "field integrity exception: unknown (must specify either UnitPrice or TotalPrice)",
                ["TotalPrice"],
            )
        )
    if o.name in ("Task", "Event") and rec.get("WhatId") and (rec.get("WhoId") or "")[:3] == "00Q":
        # A lead stands alone: Salesforce refuses a related-to record beside it.
        errors.append(
            sf_error(
                "FIELD_INTEGRITY_EXCEPTION",
                "field integrity exception: WhoId, WhatId (a lead can't be related to another "
                "record)",
                ["WhoId", "WhatId"],
            )
        )
    if o.name == "Event" and rec.get("IsAllDayEvent"):
        if not rec.get("ActivityDate"):
            errors.append(
                sf_error("REQUIRED_FIELD_MISSING", "Required fields are missing: [ActivityDate]",
                         ["ActivityDate"])
            )  # fmt: skip
    elif o.name == "Event":
        if not (rec.get("StartDateTime") or rec.get("ActivityDateTime")):
            errors.append(
                sf_error("REQUIRED_FIELD_MISSING", "Required fields are missing: [StartDateTime]",
                         ["StartDateTime"])
            )  # fmt: skip
        elif rec.get("DurationInMinutes") is None and not rec.get("EndDateTime"):
            errors.append(
                sf_error(
                    "REQUIRED_FIELD_MISSING",
                    "Required fields are missing: [DurationInMinutes]",
                    ["DurationInMinutes"],
                )
            )
    if o.name == "PushTopic":
        try:
            pushtopic = importlib.import_module("bridge.devorg.pushtopic")
        except ImportError:
            return
        errors.extend(pushtopic.validate(rec, ctx.server.state))


def _changed(old: dict[str, Any] | None, new: dict[str, Any]) -> set[str]:
    if old is None:
        return {k for k, v in new.items() if v is not None}
    keys = set(old) | set(new)
    return {k for k in keys if old.get(k) != new.get(k)}


def _stamp(ctx: Ctx) -> str:
    return format_datetime(ctx.server.state.clock.now())


# ---- strict mode (strict.py): the org's rules, security and automation -----------------------


def _strict(ctx: Ctx) -> Any:
    strict = getattr(ctx.server, "strict", None)
    return strict if strict is not None and strict.enabled else None


def _strict_checks(
    ctx: Ctx,
    o: ObjectDef,
    rec: dict[str, Any],
    old: dict[str, Any] | None,
    errors: list[dict[str, Any]],
) -> None:
    """Row locks, then validation rules (after the system validation passed), then duplicate
    rules: raise the first refusal, as Salesforce's order of execution does."""
    strict = _strict(ctx)
    if strict is not None:
        strict.lock(ctx, o, rec, existing=old is not None)
        if not errors:
            errors.extend(strict.validate(ctx, o, rec, old))
    if errors:
        raise DmlError(errors)
    if strict is not None:
        strict.check_duplicates(ctx, o, rec, old)


def _automate(ctx: Ctx, o: ObjectDef, rec: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Record-triggered automation after the save: each change it makes is a further committed
    update (so a further change event) by the user it runs as — in the same transaction (and
    at the same time) for a flow of the saving user, in a transaction of its own a moment later
    for one of the Automated Process user."""
    strict = _strict(ctx)
    if strict is None:
        return
    for user, changes, delay in list(strict.after_save(ctx, o, rec, old)):
        run = Ctx(ctx.server, user, ctx.version)
        if delay is None:
            automated_update(run, o, rec["Id"], changes, stamp=rec["SystemModstamp"])
        else:
            strict.defer(
                delay, lambda run=run, changes=changes: automated_update(run, o, rec["Id"], changes)
            )


def automated_update(
    ctx: Ctx, o: ObjectDef, record_id: str, changes: dict[str, Any], stamp: str | None = None
) -> None:
    """Write an automation's changes to a record (no validation: flows run in system mode)."""
    state = ctx.server.state
    with state.transaction() as tx:  # joins the save's transaction when it runs inside it
        current = state.get(o.name, record_id)
        values = {k: coerce(o.fields[k], v, []) for k, v in changes.items()}
        if current is None or all(current.get(k) == v for k, v in values.items()):
            return
        new = {**current, **values}
        now = stamp or _stamp(ctx)
        new.update(LastModifiedDate=now, LastModifiedById=ctx.user.id, SystemModstamp=now)
        new[_EXPLICIT_KEY] = set(values)
        _derive(ctx, o, new, current)
        del new[_EXPLICIT_KEY]
        new = {k: v for k, v in new.items() if v is not None}
        tx.put(o.name, new, _change(ctx, o, "updated", new, current, now))


def create(ctx: Ctx, sobject: str, body: dict[str, Any]) -> str:
    """Insert one record; returns its id."""
    o = obj_or_error(ctx.server, sobject)
    if not o.createable:
        raise DmlError.one("INVALID_TYPE", f"sObject type '{o.name}' is not supported.", status=400)
    strict = _strict(ctx)
    if strict is not None and isinstance(body, dict):
        strict.check_write(ctx, o, body, creating=True)
    values, errors = _validate_body(ctx, o, body, creating=True)
    state = ctx.server.state
    now = _stamp(ctx)
    rec: dict[str, Any] = {}
    for fd in o.fields.values():
        if fd.type == "boolean":
            rec[fd.name] = bool(fd.default_value)
        elif fd.default_picklist is not None:
            rec[fd.name] = fd.default_picklist
    rec.update(values)
    missing = [
        fd.name for fd in o.fields.values() if fd.required_on_create and rec.get(fd.name) is None
    ]
    if missing:
        errors.append(
            sf_error(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        )
    if o.name == "Lead" and rec.get("IsConverted"):
        pass
    rid = state.new_id(o.key_prefix)
    rec.update(
        {
            "Id": rid,
            "IsDeleted": False,
            "CreatedDate": now,
            "CreatedById": ctx.user.id,
            "LastModifiedDate": now,
            "LastModifiedById": ctx.user.id,
            "SystemModstamp": now,
        }
    )
    if "OwnerId" in o.fields and not rec.get("OwnerId"):
        rec["OwnerId"] = ctx.user.id
    rec[_EXPLICIT_KEY] = set(values)
    _derive(ctx, o, rec, None)
    del rec[_EXPLICIT_KEY]
    _special_rules(ctx, o, rec, errors)
    _check_unique(ctx, o, rec, set(values), errors)
    _strict_checks(ctx, o, rec, None, errors)
    rec = {k: v for k, v in rec.items() if v is not None}
    with state.transaction() as tx:
        tx.put(o.name, rec, _change(ctx, o, "created", rec, None, now))
        _after_write(ctx, o, rec, None)
        _automate(ctx, o, rec, None)
    return rid


def _change(
    ctx: Ctx,
    o: ObjectDef,
    kind: str,
    rec: dict[str, Any],
    old: dict[str, Any] | None,
    stamp: str,
) -> RecordChange:
    """The change to notify; ``stamp`` is the SystemModstamp the write gave its record, the
    time the change occurred (a change event's commitTimestamp is its record's
    LastModifiedDate: CDC guide, "Change Events for Lead Conversion")."""
    full = {name: rec.get(name) for name in o.fields}
    before = {name: old.get(name) for name in o.fields} if old is not None else None
    changed = _changed(before, full) if kind in ("created", "updated") else set()
    return RecordChange(
        sobject=o.name,
        change_type=kind,
        record=full,
        old=before,
        changed_fields=changed,
        user_id=ctx.user.id,
        at=datetime.fromisoformat(stamp),  # format_datetime's text
        origin=ctx.api,
    )


def load_for_write(ctx: Ctx, o: ObjectDef, record_id: str) -> dict[str, Any]:
    """The live record for an update/delete, or Salesforce's error for a bad/deleted id."""
    rid = ids.normalize(record_id)
    if rid is None or rid[:3] != o.key_prefix:
        raise DmlError.one(
            "NOT_FOUND", "Provided external ID field does not exist or is not accessible: "
            f"{record_id}", status=404,
        )  # fmt: skip
    rec = ctx.server.state.get(o.name, rid, include_deleted=True)
    if rec is None:
        raise DmlError.one("NOT_FOUND", "The requested resource does not exist", status=404)
    if rec.get("IsDeleted"):
        raise DmlError.one("ENTITY_IS_DELETED", "entity is deleted", status=404)
    return rec


def update(ctx: Ctx, sobject: str, record_id: str, body: dict[str, Any]) -> str:
    o = obj_or_error(ctx.server, sobject)
    old = load_for_write(ctx, o, record_id)
    strict = _strict(ctx)
    if strict is not None and isinstance(body, dict):
        strict.check_write(ctx, o, body, creating=False)
    values, errors = _validate_body(ctx, o, body, creating=False)
    sales.drop_ignored(o, old, values)
    if o.name == "Lead" and old.get("IsConverted"):
        raise DmlError.one("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
    rec = dict(old)
    rec.update(values)
    now = _stamp(ctx)
    rec.update({"LastModifiedDate": now, "LastModifiedById": ctx.user.id, "SystemModstamp": now})
    rec[_EXPLICIT_KEY] = set(values)
    _derive(ctx, o, rec, old)
    del rec[_EXPLICIT_KEY]
    _special_rules(ctx, o, rec, errors, old)
    _check_unique(ctx, o, rec, set(values), errors)
    _strict_checks(ctx, o, rec, old, errors)
    rec = {k: v for k, v in rec.items() if v is not None}
    with ctx.server.state.transaction() as tx:
        tx.put(o.name, rec, _change(ctx, o, "updated", rec, old, now))
        _after_write(ctx, o, rec, old)
        _automate(ctx, o, rec, old)
    return rec["Id"]


# (parent object, child object, reference field): Salesforce deletes these children with it
_CASCADE = [
    ("Account", "Contact", "AccountId"),
    ("Account", "Opportunity", "AccountId"),
    ("Opportunity", "OpportunityLineItem", "OpportunityId"),
    ("Opportunity", "OpportunityContactRole", "OpportunityId"),
    ("Contact", "OpportunityContactRole", "ContactId"),
    ("Campaign", "CampaignMember", "CampaignId"),
    ("Campaign", "CampaignMemberStatus", "CampaignId"),
    ("Lead", "CampaignMember", "LeadId"),
    ("Contact", "CampaignMember", "ContactId"),
    ("Product2", "PricebookEntry", "Product2Id"),
    ("Pricebook2", "PricebookEntry", "Pricebook2Id"),
]


def delete(ctx: Ctx, sobject: str, record_id: str) -> None:
    o = obj_or_error(ctx.server, sobject)
    if not o.deletable:
        raise DmlError.one(
            "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id", []
        )
    rec = load_for_write(ctx, o, record_id)
    if o.name == "Pricebook2" and rec.get("IsStandard"):
        raise DmlError.one("DELETE_FAILED", "You can't delete the standard price book.", [])
    strict = _strict(ctx)
    if strict is not None:
        strict.lock(ctx, o, rec, existing=True)
    with ctx.server.state.transaction():
        _delete_one(ctx, o, rec)


def _delete_one(ctx: Ctx, o: ObjectDef, rec: dict[str, Any]) -> None:
    state = ctx.server.state
    tx = state._tx
    assert tx is not None
    for parent, child, field_name in _CASCADE + ctx.server.schema.cascades():
        if parent == o.name:
            child_o = ctx.server.schema.objects[child]
            for child_rec in list(state.records(child)):
                if child_rec.get(field_name) == rec["Id"]:
                    _delete_one(ctx, child_o, child_rec)
    for child, field_name in ctx.server.schema.cleared_lookups(o.name):
        child_o = ctx.server.schema.objects[child]
        for child_rec in list(state.records(child)):
            if child_rec.get(field_name) == rec["Id"]:  # a custom lookup's default: clear it
                automated_update(ctx, child_o, child_rec["Id"], {field_name: None})
    gone = dict(rec)
    gone["IsDeleted"] = True
    gone["SystemModstamp"] = _stamp(ctx)
    change = _change(ctx, o, "deleted", rec, rec, gone["SystemModstamp"])
    tx.put(o.name, gone, change)
    _after_write(ctx, o, gone, rec)


def undelete(
    server: DevOrgServer, record_ids: list[str], user: str | None = None
) -> list[dict[str, Any]]:
    """Restore records from the recycle bin (the SOAP API's undelete(); REST has none)."""
    state = server.state
    who = (
        state.user_by_role(user or "integration")
        or state.user_by_username(user or "")
        or next(iter(state.users.values()))
    )
    ctx = Ctx(server, who)
    results = []
    for raw in record_ids:
        rid = ids.normalize(raw)
        found = server.state.find(rid) if rid else None
        if found is None:
            problem = sf_error("INVALID_ID_FIELD", f"invalid record id: {raw}")
            results.append({"id": raw, "success": False, "errors": [problem]})
            continue
        sobject, rec = found
        if not rec.get("IsDeleted"):
            problem = sf_error("UNDELETE_FAILED", "Entity is not in the recycle bin")
            results.append({"id": rid, "success": False, "errors": [problem]})
            continue
        o = server.schema.objects[sobject]
        back = dict(rec)
        back["IsDeleted"] = False
        now = _stamp(ctx)
        back.update({"LastModifiedDate": now, "LastModifiedById": who.id, "SystemModstamp": now})
        with server.state.transaction() as tx:
            tx.put(sobject, back, _change(ctx, o, "undeleted", back, rec, now))
        results.append({"id": rid, "success": True, "errors": []})
    return results


def _after_write(ctx: Ctx, o: ObjectDef, rec: dict[str, Any], old: dict[str, Any] | None) -> None:
    """What Salesforce does beside a write: a new campaign's member statuses, the member counts
    of a campaign, the amount and price book of an opportunity from its line items."""
    if o.name == "Campaign" and old is None:
        for n, (label, default, responded) in enumerate(sales.DEFAULT_MEMBER_STATUSES, start=1):
            create(ctx, "CampaignMemberStatus", {"CampaignId": rec["Id"], "Label": label,
                   "SortOrder": n, "IsDefault": default, "HasResponded": responded})  # fmt: skip
    if o.name == "CampaignMember":
        campaign = ctx.server.state.get("Campaign", rec.get("CampaignId") or "")
        if campaign is not None:
            rollup = sales.campaign_rollup(ctx.server.state, campaign["Id"])
            automated_update(ctx, ctx.server.schema.objects["Campaign"], campaign["Id"], rollup)
    if o.name != "OpportunityLineItem":
        return
    state = ctx.server.state
    opp_id = rec.get("OpportunityId")
    opp = state.get("Opportunity", opp_id or "")
    if opp is None:
        return
    items = [r for r in state.records("OpportunityLineItem") if r.get("OpportunityId") == opp_id]
    new = dict(opp)
    entry = state.get("PricebookEntry", rec.get("PricebookEntryId") or "")
    if not new.get("Pricebook2Id") and entry is not None:
        new["Pricebook2Id"] = entry.get("Pricebook2Id")  # the first line item sets it
    new["HasOpportunityLineItem"] = bool(items)
    if items:
        new["Amount"] = round(sum(float(r.get("TotalPrice") or 0) for r in items), 2)
        new["TotalOpportunityQuantity"] = float(sum(float(r.get("Quantity") or 0) for r in items))
    if new != opp:
        new["SystemModstamp"] = _stamp(ctx)
        opp_o = ctx.server.schema.objects["Opportunity"]
        new[_EXPLICIT_KEY] = set()
        _derive(ctx, opp_o, new, opp)
        del new[_EXPLICIT_KEY]
        new = {k: v for k, v in new.items() if v is not None}
        tx = state._tx
        assert tx is not None
        tx.put("Opportunity", new, _change(ctx, opp_o, "updated", new, opp, new["SystemModstamp"]))


def upsert(
    ctx: Ctx, sobject: str, field_name: str, value: str, body: dict[str, Any]
) -> tuple[bool, str]:
    """Upsert by external id: (created, id). Raises 300/404 errors as Salesforce does."""
    o = obj_or_error(ctx.server, sobject)
    fd = o.field(field_name)
    if fd is None or not (fd.external_id or fd.name == "Id" or fd.id_lookup and fd.unique):
        raise DmlError.one(
            "NOT_FOUND",
            f"Provided external ID field does not exist or is not accessible: {field_name}",
            status=404,
        )
    matches = find_by_field(ctx.server, o, fd, value)
    if len(matches) > 1:
        raise MultipleMatches([record_url(o, m, ctx.version) for m in matches])
    body = dict(body)
    if matches:
        body.pop(fd.name, None)
        return False, update(ctx, o.name, matches[0], body)
    if fd.name == "Id":
        raise DmlError.one("NOT_FOUND", "The requested resource does not exist", status=404)
    given = {k.lower(): v for k, v in body.items()}
    if fd.name.lower() in given and str(given[fd.name.lower()]) != value:
        raise DmlError.one(
            "INVALID_FIELD",
            f"The value of the external ID field in the body doesn't match the value in the "
            f"URL: {fd.name}",
        )
    body = {k: v for k, v in body.items() if k.lower() != fd.name.lower()}
    body[fd.name] = value
    return True, create(ctx, o.name, body)


class MultipleMatches(Exception):  # noqa: N818 - Salesforce's 300 Multiple Choices
    def __init__(self, urls: list[str]) -> None:
        super().__init__("more than one record matches")
        self.urls = urls


# ---- lead conversion ------------------------------------------------------------------------

# Lead field -> Contact / Account field, the standard lead field mapping.
_LEAD_TO_CONTACT = {
    "FirstName": "FirstName", "LastName": "LastName", "Salutation": "Salutation",
    "Title": "Title", "Email": "Email", "Phone": "Phone", "MobilePhone": "MobilePhone",
    "Fax": "Fax", "LeadSource": "LeadSource", "Street": "MailingStreet", "City": "MailingCity",
    "State": "MailingState", "PostalCode": "MailingPostalCode", "Country": "MailingCountry",
    "HasOptedOutOfEmail": "HasOptedOutOfEmail", "DoNotCall": "DoNotCall",
    "Description": "Description",
}  # fmt: skip
_LEAD_TO_ACCOUNT = {
    "Company": "Name", "Website": "Website", "Industry": "Industry", "Phone": "Phone",
    "AnnualRevenue": "AnnualRevenue", "NumberOfEmployees": "NumberOfEmployees",
    "Street": "BillingStreet", "City": "BillingCity", "State": "BillingState",
    "PostalCode": "BillingPostalCode", "Country": "BillingCountry", "Rating": "Rating",
    "LeadSource": "AccountSource",
}  # fmt: skip


def _merge_into(ctx: Ctx, sobject: str, record_id: str, values: dict[str, Any]) -> str:
    """Convert into an existing record: "only empty fields in the target object are
    overwritten—existing data (including IDs) aren't overwritten" (SOAP API, convertLead())."""
    o = ctx.server.schema.objects[sobject]
    target = load_for_write(ctx, o, record_id)
    empty = {k: v for k, v in values.items() if target.get(k) in (None, "")}
    if empty:
        update(ctx, sobject, target["Id"], empty)
    return str(target["Id"])


def convert_lead(
    server: DevOrgServer, body: dict[str, Any], user: User | None = None
) -> dict[str, Any]:
    """Convert a lead the way Database.convertLead / SOAP convertLead() do (LeadConvert options
    by name).

    body: lead_id (required), account_id / contact_id (merge into existing), converted_status
    (default "Closed - Converted"), do_not_create_opportunity (default false),
    opportunity_name, owner_id (of the new account, contact and opportunity, and the lead),
    user ("sales" | "integration" | username: who converts, unless ``user`` is given).
    """
    who = user
    if who is None:
        who_name = str(body.get("user") or "sales")
        who = server.state.user_by_role(who_name) or server.state.user_by_username(who_name)
    if who is None:
        raise DmlError.one("INVALID_CROSS_REFERENCE_KEY", f"no such user: {body.get('user')}")
    ctx = Ctx(server, who)
    lead_o = server.schema.objects["Lead"]
    lead_id = str(body.get("lead_id") or "")
    lead = load_for_write(ctx, lead_o, lead_id)
    if lead.get("IsConverted"):
        raise DmlError.one("INVALID_STATUS", "valid leadId is required", [])
    status = str(body.get("converted_status") or CONVERTED_STATUS)
    if status != CONVERTED_STATUS:
        raise DmlError.one("INVALID_STATUS", "invalid convertedStatus: " + status, [])
    owner = {"OwnerId": str(body["owner_id"])} if body.get("owner_id") else {}
    custom_contact = {f for f in server.schema.objects["Contact"].fields if f.endswith("__c")}
    state = server.state
    strict = getattr(server, "strict", None)
    # the lead being converted is not a duplicate of the contact made from it
    excluding = strict.excluding({lead["Id"]}) if strict is not None else nullcontext()
    with excluding, state.transaction():
        account_body = {a: lead[f] for f, a in _LEAD_TO_ACCOUNT.items() if lead.get(f) is not None}
        account_id = body.get("account_id")
        if account_id:
            account_id = _merge_into(ctx, "Account", str(account_id), account_body)
        else:
            account_id = create(ctx, "Account", {**account_body, **owner})
        contact_body = {c: lead[f] for f, c in _LEAD_TO_CONTACT.items() if lead.get(f) is not None}
        # Custom fields map to same-named Contact fields (the package's lead field mapping).
        for name in custom_contact:
            if lead.get(name) is not None and lead_o.fields.get(name) is not None:
                contact_body[name] = lead[name]
        contact_id = body.get("contact_id")
        if contact_id:
            contact_id = _merge_into(ctx, "Contact", str(contact_id), contact_body)
        else:
            contact_body["AccountId"] = account_id
            contact_id = create(ctx, "Contact", {**contact_body, **owner})
        opportunity_id = None
        if not body.get("do_not_create_opportunity"):
            close = (state.clock.now() + timedelta(days=30)).date().isoformat()
            opp_body = {
                "Name": body.get("opportunity_name") or f"{lead.get('Company', '')}-",
                "StageName": "Prospecting",
                "CloseDate": close,
                "AccountId": account_id,
                **owner,
            }
            if lead.get("LeadSource"):
                opp_body["LeadSource"] = lead["LeadSource"]
            opportunity_id = create(ctx, "Opportunity", opp_body)
            create(
                ctx,
                "OpportunityContactRole",
                {"OpportunityId": opportunity_id, "ContactId": contact_id, "IsPrimary": True},
            )
        converted = dict(lead)
        now = _stamp(ctx)
        converted.update(
            {
                "IsConverted": True,
                "Status": status,
                "ConvertedDate": state.clock.now().date().isoformat(),
                "ConvertedAccountId": account_id,
                "ConvertedContactId": contact_id,
                "LastModifiedDate": now,
                "LastModifiedById": who.id,
                "SystemModstamp": now,
            }
        )
        if opportunity_id:
            converted["ConvertedOpportunityId"] = opportunity_id
        if body.get("owner_id"):
            converted["OwnerId"] = body["owner_id"]
        state._tx.put("Lead", converted, _change(ctx, lead_o, "updated", converted, lead, now))  # type: ignore[union-attr]
    return {
        "leadId": lead["Id"],
        "accountId": account_id,
        "contactId": contact_id,
        "opportunityId": opportunity_id,
        "success": True,
        "errors": [],
    }
