"""Receiver config checks: relationship paths, rules that can never fire, fields the org lacks."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.config import OrgConfig, StatusRule, check_config_text
from bridge.receiver.configcheck import check_against_describe, check_rules
from bridge.values import covers


def org(**receiver: Any) -> OrgConfig:
    streaming = receiver.pop("streaming", {})
    return OrgConfig.model_validate(
        {
            "programs": [{"key": "main", "name": "Main"}],
            "receiver": {"program": "main", **receiver},
            "streaming": streaming,
        }
    )


def rule(status: str, ref: str, op: str, value: Any = None) -> dict[str, Any]:
    obj, fld = ref.split(".")
    out: dict[str, Any] = {"status": status, "object": obj, "field": fld, "op": op}
    if value is not None:
        out["value"] = value
    return out


CONFIG = """\
orgs:
  acme:
    programs:
      - {key: main, name: Main}
    receiver:
      program: main
      referral_fields:
        deal: Opportunity.Amount
        company: Contact.Account.Name
      target_match:
        direct_fields: [Lead.Referral_ID__c, Contact.Account.Referral_ID__c]
      status_rules:
        - {status: approved, object: Opportunity, field: Account.Type, op: equals, value: x}
"""


@pytest.mark.parametrize(
    ("line", "key", "text"),
    [
        (
            9,
            "orgs.acme.receiver.referral_fields.company",
            "'Contact.Account.Name' is a relationship path; name the related object directly, "
            "e.g. 'Account.Name'",
        ),
        (
            11,
            "orgs.acme.receiver.target_match.direct_fields[1]",
            "'Contact.Account.Referral_ID__c' is a relationship path",
        ),
        (
            13,
            "orgs.acme.receiver.status_rules[0].field",
            "set the rule's object to it (e.g. object: Account, field: Type)",
        ),
    ],
)
def test_relationship_paths_are_rejected_with_a_clear_message(
    line: int, key: str, text: str
) -> None:
    cfg, problems = check_config_text(CONFIG, "bridge.yaml")
    assert cfg is None
    found = {p.key: p for p in problems}
    assert found[key].line == line
    assert text in found[key].message
    assert str(found[key]).startswith(f"bridge.yaml:{line}: {key}: ")


@pytest.mark.parametrize(
    ("earlier", "later", "shadowed"),
    [
        (rule("approved", "Opportunity.StageName", "equals", "Won"),
         rule("approved", "Opportunity.StageName", "equals", "won"), True),
        (rule("approved", "Opportunity.StageName", "in", ["Won", "Closed Won"]),
         rule("qualified", "Opportunity.StageName", "equals", "Won"), True),
        (rule("approved", "Opportunity.StageName", "in", ["Won"]),
         rule("qualified", "Opportunity.StageName", "in", ["Won", "Lost"]), False),
        (rule("denied", "Opportunity.StageName", "not_equals", "Won"),
         rule("qualified", "Opportunity.StageName", "equals", "Lost"), True),
        (rule("denied", "Opportunity.StageName", "not_equals", "Won"),
         rule("approved", "Opportunity.StageName", "equals", "Won"), False),
        (rule("denied", "Opportunity.StageName", "not_equals", "Won"),
         rule("pending", "Opportunity.StageName", "is_blank"), True),
        (rule("approved", "Opportunity.StageName", "equals", "Won"),
         rule("approved", "Opportunity.StageName", "changed_to", "Won"), True),
        (rule("approved", "Opportunity.StageName", "changed_to", "Won"),
         rule("approved", "Opportunity.StageName", "equals", "Won"), False),
        (rule("pending", "Opportunity.StageName", "is_blank", False),
         rule("approved", "Opportunity.StageName", "equals", "Won"), True),
        (rule("pending", "Opportunity.StageName", "is_blank"),
         rule("approved", "Opportunity.StageName", "equals", "Won"), False),
        (rule("approved", "Opportunity.StageName", "equals", "Won"),
         rule("approved", "Opportunity.Type", "equals", "Won"), False),  # another field
    ],
)  # fmt: skip
def test_rule_that_can_never_fire(
    earlier: dict[str, Any], later: dict[str, Any], shadowed: bool
) -> None:
    assert covers(StatusRule(**earlier), StatusRule(**later)) is shadowed
    if earlier["status"] != later["status"]:
        # A different status makes the pair a contradiction: the config itself is refused.
        _, problems = check_config_text(_config_with_rules([earlier, later]), "c.yaml")
        assert any("contradicts status_rules[0]" in str(p) for p in problems) is shadowed
        return
    problems = check_rules(org(status_rules=[earlier, later]))
    keys = [p.key for p in problems]
    assert ("receiver.status_rules[1]" in keys) is shadowed
    if shadowed:
        assert "can never fire: status_rules[0]" in problems[0].message


def _config_with_rules(rules: list[dict[str, Any]]) -> str:
    import yaml

    return yaml.safe_dump(
        {"orgs": {"acme": {"programs": [{"key": "main", "name": "Main"}],
                           "receiver": {"program": "main", "status_rules": rules}}}}
    )  # fmt: skip


def test_contradiction_compares_values_as_the_rules_do() -> None:
    # Rules compare trimmed and case-insensitively, so "closed won " is the same condition as
    # "Closed Won": with another status the pair contradicts itself and the config is refused.
    text = _config_with_rules(
        [
            rule("approved", "Opportunity.StageName", "equals", "Closed Won"),
            rule("denied", "Opportunity.StageName", "equals", "closed won "),
        ]
    )
    _, problems = check_config_text(text, "c.yaml")
    assert any("contradicts status_rules[0]" in str(p) for p in problems), problems


def test_objects_no_streamed_object_leads_to() -> None:
    cfg = org(
        streaming={"topics": ["SFB_Account", "SFB_Opportunity"]},
        status_rules=[
            rule("qualified", "Lead.Status", "equals", "Qualified"),
            rule("approved", "Contact.Stage__c", "changed_to", "Won"),
            rule("approved", "Opportunity.StageName", "changed_to", "Closed Won"),
        ],
        referral_fields={"source": "Lead.LeadSource", "amount": "Opportunity.Amount"},
    )
    problems = {p.key: p.message for p in check_rules(cfg)}
    assert set(problems) == {
        "receiver.status_rules[0]",
        "receiver.status_rules[1]",
        "receiver.referral_fields.source",
    }
    assert (
        "no streamed object (Account, Opportunity) is related to Lead"
        in problems["receiver.status_rules[0]"]
    )
    assert "changed_to" in problems["receiver.status_rules[1]"]
    assert "Lead.LeadSource is never available" in problems["receiver.referral_fields.source"]
    # Streaming Leads too makes every rule reachable.
    all_topics = {"topics": ["SFB_Lead", "SFB_Contact", "SFB_Account", "SFB_Opportunity"]}
    cfg = org(streaming=all_topics, referral_fields={"source": "Lead.LeadSource"})
    assert check_rules(cfg) == []


DESCRIBES = {
    "Lead": {
        "fields": [
            {"name": "Id", "type": "id"},
            {"name": "Email", "type": "email"},
            {"name": "Referral_ID__c", "type": "string"},
            {"name": "Referral_Code__c", "type": "string"},
            {"name": "Referring_Member_Email__c", "type": "email"},
            {"name": "Referring_Member_External_ID__c", "type": "string"},
            {
                "name": "Status",
                "type": "picklist",
                "picklistValues": [
                    {"value": "Open", "active": True},
                    {"value": "Qualified", "active": True},
                    {"value": "Old", "active": False},
                ],
            },
        ]
    }
}


def test_fields_checked_against_the_org_describe() -> None:
    cfg = org(
        status_rules=[
            rule("qualified", "Lead.Status", "in", ["qualified", "Old"]),
            rule("approved", "Contact.Anything__c", "equals", "x"),  # Contact not described
        ],
        referral_fields={"email": "Lead.email", "score": "Lead.Score__c"},
    )
    problems = {p.key: p.message for p in check_against_describe(cfg, DESCRIBES)}
    assert problems == {
        "receiver.referral_fields.email": "Lead.email is spelt Lead.Email on the org; use that",
        "receiver.referral_fields.score": "Lead.Score__c does not exist on the org (or the "
        "integration user cannot see it: check the permission set's field permissions)",
        "receiver.status_rules[0].value": "'Old' is not an active value of the Lead.Status "
        "picklist (Open, Qualified)",
    }


def test_config_check_command_reports_rules_that_never_fire(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            orgs:
              acme:
                programs:
                  - {key: main, name: Main}
                receiver:
                  program: main
                  status_rules:
                    - {status: approved, object: Opportunity, field: StageName, op: in,
                       value: [Won, Closed Won]}
                    - {status: approved, object: Opportunity, field: StageName, op: equals,
                       value: Won}
            """
        )
    )
    result = runner.invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:10: orgs.acme.receiver.status_rules[1]: can never fire" in result.output
