"""Receiver config checks that bridge/config.py cannot do on the file alone.

- ``check_rules(org)``: rules that can never take effect — a status rule shadowed by an earlier
  rule that matches whenever it does (first match wins), and rules or referral field mappings
  on an object that no streamed object leads to under the relational rules (SPEC §6).
- ``check_files(org)``: the private key and CA bundle files the connection reads exist;
- ``check_against_describe(org, describes)``: every field the receiver reads exists on the
  connected org, spelt as the org spells it (records carry the API's spelling, so ``email``
  would never find ``Email``), and status-rule values are values of their picklists.

All but ``check_files`` are pure; they return ``ConfigProblem``s whose ``key`` is the config path
(``receiver.status_rules[3]``, as bridge.config writes them), for ``sfbridge config check``
and ``sfbridge org check`` to print.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.config import (
    BridgeConfig,
    OrgConfig,
    Problem,
    StatusRule,
    line_index,
    parse_field_ref,
)
from bridge.values import contains, covers
from bridge.vocabulary import STREAMED_OBJECTS, TOPIC_NAMES

# Objects whose record an entry can carry, by trigger object (SPEC §6 relational rules): a Lead
# reaches Contact/Account/Opportunity only once converted; nothing else reaches a Lead.
REACHABLE = {
    "Lead": frozenset(STREAMED_OBJECTS),
    "Contact": frozenset({"Contact", "Account", "Opportunity"}),
    "Account": frozenset({"Account", "Contact", "Opportunity"}),
    "Opportunity": frozenset({"Opportunity", "Account", "Contact"}),
}


@dataclass(frozen=True)
class ConfigProblem:
    key: str  # path in the org's config, e.g. "receiver.status_rules[2]"
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


# ---- rules that can never fire ---------------------------------------------------------------


def _describe_rule(rule: StatusRule) -> str:
    value = "" if rule.op == "is_blank" and rule.value in (None, True) else f" {rule.value!r}"
    if rule.op == "is_blank" and rule.value is False:
        value = " false"
    return f"{rule.object}.{rule.field} {rule.op}{value} -> {rule.status}"


def streamed_objects(org: OrgConfig) -> frozenset[str] | None:
    """The objects changes arrive for, or None when the topics do not say (custom names)."""
    if org.streaming.cdc:
        return frozenset(STREAMED_OBJECTS)
    found: set[str] = set()
    for topic in org.streaming.topics:
        obj = topic.rsplit("_", 1)[-1]
        if obj not in STREAMED_OBJECTS:
            return None
        found.add(obj)
    return frozenset(found)


def _reachable(streamed: frozenset[str]) -> frozenset[str]:
    out: set[str] = set()
    for trigger in streamed:
        out |= REACHABLE[trigger]
    return frozenset(out)


def check_rules(org: OrgConfig) -> list[ConfigProblem]:
    """Status rules and mappings that can never take effect."""
    receiver = org.receiver
    problems: list[ConfigProblem] = []
    rules = receiver.status_rules
    for i, later in enumerate(rules):
        for j in range(i):
            if covers(rules[j], later):
                problems.append(
                    ConfigProblem(
                        f"receiver.status_rules[{i}]",
                        f"can never fire: status_rules[{j}] ({_describe_rule(rules[j])}) "
                        f"matches whenever it ({_describe_rule(later)}) does, and the first "
                        "matching rule wins; move it above or remove it",
                    )
                )
                break
    streamed = streamed_objects(org)
    if streamed is None:
        return problems
    reachable = _reachable(streamed)
    names = ", ".join(sorted(streamed)) or "none"
    for i, rule in enumerate(rules):
        if rule.object not in reachable:
            problems.append(
                ConfigProblem(
                    f"receiver.status_rules[{i}]",
                    f"can never fire: no streamed object ({names}) is related to "
                    f"{rule.object} by the relational rules; stream {rule.object} "
                    f"(topic {TOPIC_NAMES[rule.object]}) or use a related object's field",
                )
            )
        elif rule.op == "changed_to" and rule.object not in streamed:
            problems.append(
                ConfigProblem(
                    f"receiver.status_rules[{i}]",
                    f"can never fire: changed_to compares the trigger record with its previous "
                    f"values, and {rule.object} is not streamed ({names}); stream it or use "
                    "equals",
                )
            )
    for name, ref in receiver.referral_fields.items():
        obj, _ = parse_field_ref(ref)
        if obj not in reachable:
            problems.append(
                ConfigProblem(
                    f"receiver.referral_fields.{name}",
                    f"{ref} is never available: no streamed object ({names}) has a "
                    f"relationship path to {obj} (only a converted Lead leads to the other "
                    f"objects, nothing leads to a Lead); stream {obj} or map a related field",
                )
            )
    return problems


# ---- against the org's describe --------------------------------------------------------------


def _refs(org: OrgConfig) -> Iterator[tuple[str, str, str]]:
    """(config key, object, field) for every field the receiver reads."""
    r = org.receiver
    for i, ref in enumerate(r.target_match.direct_fields):
        yield (f"receiver.target_match.direct_fields[{i}]", *parse_field_ref(ref))
    for kind in ("referral_code", "member_email", "member_external_id"):
        for i, ref in enumerate(getattr(r.member_match, kind)):
            yield (f"receiver.member_match.{kind}[{i}]", *parse_field_ref(ref))
    for name, ref in r.referral_fields.items():
        yield (f"receiver.referral_fields.{name}", *parse_field_ref(ref))
    for i, rule in enumerate(r.status_rules):
        yield (f"receiver.status_rules[{i}].field", rule.object, rule.field)


def check_against_describe(
    org: OrgConfig, describes: Mapping[str, Mapping[str, Any]]
) -> list[ConfigProblem]:
    """Problems with fields the org does not have. `describes` maps an object name to its
    sObject describe (``{"fields": [{"name", "type", "picklistValues"}, ...]}``); objects not
    in it are not checked (not connected, or not described)."""
    problems: list[ConfigProblem] = []
    fields: dict[str, dict[str, Mapping[str, Any]]] = {}
    for obj, describe in describes.items():
        fields[obj] = {str(f["name"]).lower(): f for f in describe.get("fields", [])}
    for key, obj, name in _refs(org):
        if obj not in fields:
            continue
        found = fields[obj].get(name.lower())
        if found is None:
            problems.append(
                ConfigProblem(
                    key,
                    f"{obj}.{name} does not exist on the org (or the integration user cannot "
                    "see it: check the permission set's field permissions)",
                )
            )
        elif found["name"] != name:
            problems.append(
                ConfigProblem(
                    key, f"{obj}.{name} is spelt {obj}.{found['name']} on the org; use that"
                )
            )
    for i, rule in enumerate(org.receiver.status_rules):
        found = fields.get(rule.object, {}).get(rule.field.lower())
        if not found or found.get("type") not in ("picklist", "multipicklist"):
            continue
        allowed = [p["value"] for p in found.get("picklistValues", []) if p.get("active", True)]
        values = rule.value if rule.op == "in" else [rule.value]
        if rule.op == "is_blank":
            continue
        for value in values:
            if not contains(allowed, value):
                problems.append(
                    ConfigProblem(
                        f"receiver.status_rules[{i}].value",
                        f"{value!r} is not an active value of the {rule.object}.{rule.field} "
                        f"picklist ({', '.join(map(str, allowed))})",
                    )
                )
    return problems


def check_files(org: OrgConfig) -> list[ConfigProblem]:
    """The files the org's connection reads exist (paths as the processes open them: relative
    to the directory they are started in)."""
    out = []
    for key, what in (("private_key_file", "private key"), ("ca_bundle", "CA bundle")):
        value = getattr(org, key)
        if value is None:
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            where = "" if path.is_absolute() else f" (looked in {Path.cwd()})"
            out.append(ConfigProblem(key, f"the {what} file '{value}' does not exist{where}"))
    return out


def check_config_rules(
    cfg: BridgeConfig,
    text: str,
    filename: str,
    describes: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
) -> list[Problem]:
    """``check_rules`` for every org of a validated config, with file and line; with
    `describes` (org name -> object -> describe), also ``check_against_describe``."""
    index = line_index(text)
    out: list[Problem] = []
    # A program's key names it in the store, across orgs: a second org's program of the same
    # key would be taken for the first one's.
    first: dict[str, str] = {}
    for name, org in cfg.orgs.items():
        for i, program in enumerate(getattr(org, "programs", None) or []):
            if program.key in first and first[program.key] != name:
                out.append(
                    Problem(
                        filename,
                        index.get(("orgs", name, "programs", i, "key")),
                        f"orgs.{name}.programs[{i}].key",
                        f"program key '{program.key}' is also a program of org "
                        f"'{first[program.key]}'; program keys are unique across the config",
                    )
                )
            first.setdefault(program.key, name)
    for name, org in cfg.orgs.items():
        found = check_files(org) + check_rules(org)
        if describes and name in describes:
            found += check_against_describe(org, describes[name])
        for p in found:
            steps = re.findall(r"([A-Za-z_]\w*)|\[(\d+)\]", p.key)
            path: tuple[Any, ...] = (
                "orgs",
                name,
                *(int(index) if index else part for part, index in steps),
            )
            line = None
            while path and line is None:
                line = index.get(path)
                path = path[:-1]
            out.append(Problem(filename, line, f"orgs.{name}.{p.key}", p.message))
    out.sort(key=lambda p: (p.line or 0, p.key))
    return out
