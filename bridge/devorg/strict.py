"""Strict mode: the local org set up the way a customer's org is, so code that passes here does
not fail there.

Off by default; `POST /__devorg__/strict` turns it on with a configuration (persisted in the
data dir as `strict.json`, kept across restarts, cleared by `POST /__devorg__/reset`):

- validation rules (formula.py) and picklist field dependencies, failing a save with
  FIELD_CUSTOM_VALIDATION_EXCEPTION and the rule's message;
- duplicate rules: Salesforce's standard Lead, Contact and Account rules (active in every new
  org) answering DUPLICATES_DETECTED unless `Sforce-Duplicate-Rule-Header: allowSave=true`;
- field-level security per user: hidden fields and read-only fields;
- record-triggered automation after save: owner assignment and field updates ("flows"), each
  a further committed change (and so a further PushTopic / CDC event);
- row locks: a write holds the parent records it touches for a window; another request that
  needs them meanwhile gets UNABLE_TO_LOCK_ROW.

dml.py calls the write hooks, rest.py the read hooks, server.py installs `middleware` (the
request's headers and its locks). docs/devorg.md documents the body.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.devorg import calculated, ids, soql
from bridge.devorg.dml import DmlError, coerce, sf_error
from bridge.devorg.formula import Formula, FormulaError, compile_formula
from bridge.devorg.schema import FieldDef, ObjectDef, Schema
from bridge.devorg.state import DevOrgState, User

if TYPE_CHECKING:
    from bridge.devorg.dml import Ctx

log = logging.getLogger("bridge.devorg.strict")

STRICT_FILE = "strict.json"
AUTOMATED_PROCESS = "automated_process"  # the role of the "Automated Process" user
DUPLICATE_ALERT = "Use one of these records?"  # the standard rules' alert text
# Salesforce's standard duplicate rules and the matching rules they use (Duplicate Management).
_STANDARD_RULES = {
    "Lead": ("Standard_Lead_Duplicate_Rule", ("Lead", "Contact")),
    "Contact": ("Standard_Contact_Duplicate_Rule", ("Contact", "Lead")),
    "Account": ("Standard_Account_Duplicate_Rule", ("Account",)),
}
_MATCH_RULES = {
    "Lead": "Standard_Lead_Match_Rule_v1_0",
    "Contact": "Standard_Contact_Match_Rule_v1_1",
    "Account": "Standard_Account_Match_Rule_v1_0",
}
_LOCKED_PARENTS = {"Account", "Contact", "Lead", "Opportunity"}
_COMPANY_SUFFIX = re.compile(
    r"\b(inc|incorporated|llc|ltd|limited|corp|corporation|co|company|gmbh|plc|sa|ag)\b\.?"
)
_KEYS = {
    "enabled", "validation_rules", "picklist_dependencies", "duplicate_rules",
    "field_security", "automation", "row_locks", "formula_fields",
}  # fmt: skip


class StrictConfigError(ValueError):
    """A strict-mode configuration the control API refuses (400 with this message)."""


@dataclass
class ValidationRule:
    object: str
    name: str
    formula: Formula
    message: str
    error_field: str | None


@dataclass
class DuplicateRule:
    object: str
    name: str
    action: str  # "alert" (allowSave=true saves anyway) | "block"
    on_edit: bool
    message: str


@dataclass
class Automation:
    kind: str  # "assign_owner" | "update_field"
    object: str
    name: str
    when: Formula | None
    on: set[str]  # "create", "update"
    values: dict[str, Any]  # field -> value written
    run_as: str  # "triggering_user" | AUTOMATED_PROCESS
    delay_ms: int  # AUTOMATED_PROCESS: how long after the save its transaction runs


@dataclass
class Scope:
    """One HTTP request to the REST API: the headers strict mode reads and the locks it holds."""

    token: object
    allow_save: bool
    auto_assign: bool
    locks: set[str] = field(default_factory=set)
    locked_at: float | None = None


_SCOPE: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("strict_scope", default=None)
_EXCLUDED: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "strict_excluded", default=frozenset()
)


def _header_flags(value: str) -> dict[str, str]:
    """`allowSave=true; includeRecordDetails=false` -> {"allowsave": "true", ...}."""
    out = {}
    for part in re.split(r"[;,]", value or ""):
        key, _, val = part.partition("=")
        if key.strip():
            out[key.strip().lower()] = val.strip().lower()
    return out


class StrictMode:
    def __init__(self, state: DevOrgState, schema: Schema) -> None:
        self.state = state
        self.schema = schema
        self.path = Path(state.data_dir) / STRICT_FILE
        self._locks: dict[str, object] = {}  # record id -> the holding request's token
        self.calculated = calculated.Calculated(state, self._parent_value)
        self._clear()
        if self.path.exists():
            try:
                self.configure(json.loads(self.path.read_text(encoding="utf-8")), save=False)
            except (ValueError, StrictConfigError):
                self._clear()  # a file edited by hand into nonsense: start the org relaxed

    def _clear(self) -> None:
        self.enabled = False
        self.config: dict[str, Any] = {"enabled": False}
        self.rules: dict[str, list[ValidationRule]] = {}
        self.dependencies: list[dict[str, Any]] = []
        self.duplicates: dict[str, DuplicateRule] = {}
        self.hidden: dict[str, dict[str, set[str]]] = {}  # user id -> object -> fields
        self.read_only: dict[str, dict[str, set[str]]] = {}
        self.automation: list[Automation] = []
        self.lock_window_ms = 0
        self.state.event_view = None
        if self.calculated.fields:
            self.calculated.set([])

    # -- configuration ----------------------------------------------------------------------

    def reset(self) -> None:
        """Strict mode off, and the org as it was before: its Automated Process user goes."""
        self._clear()
        self._locks.clear()
        self.path.unlink(missing_ok=True)
        auto = self.state.user_by_role(AUTOMATED_PROCESS)
        if auto is not None:
            self.state.remove_user(auto.id)

    def describe(self) -> dict[str, Any]:
        auto = self.state.user_by_role(AUTOMATED_PROCESS)
        return {
            **self.config,
            "automated_process_user_id": auto.id if auto else None,
            "locks": sorted(self._locks),
        }

    def configure(self, body: dict[str, Any], *, save: bool = True) -> dict[str, Any]:
        """Replace the configuration (StrictConfigError names the key that is wrong)."""
        if not isinstance(body, dict):
            raise StrictConfigError("the body must be a JSON object")
        unknown = set(body) - _KEYS
        if unknown:
            raise StrictConfigError(f"unknown key(s): {', '.join(sorted(unknown))}")
        enabled = bool(body.get("enabled", True))
        rules = self._validation_rules(body.get("validation_rules", []))
        dependencies = self._dependencies(body.get("picklist_dependencies", []))
        duplicates = self._duplicate_rules(body.get("duplicate_rules", "standard"))
        hidden, read_only = self._field_security(body.get("field_security", {}))
        automation = self._automation(body.get("automation", []))
        locks = body.get("row_locks", {}) or {}
        if not isinstance(locks, dict) or set(locks) - {"window_ms"}:
            raise StrictConfigError('row_locks: give {"window_ms": N}')
        window = _int(locks.get("window_ms", 0), "row_locks.window_ms")
        formulas = self._formula_fields(body.get("formula_fields", []))
        self._clear()
        self.enabled = enabled
        self.rules, self.dependencies, self.duplicates = rules, dependencies, duplicates
        self.hidden, self.read_only, self.automation = hidden, read_only, automation
        self.lock_window_ms = window
        if enabled:
            self.calculated.set(formulas)
        # the streaming side asks how a user sees an event only when some field is hidden
        self.state.event_view = self.event_view if enabled and hidden else None
        self.config = {**body, "enabled": enabled}
        if save:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.config, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        return self.describe()

    def _object(self, name: Any, where: str) -> ObjectDef:
        o = self.schema.object(str(name)) if name else None
        if o is None:
            raise StrictConfigError(f"{where}: no such object: {name}")
        return o

    def _field(self, o: ObjectDef, name: Any, where: str) -> FieldDef:
        fd = o.field(str(name)) if name else None
        if fd is None:
            raise StrictConfigError(f"{where}: no such field: {o.name}.{name}")
        return fd

    def _user(self, key: Any, where: str) -> User:
        text = str(key or "")
        if text == AUTOMATED_PROCESS:
            return self.automated_process_user()
        user = (
            self.state.user_by_role(text)
            or self.state.user_by_username(text)
            or self.state.users.get(ids.normalize(text) or text)
        )
        if user is None:
            raise StrictConfigError(f"{where}: no such user: {key}")
        return user

    def _formula(self, text: Any, o: ObjectDef, where: str) -> Formula:
        try:
            return compile_formula(str(text or ""), o, self.schema)
        except FormulaError as exc:
            raise StrictConfigError(f"{where}: {exc}") from None

    def _formula_fields(self, items: Any) -> list[calculated.CalculatedField]:
        out = []
        for n, item in enumerate(_list(items, "formula_fields")):
            where = f"formula_fields[{n}]"
            o = self._object(item.get("object"), where)
            name = str(item.get("field") or "")
            if not re.match(r"^[A-Za-z][A-Za-z0-9_]*__c$", name):
                raise StrictConfigError(f"{where}: field must be a custom field name (Name__c)")
            existing = o.field(name)
            if existing is not None and not existing.calculated:
                raise StrictConfigError(f"{where}: {o.name}.{name} exists and is not a formula")
            kind = str(item.get("type") or "Text")
            if kind not in calculated.TYPES:
                raise StrictConfigError(f"{where}: type is one of {', '.join(calculated.TYPES)}")
            try:
                formula = compile_formula(
                    str(item.get("formula") or ""), o, self.schema, boolean=kind == "Checkbox"
                )
            except FormulaError as exc:
                raise StrictConfigError(f"{where}: {exc}") from None
            fd = calculated.field_def(name, kind, formula.text)
            out.append(
                calculated.CalculatedField(o, fd, formula, calculated.reads_parent(formula.root))
            )
        return out

    def _validation_rules(self, items: Any) -> dict[str, list[ValidationRule]]:
        out: dict[str, list[ValidationRule]] = {}
        for n, item in enumerate(_list(items, "validation_rules")):
            where = f"validation_rules[{n}]"
            o = self._object(item.get("object"), where)
            if item.get("active", True) is False:
                continue
            error_field = item.get("error_field")
            if error_field:
                error_field = self._field(o, error_field, where).name
            message = str(item.get("message") or "")
            if not message:
                raise StrictConfigError(f"{where}: message is required")
            rule = ValidationRule(
                o.name,
                str(item.get("name") or f"Rule_{n + 1}"),
                self._formula(item.get("formula"), o, where),
                message,
                error_field,
            )
            out.setdefault(o.name, []).append(rule)
        return out

    def _dependencies(self, items: Any) -> list[dict[str, Any]]:
        """A field dependency: describe shows it; a save that breaks it fails like the
        validation rule admins add for it (the API does not check dependencies itself)."""
        out = []
        for n, item in enumerate(_list(items, "picklist_dependencies")):
            where = f"picklist_dependencies[{n}]"
            o = self._object(item.get("object"), where)
            controlling = self._field(o, item.get("controlling"), where)
            dependent = self._field(o, item.get("dependent"), where)
            if controlling.type not in ("picklist", "boolean") or dependent.type not in (
                "picklist",
                "multipicklist",
            ):
                raise StrictConfigError(
                    f"{where}: a dependency needs a picklist (or checkbox) controlling a picklist"
                )
            valid = item.get("valid")
            if not isinstance(valid, dict):
                raise StrictConfigError(f"{where}: valid must map controlling values to lists")
            controlling_values = _controlling_values(controlling)
            for key, allowed in valid.items():
                if key not in controlling_values or not isinstance(allowed, list):
                    raise StrictConfigError(f"{where}: {controlling.name} has no value {key!r}")
                for value in allowed:
                    if dependent.picklist is not None and value not in dependent.picklist:
                        raise StrictConfigError(f"{where}: {dependent.name} has no value {value!r}")
            dep = {
                "object": o.name,
                "controlling": controlling.name,
                "dependent": dependent.name,
                "valid": {str(k): [str(v) for v in vs] for k, vs in valid.items()},
                "message": str(
                    item.get("message")
                    or f"{dependent.label}: bad value for dependent picklist field"
                ),
            }
            out.append(dep)
        return out

    def _duplicate_rules(self, value: Any) -> dict[str, DuplicateRule]:
        if value == "standard":  # the rules every new org has active
            value = {"Lead": "alert", "Contact": "alert", "Account": "alert"}
        if value in (None, "off", {}):
            return {}
        if not isinstance(value, dict):
            raise StrictConfigError('duplicate_rules: "standard", "off" or {object: action}')
        out = {}
        for name, spec in value.items():
            if name not in _STANDARD_RULES:
                raise StrictConfigError(f"duplicate_rules: only Lead, Contact and Account: {name}")
            spec = {"action": spec} if isinstance(spec, str) else dict(spec or {})
            action = spec.get("action", "alert")
            if action == "off":
                continue
            if action not in ("alert", "block"):
                raise StrictConfigError(f"duplicate_rules.{name}: action is alert, block or off")
            out[name] = DuplicateRule(
                name,
                _STANDARD_RULES[name][0],
                action,
                bool(spec.get("on_edit", False)),
                str(spec.get("message") or DUPLICATE_ALERT),
            )
        return out

    def _field_security(
        self, value: Any
    ) -> tuple[dict[str, dict[str, set[str]]], dict[str, dict[str, set[str]]]]:
        if not isinstance(value, dict):
            raise StrictConfigError("field_security: {user: {hidden: [...], read_only: [...]}}")
        hidden: dict[str, dict[str, set[str]]] = {}
        read_only: dict[str, dict[str, set[str]]] = {}
        for key, spec in value.items():
            where = f"field_security.{key}"
            user = self._user(key, where)
            if not isinstance(spec, dict) or set(spec) - {"hidden", "read_only"}:
                raise StrictConfigError(f"{where}: give hidden and/or read_only lists")
            for kind, target in (("hidden", hidden), ("read_only", read_only)):
                for path in _list(spec.get(kind, []), f"{where}.{kind}"):
                    obj_name, _, field_name = str(path).partition(".")
                    o = self._object(obj_name, f"{where}.{kind}")
                    fd = self._field(o, field_name, f"{where}.{kind}")
                    if not fd.nillable or fd.calculated or not fd.createable or fd.name == "Id":
                        raise StrictConfigError(
                            f"{where}.{kind}: the field-level security of {o.name}.{fd.name} "
                            "cannot be changed (a required or system field)"
                        )
                    target.setdefault(user.id, {}).setdefault(o.name, set()).add(fd.name)
        return hidden, read_only

    def _automation(self, items: Any) -> list[Automation]:
        out = []
        for n, item in enumerate(_list(items, "automation")):
            where = f"automation[{n}]"
            o = self._object(item.get("object"), where)
            kind = item.get("kind")
            when = self._formula(item["when"], o, where) if item.get("when") else None
            # REST applies assignment rules on updates too unless Sforce-Auto-Assign: FALSE
            default_on = ["create", "update"] if kind == "assign_owner" else ["create"]
            on = set(_list(item.get("on", default_on), f"{where}.on"))
            if not on or on - {"create", "update"}:
                raise StrictConfigError(f"{where}.on: create and/or update")
            if kind == "assign_owner":
                if "OwnerId" not in o.fields:
                    raise StrictConfigError(f"{where}: {o.name} has no owner")
                values = {"OwnerId": self._user(item.get("owner"), where).id}
                run_as = "triggering_user"  # assignment rules run in the saving user's save
            elif kind == "update_field":
                fd = self._field(o, item.get("field"), where)
                if not fd.updateable:
                    raise StrictConfigError(f"{where}: {o.name}.{fd.name} is not updateable")
                problems: list[dict[str, Any]] = []
                try:
                    coerce(fd, item.get("value"), problems)
                except DmlError as exc:
                    problems = exc.errors
                if problems:
                    raise StrictConfigError(f"{where}.value: {problems[0]['message']}")
                values = {fd.name: item.get("value")}
                run_as = str(item.get("run_as", "triggering_user"))
                if run_as not in ("triggering_user", AUTOMATED_PROCESS):
                    raise StrictConfigError(
                        f"{where}.run_as: triggering_user or {AUTOMATED_PROCESS}"
                    )
                if run_as == AUTOMATED_PROCESS:
                    self.automated_process_user()
            else:
                raise StrictConfigError(f"{where}.kind: assign_owner or update_field")
            name = str(item.get("name") or f"{kind}_{n + 1}")
            delay = _int(item.get("delay_ms", 1000), f"{where}.delay_ms")
            out.append(Automation(str(kind), o.name, name, when, on, values, run_as, delay))
        return out

    def automated_process_user(self) -> User:
        """The org's "Automated Process" user (asynchronous paths and scheduled flows run as
        it); created the first time a rule needs it."""
        user = self.state.user_by_role(AUTOMATED_PROCESS)
        if user is not None:
            return user
        uid = self.state.new_id("005")
        username = f"autoproc@{self.state.org_id.lower()}"
        user = User(uid, username, "", "Automated Process", username, AUTOMATED_PROCESS)
        stamp = self.state.clock.now().strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        with self.state.transaction() as tx:
            self.state.add_user(user)
            tx.put(
                "User",
                {
                    "Id": uid, "IsDeleted": False, "Username": username, "LastName": "Process",
                    "FirstName": "Automated", "Name": "Automated Process", "Email": username,
                    "Alias": "autoproc", "IsActive": True, "UserType": "AutomatedProcess",
                    "CreatedDate": stamp, "CreatedById": uid, "LastModifiedDate": stamp,
                    "LastModifiedById": uid, "SystemModstamp": stamp,
                },
            )  # fmt: skip
        return user

    # -- write hooks (dml.py) ---------------------------------------------------------------

    @contextmanager
    def excluding(self, record_ids: set[str]) -> Iterator[None]:
        """Records duplicate rules do not match against meanwhile (a lead being converted)."""
        reset = _EXCLUDED.set(_EXCLUDED.get() | frozenset(record_ids))
        try:
            yield
        finally:
            _EXCLUDED.reset(reset)

    def check_write(self, ctx: Ctx, o: ObjectDef, body: dict[str, Any], *, creating: bool) -> None:
        """Field-level security on a create/update body (and on a PushTopic's query: a topic
        cannot name a field its creator cannot see)."""
        if o.name == "PushTopic" and self.hidden.get(ctx.user.id):
            query = next((v for k, v in body.items() if k.lower() == "query"), None)
            if isinstance(query, str):
                try:
                    self._check_query(query, self.hidden[ctx.user.id])
                except soql.SoqlError as exc:
                    raise DmlError.one(exc.code, exc.message, ["Query"]) from None
        hidden = self.hidden.get(ctx.user.id, {}).get(o.name, set())
        read_only = self.read_only.get(ctx.user.id, {}).get(o.name, set())
        if not hidden and not read_only:
            return
        blocked = []
        for key in body:
            fd = o.field(key)
            if fd is None:
                continue
            if fd.name in hidden:
                raise DmlError.one(
                    "INVALID_FIELD", f"No such column '{key}' on sobject of type {o.name}"
                )
            if fd.name in read_only:
                blocked.append(fd.name)
        if blocked:
            raise DmlError.one(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(blocked)}. Please check the security "
                "settings of this field and verify that it is read/write for your profile or "
                "permission set.",
                blocked,
            )

    def validate(
        self, ctx: Ctx, o: ObjectDef, rec: dict[str, Any], old: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        """The errors of every validation rule (and dependency) the record breaks."""
        errors = []
        now = self.state.clock.now()
        for rule in self.rules.get(o.name, ()):
            if rule.formula.evaluate(rec, old, self._parent_value, now):
                fields = [rule.error_field] if rule.error_field else []
                errors.append(sf_error("FIELD_CUSTOM_VALIDATION_EXCEPTION", rule.message, fields))
        for dep in self.dependencies:
            if dep["object"] != o.name:
                continue
            value = rec.get(dep["dependent"])
            if value is None:
                continue
            control = rec.get(dep["controlling"])
            key = _text(control)
            allowed = dep["valid"].get(key, [])
            if any(part not in allowed for part in str(value).split(";")):
                errors.append(
                    sf_error(
                        "FIELD_CUSTOM_VALIDATION_EXCEPTION", dep["message"], [dep["dependent"]]
                    )
                )
        return errors

    def _parent_value(self, rec: dict[str, Any], path: str) -> Any:
        cur: dict[str, Any] | None = rec
        parts = path.split(".")
        o = None
        for part in parts[:-1]:
            if cur is None:
                return None
            sobject = self.schema.sobject_for_prefix(str(cur.get("Id", ""))[:3])
            o = self.schema.objects.get(sobject or "") if sobject else None
            rel = None
            if o is not None:
                rel = o.relationships.get(part.lower())
            ref = cur.get(rel.name) if rel is not None else None
            found = self.state.find(ref) if isinstance(ref, str) else None
            cur = found[1] if found is not None and not found[1].get("IsDeleted") else None
        return cur.get(parts[-1]) if cur is not None else None

    def check_duplicates(
        self, ctx: Ctx, o: ObjectDef, rec: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        rule = self.duplicates.get(o.name)
        if rule is None or (old is not None and not rule.on_edit):
            return
        scope = _SCOPE.get()
        if rule.action == "alert" and scope is not None and scope.allow_save:
            return
        results = []
        skip = {rec.get("Id"), *_EXCLUDED.get()}
        for entity in _STANDARD_RULES[o.name][1]:
            found = [
                r["Id"]
                for r in self.state.records(entity)
                if r["Id"] not in skip
                and not r.get("IsConverted")  # a converted lead is no longer matched
                and _duplicates(o.name, rec, entity, r)
            ]
            if found:
                results.append(_match_result(entity, found, ctx.version))
        if not results:
            return
        error = sf_error("DUPLICATES_DETECTED", rule.message)
        error["duplicateResult"] = {
            "allowSave": rule.action == "alert",
            "duplicateRule": rule.name,
            "duplicateRuleEntityType": o.name,
            "errorMessage": rule.message,
            "matchResults": results,
        }
        raise DmlError([error])

    def after_save(
        self, ctx: Ctx, o: ObjectDef, rec: dict[str, Any], old: dict[str, Any] | None
    ) -> Iterator[tuple[User, dict[str, Any], float | None]]:
        """(run-as user, field values, None or the seconds after the save it runs) per
        automation the save sets off, in order: owner assignment, then field updates."""
        event = "create" if old is None else "update"
        scope = _SCOPE.get()
        now = self.state.clock.now()
        current = dict(rec)
        for rule in sorted(self.automation, key=lambda a: a.kind != "assign_owner"):
            if rule.object != o.name or event not in rule.on:
                continue
            if rule.kind == "assign_owner" and scope is not None and not scope.auto_assign:
                continue
            if rule.when is not None and not rule.when.evaluate(
                current, old, self._parent_value, now
            ):
                continue
            changes = {k: v for k, v in rule.values.items() if current.get(k) != v}
            if not changes:
                continue
            if rule.run_as == "triggering_user":
                current.update(changes)
                yield ctx.user, changes, None
            else:
                yield self.automated_process_user(), changes, rule.delay_ms / 1000

    def defer(self, seconds: float, job: Callable[[], None]) -> None:
        """Run an automation's own transaction later (at once outside the event loop)."""

        def run() -> None:
            if not self.enabled:
                return
            try:
                job()
            except Exception:  # a failed automation must not take the org down: logged
                log.exception("an automation running as the Automated Process user failed")

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            run()
            return
        loop.call_later(seconds, run)

    def lock(self, ctx: Ctx, o: ObjectDef, rec: dict[str, Any], *, existing: bool) -> None:
        """Take the row locks a write needs: the record (when it exists) and its parents."""
        scope = _SCOPE.get()
        if self.lock_window_ms <= 0 or scope is None:
            return
        wanted = {rec["Id"]} if existing and rec.get("Id") else set()
        for fd in o.fields.values():
            value = rec.get(fd.name)
            if fd.type == "reference" and value and _LOCKED_PARENTS & set(fd.reference_to):
                wanted.add(str(value))
        for rid in sorted(wanted):
            holder = self._locks.get(rid)
            if holder is not None and holder is not scope.token:
                raise DmlError.one(
                    "UNABLE_TO_LOCK_ROW",
                    f"unable to obtain exclusive access to this record or 1 records: {rid}",
                )
        for rid in wanted:
            self._locks[rid] = scope.token
            scope.locks.add(rid)
        if wanted and scope.locked_at is None:
            scope.locked_at = time.monotonic()

    # -- read hooks (rest.py) ---------------------------------------------------------------

    def check_read(self, ctx: Ctx, method: str, path: str, query: dict[str, str]) -> None:
        """Refuse a read that names a field hidden from the user, as an unknown field."""
        hidden = self.hidden.get(ctx.user.id)
        if not hidden or method not in ("GET", "POST"):
            return
        parts = [p for p in path.split("/") if p]
        if parts and parts[0] in ("query", "queryAll") and len(parts) == 1 and query.get("q"):
            self._check_query(query["q"], hidden)
            return
        names = query.get("fields")
        # sobjects/{o}/{id}?fields=, sobjects/{o}/{field}/{value}?fields=,
        # composite/sobjects/{o}?fields=
        at = 0 if parts[:1] == ["sobjects"] else 1 if parts[:2] == ["composite", "sobjects"] else -1
        if method == "GET" and names and at >= 0 and len(parts) > at + 1:
            o = self.schema.object(parts[at + 1])
            for name in (n.strip() for n in names.split(",")):
                fd = o.field(name) if o else None
                if o is not None and fd is not None and fd.name in hidden.get(o.name, ()):
                    raise DmlError.one(
                        "INVALID_FIELD",
                        f"No such column '{name}' on entity '{o.name}'. If you are attempting to "
                        "use a custom field, be sure to append the '__c' after the custom field "
                        "name. Please reference your WSDL or the describe call for the "
                        "appropriate names.",
                    )

    def _check_query(self, text: str, hidden: dict[str, set[str]]) -> None:
        try:
            q = soql.parse_query(text)
        except soql.SoqlError:
            return  # the query engine reports the syntax error itself
        top = self.schema.object(q.sobject)
        if top is None:
            return
        for ref, o in _field_refs(q, top, self.schema):
            target, name = self._resolve(o, ref.path)
            if target is not None and name in hidden.get(target.name, ()):
                raise soql.SoqlError(
                    "INVALID_FIELD",
                    f"\n{text}\n{' ' * ref.pos}^\nERROR at Row:1:Column:{ref.pos + 1}\n"
                    f"No such column '{ref.path.split('.')[-1]}' on entity '{target.name}'. If "
                    "you are attempting to use a custom field, be sure to append the '__c' after "
                    "the custom field name. Please reference your WSDL or the describe call for "
                    "the appropriate names.",
                )

    def _resolve(self, o: ObjectDef, path: str) -> tuple[ObjectDef | None, str]:
        parts = path.split(".")
        if len(parts) > 1 and parts[0].lower() == o.name.lower() and o.field(parts[0]) is None:
            parts = parts[1:]
        current: ObjectDef | None = o
        for part in parts[:-1]:
            rel = current.relationships.get(part.lower()) if current else None
            current = None
            if rel is not None:
                current = next(
                    (self.schema.objects[t] for t in rel.reference_to if t in self.schema.objects),
                    None,
                )
        fd = current.field(parts[-1]) if current else None
        return current, fd.name if fd else parts[-1]

    def filter_reply(self, ctx: Ctx, method: str, path: str, body: Any) -> None:
        """Take hidden fields out of what the user reads; describe shows field security and
        dependencies."""
        parts = [p for p in path.split("/") if p]
        if len(parts) == 3 and parts[0] == "sobjects" and parts[2] == "describe":
            if isinstance(body, dict):
                self._filter_describe(ctx, body)
            return
        hidden = self.hidden.get(ctx.user.id)
        if hidden:
            _strip_hidden(body, hidden)

    def _filter_describe(self, ctx: Ctx, body: dict[str, Any]) -> None:
        name = str(body.get("name"))
        hidden = self.hidden.get(ctx.user.id, {}).get(name, set())
        read_only = self.read_only.get(ctx.user.id, {}).get(name, set())
        fields = [f for f in body.get("fields", []) if f.get("name") not in hidden]
        for f in fields:
            if f.get("name") in read_only:
                f["createable"] = f["updateable"] = False
        o = self.schema.objects.get(name)
        for dep in self.dependencies:
            if dep["object"] != name or o is None:
                continue
            controlling = _controlling_values(o.fields[dep["controlling"]])
            for f in fields:
                if f.get("name") != dep["dependent"]:
                    continue
                f["dependentPicklist"] = True
                f["controllerName"] = dep["controlling"]
                for entry in f.get("picklistValues", []):
                    entry["validFor"] = _valid_for(entry["value"], controlling, dep["valid"])
        body["fields"] = fields

    def event_view(self, user_id: str, message: str) -> str:
        """A streaming message as `user_id` receives it: without the fields hidden from them
        (PushTopic and change events respect field-level security)."""
        hidden = self.hidden.get(user_id) if self.enabled else None
        if not hidden:
            return message
        event = json.loads(message)
        data = event.get("data") or {}
        sobject, payload = data.get("sobject"), data.get("payload")
        if isinstance(sobject, dict):
            for name in hidden.get(self._topic_object(str(event.get("channel"))), ()):
                sobject.pop(name, None)
        elif isinstance(payload, dict):
            header = payload.get("ChangeEventHeader") or {}
            names = hidden.get(str(header.get("entityName")), set())
            for name in names:
                payload.pop(name, None)
            for key in ("changedFields", "nulledFields", "diffFields"):
                if isinstance(header.get(key), list):
                    header[key] = [f for f in header[key] if f not in names]
        return json.dumps(event, separators=(",", ":"))

    def _topic_object(self, channel: str) -> str:
        name = channel.split("?", 1)[0].removeprefix("/topic/")
        topic = next((r for r in self.state.records("PushTopic") if r.get("Name") == name), None)
        try:
            parsed = soql.parse_query(str(topic.get("Query"))) if topic else None
        except soql.SoqlError:
            parsed = None
        o = self.schema.object(parsed.sobject) if parsed else None
        return o.name if o else ""

    # -- the HTTP side ----------------------------------------------------------------------

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not self.enabled or not request.path.startswith("/services/data/"):
            return await handler(request)
        duplicate = _header_flags(request.headers.get("Sforce-Duplicate-Rule-Header", ""))
        assign = request.headers.get("Sforce-Auto-Assign", "true").strip().lower()
        scope = Scope(object(), duplicate.get("allowsave") == "true", assign not in ("false", "0"))
        reset = _SCOPE.set(scope)
        try:
            response = await handler(request)
            if scope.locked_at is not None:
                # the transaction "runs" for the window: its locks are held until it ends
                left = scope.locked_at + self.lock_window_ms / 1000 - time.monotonic()
                if left > 0:
                    await asyncio.sleep(left)
            return response
        finally:
            for rid in scope.locks:
                if self._locks.get(rid) is scope.token:
                    del self._locks[rid]
            _SCOPE.reset(reset)


# ---- helpers -------------------------------------------------------------------------------


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise StrictConfigError(f"{where} must be a list")
    return value


def _int(value: Any, where: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise StrictConfigError(f"{where} must be an integer") from None
    if number < 0:
        raise StrictConfigError(f"{where} must not be negative")
    return number


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _controlling_values(fd: FieldDef) -> list[str]:
    return ["false", "true"] if fd.type == "boolean" else list(fd.picklist or [])


def _valid_for(value: str, controlling: list[str], valid: dict[str, list[str]]) -> str:
    """describe's validFor: one bit per controlling value, most significant bit first."""
    size = max(3, -(-len(controlling) // 24) * 3)
    bits = bytearray(size)
    for index, control in enumerate(controlling):
        if value in valid.get(control, ()):
            bits[index >> 3] |= 0x80 >> (index & 7)
    return base64.b64encode(bytes(bits)).decode()


def _email(value: Any) -> str:
    return str(value or "").strip().lower()


def _company(value: Any) -> str:
    text = _COMPANY_SUFFIX.sub(" ", str(value or "").lower())
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def _host(value: Any) -> str:
    text = str(value or "").strip().lower()
    text = re.sub(r"^[a-z]+://", "", text).split("/")[0].split(":")[0]
    return text[4:] if text.startswith("www.") else text


def _digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value or ""))


def _duplicates(kind: str, rec: dict[str, Any], entity: str, other: dict[str, Any]) -> bool:
    """The standard matching rules, simplified: a person by email (exact, any case); an account
    by its name (legal suffixes and punctuation ignored) plus its website host, phone or
    billing street."""
    if kind in ("Lead", "Contact"):
        email = _email(rec.get("Email"))
        return bool(email) and email == _email(other.get("Email"))
    name = _company(rec.get("Name"))
    if not name or name != _company(other.get("Name")):
        return False
    for get in (
        lambda r: _host(r.get("Website")),
        lambda r: _digits(r.get("Phone")),
        lambda r: _company(r.get("BillingStreet")),
    ):
        mine = get(rec)
        if mine and mine == get(other):
            return True
    return False


def _match_result(entity: str, found: list[str], version: str) -> dict[str, Any]:
    return {
        "entityType": entity,
        "errors": [],
        "matchEngine": "FuzzyMatchEngine",
        "matchRecords": [
            {
                "additionalInformation": [],
                "fieldDiffs": [],
                "matchConfidence": 100.0,
                "record": {
                    "attributes": {
                        "type": entity,
                        "url": f"/services/data/v{version}/sobjects/{entity}/{rid}",
                    },
                    "Id": rid,
                },
            }
            for rid in found
        ],
        "rule": _MATCH_RULES[entity],
        "size": len(found),
        "success": True,
    }


def _field_refs(q: soql.Query, o: ObjectDef, schema: Schema) -> Iterator[tuple[Any, ObjectDef]]:
    """Every field reference of a query with the object it is read from: the query's own,
    its child subqueries' (the child object) and its semi-joins' (their FROM object)."""
    children = {id(sub) for sub in q.subqueries}
    stack: list[Any] = [v for k, v in vars(q).items() if k != "subqueries"]
    while stack:
        value = stack.pop()
        if isinstance(value, soql.FieldRef):
            yield value, o
        elif isinstance(value, soql.Query) and id(value) not in children:
            inner = schema.object(value.sobject)
            if inner is not None:
                yield from _field_refs(value, inner, schema)
        elif isinstance(value, list | tuple):
            stack.extend(value)
        elif hasattr(value, "__dataclass_fields__"):
            stack.extend(vars(value).values())
    for sub in q.subqueries:
        for (child_name, _field_name), rel in schema.child_relationships.items():
            child = schema.objects.get(child_name)
            if child is not None and rel.lower() == sub.sobject.lower():
                yield from _field_refs(sub, child, schema)
                break


def _strip_hidden(body: Any, hidden: dict[str, set[str]]) -> None:
    """Remove hidden fields from every record (a dict with attributes.type) in a reply."""
    stack = [body]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            attrs = value.get("attributes")
            if isinstance(attrs, dict):
                for name in hidden.get(str(attrs.get("type")), ()):
                    value.pop(name, None)
            stack.extend(v for v in value.values() if isinstance(v, dict | list))
