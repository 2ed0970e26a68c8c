"""Phase sync's pure rules: the picklist write of a local phase, Salesforce's changes taken or
refused, the end of a sales cycle, the org check of the picklist, and the config's checks."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.config import SELLFIRE_PHASES, check_config_text
from bridge.writeback import phases
from tests.factories import org_config

NAMED = {"ColdCallCold": "Cold call", "Resting": "Resting", "HeldPhase": "Held",
         "Retired": "Retired", "Customer": "Customer"}  # fmt: skip


def org(**sync: Any) -> Any:
    return org_config(writeback={"sales": {"phases": sync}})


DEFAULTS = org()
MAPPED = org(names=NAMED, inbound=["ColdCallCold", "Resting", "Customer"],
             end_cycle=["Resting", "Retired"], field={"Lead": "Phase__c"})  # fmt: skip


def test_the_defaults_are_sellfires_phases_sent_as_themselves() -> None:
    cfg = phases.config(DEFAULTS)
    assert cfg is not None
    assert list(cfg.names) == list(SELLFIRE_PHASES) and len(SELLFIRE_PHASES) == 14
    assert all(k == v for k, v in cfg.names.items())
    assert cfg.inbound == ["ColdCallCold", "Resting", "LongResting", "Retired", "Customer"]
    assert cfg.field == {"Lead": "Sales_Phase__c", "Contact": "Sales_Phase__c"}
    assert phases.config(org_config()) is None  # off unless configured


@pytest.mark.parametrize(
    ("cfg", "sobject", "changed", "writes"),
    [
        (DEFAULTS, "Lead", {"phase": "HeldPhase"}, {"Sales_Phase__c": "HeldPhase"}),
        (DEFAULTS, "Contact", {"phase": "Retired"}, {"Sales_Phase__c": "Retired"}),
        (MAPPED, "Lead", {"phase": "ColdCallCold"}, {"Phase__c": "Cold call"}),
        (MAPPED, "Contact", {"phase": "ColdCallCold"}, {}),  # no field mapped on Contact
        (DEFAULTS, "Account", {"phase": "Retired"}, {}),
        (DEFAULTS, "Lead", {"company": "X"}, {}),  # the phase did not change
        (DEFAULTS, "Lead", {"phase": None}, {}),  # a cleared phase never clears Salesforce's
        (org_config(), "Lead", {"phase": "Retired"}, {}),  # phase sync off
    ],
)
def test_outbound_writes_the_picklist_value(
    cfg: Any, sobject: str, changed: dict[str, Any], writes: dict[str, Any]
) -> None:
    assert phases.outbound(cfg, sobject, changed) == writes


F = "Sales_Phase__c"


@pytest.mark.parametrize(
    ("cfg", "record", "before", "local", "expect"),
    [
        # allowed inbound phases are taken
        (DEFAULTS, {F: "Resting"}, {F: "HeldPhase"}, "HeldPhase", (True, "Resting")),
        (DEFAULTS, {F: "Customer"}, {}, None, (True, "Customer")),
        (DEFAULTS, {F: "ColdCallCold"}, {F: "Retired"}, "Retired", (True, "ColdCallCold")),
        (DEFAULTS, {F: "LongResting"}, {}, "PostHoldPhase", (True, "LongResting")),
        (MAPPED, {"Phase__c": "Cold call"}, {}, "HeldPhase", (True, "ColdCallCold")),
        # other phases are refused, and the phase stays
        (DEFAULTS, {F: "HeldPhase"}, {F: "Resting"}, "Resting", (False, "HeldPhase")),
        (DEFAULTS, {F: "ColdCallDM"}, {}, None, (False, "ColdCallDM")),
        (MAPPED, {"Phase__c": "Held"}, {}, "Customer", (False, "HeldPhase")),
        (DEFAULTS, {F: "Bogus"}, {}, "HeldPhase", (False, None)),  # no phase at all
        # no change: ours already, as last seen, blank, not read, or another object
        (DEFAULTS, {F: "HeldPhase"}, {}, "HeldPhase", None),
        (MAPPED, {"Phase__c": "Held"}, {}, "HeldPhase", None),
        (DEFAULTS, {F: "HeldPhase"}, {F: "HeldPhase"}, "Resting", None),
        (DEFAULTS, {F: None}, {F: "Resting"}, "Resting", None),
        (DEFAULTS, {"Company": "X"}, {}, "Resting", None),
        (org_config(), {F: "Resting"}, {}, "HeldPhase", None),
    ],
)
def test_inbound_takes_only_allowed_phases(
    cfg: Any, record: dict[str, Any], before: dict[str, Any], local: str | None, expect: Any
) -> None:
    change = phases.inbound(cfg, "Lead", record, before, local)
    if expect is None:
        assert change is None
        return
    assert change is not None
    assert (change.accepted, change.phase) == expect
    assert change.reason


def test_a_refusal_says_why_in_words() -> None:
    change = phases.inbound(DEFAULTS, "Contact", {F: "HeldPhase"}, {}, "Resting")
    assert change is not None and not change.accepted
    assert change.reason == (
        "HeldPhase is not a phase Salesforce may set (inbound: ColdCallCold, Resting, "
        "LongResting, Retired, Customer); the phase stays Resting"
    )
    unknown = phases.inbound(DEFAULTS, "Lead", {F: "Bogus"}, {}, None)
    assert unknown is not None and "'Bogus' is no phase" in unknown.reason


@pytest.mark.parametrize(
    ("old", "new", "ends"),
    [
        ("HeldPhase", "Resting", True),
        ("PostHoldPhase", "Retired", True),
        ("ColdCallDM", "RetiredColdCall", True),
        (None, "LongResting", True),
        ("Resting", "LongResting", False),  # already resting: the same ended cycle
        ("Resting", "ColdCallCold", False),
        ("HeldPhase", "Customer", False),
    ],
)
def test_resting_and_retired_phases_end_the_cycle(old: str | None, new: str, ends: bool) -> None:
    assert phases.ends_cycle(DEFAULTS, old, new) is ends


def picklist(*values: str, kind: str = "picklist", name: str = F) -> dict[str, Any]:
    return {
        "fields": [
            {"name": name, "type": kind,
             "picklistValues": [{"value": v, "active": True} for v in values]}
        ]
    }  # fmt: skip


def test_org_check_finds_a_missing_phase_value() -> None:
    complete = picklist(*SELLFIRE_PHASES)
    lacking = picklist(*[p for p in SELLFIRE_PHASES if p not in ("HeldPhase", "Customer")])
    found = phases.missing_values(DEFAULTS, {"Lead": complete, "Contact": lacking})
    assert found == [
        ("Lead.Sales_Phase__c", None),
        ("Contact.Sales_Phase__c", "the picklist lacks phase value(s): HeldPhase, Customer"),
    ]
    text = phases.missing_values(DEFAULTS, {"Lead": picklist(kind="string"), "Contact": {}})
    assert text == [
        ("Lead.Sales_Phase__c", "is a string field, not a picklist"),
        (
            "Contact.Sales_Phase__c",
            "not found: deploy the package (Sales_Phase__c) or name the field",
        ),
    ]
    assert phases.missing_values(org_config(), {"Lead": lacking}) == []


def test_unknown_phases_are_named() -> None:
    assert phases.unknown_phase(DEFAULTS, "Resting") is None
    assert "'Nope' is not a phase" in str(phases.unknown_phase(DEFAULTS, "Nope"))
    assert "off" in str(phases.unknown_phase(org_config(), "Resting"))


CONFIG = """orgs:
  acme:
    programs: [{key: main, name: Main}]
    receiver: {program: main}
    writeback:
      sales:
        phases:
          field: {Lead: Sales_Phase__c, Account: Phase__c}
          names: {A: One, B: One}
          inbound: [A, Nowhere]
"""


def test_config_problems_name_file_line_and_key() -> None:
    _cfg, problems = check_config_text(CONFIG, "sfbridge.yaml")
    assert [str(p) for p in problems] == [
        "sfbridge.yaml:8: orgs.acme.writeback.sales.phases.field.Account.[key]: found "
        "'Account'; allowed: 'Lead' or 'Contact'",
        "sfbridge.yaml:9: orgs.acme.writeback.sales.phases.names: picklist value(s) One name "
        "more than one phase",
    ]
    fixed = CONFIG.replace(", Account: Phase__c", "").replace("B: One", "B: Two")
    _cfg, problems = check_config_text(fixed, "sfbridge.yaml")
    assert [str(p) for p in problems] == [
        "sfbridge.yaml:10: orgs.acme.writeback.sales.phases.inbound: Nowhere not among the "
        "phase names (A, B)"
    ]


def test_a_names_list_sends_each_phase_as_itself() -> None:
    cfg = phases.config(org(names=["Cold", "Warm"], inbound=["Cold"], end_cycle=[]))
    assert cfg is not None and cfg.names == {"Cold": "Cold", "Warm": "Warm"}
