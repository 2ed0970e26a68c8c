"""`sfbridge org check`: pure comparisons of describe results with the config, and the command."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import responses

from bridge.config import OrgConfig, load_config
from bridge.salesforce import check, topics
from bridge.vocabulary import TOPIC_NAMES
from tests.org_doubles import (
    PushTopicTable,
    connected_org,
    healthy_describes,
    picklist,
    register_describes,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "bridge" / "examples" / "sfbridge.example.yaml"

Describes = dict[str, Any]


def example_org(**changes: Any) -> OrgConfig:
    org = load_config(EXAMPLE).orgs["acme"]
    if not changes:
        return org
    data = org.model_dump()
    for dotted, value in changes.items():
        target = data
        *path, last = dotted.split(".")
        for key in path:
            target = target[key]
        target[last] = value
    return OrgConfig.model_validate(data)


def all_topics_current(org: OrgConfig) -> list[dict[str, Any]]:
    return [
        {"Id": f"0IF{i:015d}", "Name": t.name, **t.record()}
        for i, t in enumerate(topics.desired_topics(org))
    ]


def findings_for(describes: Describes, org: OrgConfig | None = None) -> list[check.Finding]:
    org = org or example_org()
    return check.check_describes("acme", org, describes, all_topics_current(org))


def issues(findings: list[check.Finding]) -> list[tuple[str, str, str]]:
    return [(f.check, f.subject, f.reason) for f in findings if f.status == "Issue"]


def test_healthy_org_has_no_issues() -> None:
    findings = findings_for(healthy_describes())
    assert issues(findings) == []
    by_check = {c: sum(1 for f in findings if f.check == c) for c in {f.check for f in findings}}
    assert by_check["package field"] == 26  # 12 on Lead, 12 on Contact, 1 on Task, 1 on Event
    assert by_check["topic"] == 4
    assert by_check["mapping"] == len(check.field_uses(example_org()))
    assert not check.has_issues(findings)


def test_every_field_the_config_names_gets_a_mapping_status() -> None:
    uses = check.field_uses(example_org())
    wheres = {u.where for u in uses}
    assert "receiver.status_rules[0]" in wheres
    assert "receiver.referral_fields.company" in wheres
    assert "writeback.activities.kinds.meeting.static.Type" in wheres
    assert "writeback.referral_add.member_fields.name" in wheres
    assert "writeback.referral_add.field_mappings.website" in wheres
    assert "writeback.objects.Contact.fields[0]" in wheres
    # a mapping to two Salesforce fields is checked once per field
    phone = [u.field for u in uses if u.where == "writeback.objects.Contact.fields[0]"]
    assert phone == ["Phone", "MobilePhone"]


def _drop(obj: str, name: str) -> Callable[[Describes], None]:
    def mutate(d: Describes) -> None:
        d[obj]["fields"] = [f for f in d[obj]["fields"] if f["name"] != name]

    return mutate


def _set(obj: str, name: str, **values: Any) -> Callable[[Describes], None]:
    def mutate(d: Describes) -> None:
        for f in d[obj]["fields"]:
            if f["name"] == name:
                f.update(values)

    return mutate


def _replace(obj: str, new_field: dict[str, Any]) -> Callable[[Describes], None]:
    def mutate(d: Describes) -> None:
        d[obj]["fields"] = [f for f in d[obj]["fields"] if f["name"] != new_field["name"]]
        d[obj]["fields"].append(new_field)

    return mutate


def _object(obj: str, **flags: Any) -> Callable[[Describes], None]:
    def mutate(d: Describes) -> None:
        d[obj].update(flags)

    return mutate


def _undescribable(obj: str) -> Callable[[Describes], None]:
    def mutate(d: Describes) -> None:
        d[obj] = "NOT_FOUND: The requested resource does not exist"

    return mutate


STAGES = ["Prospecting", "Closed Won", "Closed Lost"]

CASES: list[tuple[str, Callable[[Describes], None], list[tuple[str, str, str]]]] = [
    (
        "package not deployed on Lead",
        _drop("Lead", "Referral_ID__c"),
        [
            ("package field", "Lead.Referral_ID__c", "not found: deploy the package"),
            ("mapping", "receiver.target_match.direct_fields[0]: Lead.Referral_ID__c",
             "not found: the field does not exist, or the integration user cannot see it"),
            ("topic", "SFB_Lead", "selects fields the org does not show: Referral_ID__c"),
        ],
    ),
    (
        "status rule value is not a picklist value",
        _replace("Opportunity", picklist("StageName", ["Prospecting", "Won", "Closed Lost"])),
        [
            ("mapping", "receiver.status_rules[0]: Opportunity.StageName",
             "'Closed Won' is not an active value of the picklist (active values: "
             "Prospecting, Won, Closed Lost)"),
        ],
    ),
    (
        "status rule value is an inactive picklist value",
        _replace("Opportunity", picklist("StageName", ["Prospecting", "Closed Lost"],
                                         inactive=("Closed Won",))),
        [("mapping", "receiver.status_rules[0]: Opportunity.StageName",
          "'Closed Won' is not an active value")],
    ),
    (
        "one value of an `in` rule is unknown",
        _replace("Lead", picklist("Status", ["Open - Not Contacted", "Working - Contacted",
                                             "Closed - Not Converted"])),
        [("mapping", "receiver.status_rules[2]: Lead.Status",
          "'Closed - Converted' is not an active value")],
    ),
    (
        "id field of the wrong type",
        _set("Contact", "Referral_ID__c", type="boolean"),
        [
            ("package field", "Contact.Referral_ID__c", "is a boolean field; the package defines"),
            ("mapping", "receiver.target_match.direct_fields[1]: Contact.Referral_ID__c",
             "is a boolean field; it holds an id or code the bridge matches on, so it must be a "
             "text field"),
        ],
    ),
    (
        "member email field of the wrong type",
        _set("Lead", "Referring_Member_Email__c", type="date"),
        [("mapping", "receiver.member_match.member_email[0]: Lead.Referring_Member_Email__c",
          "must be an email or text field")],
    ),
    (
        "activity static picklist value missing",
        _replace("Task", picklist("Type", ["Call", "Meeting", "Other"])),
        [("mapping", "writeback.activities.kinds.email.static.Type: Task.Type",
          "'Email' is not an active value")],
    ),
    (
        "activity id field not an external id",
        _set("Event", "SFBridge_Activity_Id__c", externalId=False),
        [("package field", "Event.SFBridge_Activity_Id__c", "is not an External ID")],
    ),
    (
        "field the bridge writes is read-only",
        _set("Contact", "Title", updateable=False),
        [("mapping", "writeback.objects.Contact.fields[1]: Contact.Title",
          "is read-only for the integration user (it is written by the bridge)")],
    ),
    (
        "field set on new Leads cannot be created",
        _set("Lead", "Referring_Member_Code__c", createable=False),
        [("mapping", "writeback.referral_add.member_fields.referral_code: "
          "Lead.Referring_Member_Code__c", "cannot be set on new records")],
    ),
    (
        "no create access on Lead",
        _object("Lead", createable=False),
        [("object", "Lead", "cannot create Lead records")],
    ),
    (
        "object cannot be described",
        _undescribable("Opportunity"),
        [
            ("object", "Opportunity", "cannot describe Opportunity: NOT_FOUND"),
            ("mapping", "receiver.referral_fields.amount: Opportunity.Amount",
             "Opportunity could not be described"),
        ],
    ),
    (
        "static text longer than the field",
        _set("Task", "Subject", length=10),
        [("mapping", "writeback.activities.kinds.linkedin_message.static.Subject: Task.Subject",
          "is longer than the field's 10 characters")],
    ),
    (
        "root-domain dedupe without a readable Website",
        _drop("Account", "Website"),
        [("mapping", "writeback.objects.Account.dedupe: Account.Website", "not found")],
    ),
    (
        "activities cannot name who they are about",
        _set("Event", "WhoId", createable=False),
        [("mapping", "writeback.activities: Event.WhoId", "cannot be set on new records")],
    ),
    (
        "fuzzy matching cannot read the Lead's email",
        _drop("Lead", "Email"),
        [
            ("mapping", "receiver.target_match.fuzzy: Lead.Email", "not found"),
            ("mapping", "writeback.activities.lead_resolution: Lead.Email", "not found"),
        ],
    ),
    (
        "topic selects a compound field",
        _set("Account", "Website", type="address"),
        [("topic", "SFB_Account", "selects compound fields Website")],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_problem_is_reported_with_its_reason(
    mutate: Callable[[Describes], None], expected: list[tuple[str, str, str]]
) -> None:
    describes = copy.deepcopy(healthy_describes())
    mutate(describes)
    found = issues(findings_for(describes))
    for kind, subject, reason in expected:
        assert any(f[0] == kind and f[1] == subject and reason in f[2] for f in found), (
            f"expected {kind} {subject}: {reason}\nfound: {found}"
        )


@pytest.mark.parametrize(
    ("changes", "subject", "reason"),
    [
        (
            {"receiver.referral_fields": {"where": "Lead.Address"}},
            "receiver.referral_fields.where: Lead.Address",
            "is a compound address field",
        ),
        (
            {"receiver.status_rules": [
                {"status": "approved", "object": "Lead", "field": "IsConverted",
                 "op": "equals", "value": "yes"}]},
            "receiver.status_rules[0]: Lead.IsConverted",
            "'yes' is not true or false",
        ),
        (
            {"receiver.status_rules": [
                {"status": "approved", "object": "Opportunity", "field": "Amount",
                 "op": "equals", "value": "lots"}]},
            "receiver.status_rules[0]: Opportunity.Amount",
            "'lots' is not a number",
        ),
        (
            {"receiver.status_rules": [
                {"status": "approved", "object": "Opportunity", "field": "Stage",
                 "op": "equals", "value": "Closed Won"}]},
            "receiver.status_rules[0]: Opportunity.Stage",
            "not found",
        ),
    ],
)  # fmt: skip
def test_config_side_problems(changes: dict[str, Any], subject: str, reason: str) -> None:
    found = issues(findings_for(healthy_describes(), example_org(**changes)))
    assert any(f[1] == subject and reason in f[2] for f in found), found


def test_is_blank_rules_compare_no_values() -> None:
    org = example_org(
        **{"receiver.status_rules": [
            {"status": "pending", "object": "Opportunity", "field": "StageName", "op": "is_blank"}
        ]}
    )  # fmt: skip
    assert issues(findings_for(healthy_describes(), org)) == []


@pytest.mark.parametrize(
    ("existing", "reason"),
    [
        (lambda org: [], "missing in the org; run `sfbridge org topics acme --apply`"),
        (
            lambda org: [{**t, "Query": "SELECT Id FROM Lead"} if t["Name"] == "SFB_Lead" else t
                         for t in all_topics_current(org)],
            "differs in Query; run `sfbridge org topics acme --apply`",
        ),
        (
            lambda org: [{**t, "IsActive": False} if t["Name"] == "SFB_Lead" else t
                         for t in all_topics_current(org)],
            "differs in IsActive",
        ),
    ],
)  # fmt: skip
def test_topics_present_and_matching(
    existing: Callable[[OrgConfig], list[dict[str, Any]]], reason: str
) -> None:
    org = example_org()
    found = issues(check.check_describes("acme", org, healthy_describes(), existing(org)))
    assert any(k == "topic" and s == "SFB_Lead" and reason in r for k, s, r in found), found
    assert not any(k == "topic" and s != "SFB_Lead" for k, s, _ in found if existing(org)), found


def test_unreadable_topics_are_an_issue() -> None:
    org = example_org()
    found = issues(check.check_describes("acme", org, healthy_describes(), None))
    assert [s for k, s, _ in found if k == "topic"] == list(TOPIC_NAMES.values())


def test_findings_table() -> None:
    findings = [
        check.ok("object", "Lead", "read"),
        check.issue("mapping", "receiver.status_rules[0]: Opportunity.StageName", "bad value"),
    ]
    text = check.format_findings(findings)
    lines = text.splitlines()
    assert lines[0].split() == ["Check", "Subject", "Status", "Reason"]
    assert "Issue" in lines[3] and "bad value" in lines[3]
    assert text.endswith("2 checks: 1 Ok, 1 Issue(s)")


# ---- against Salesforce-shaped HTTP doubles -------------------------------------------------


def test_run_check_over_http() -> None:
    org = example_org()
    table = PushTopicTable()
    for rec in all_topics_current(org):
        table.add(**{k: v for k, v in rec.items() if k != "Id"})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        register_describes(rsps, healthy_describes())
        table.register(rsps)
        findings = check.run_check(connected_org(), "acme", org)
    assert issues(findings) == []


def test_run_check_reports_an_object_it_cannot_describe() -> None:
    org = example_org()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        register_describes(rsps, healthy_describes(), missing=("Event",))
        PushTopicTable().register(rsps)
        findings = check.run_check(connected_org(), "acme", org)
    found = issues(findings)
    assert ("object", "Event", "cannot describe Event: NOT_FOUND: The requested resource does "
            "not exist") in found  # fmt: skip
    assert (
        "package field",
        "Event.SFBridge_Activity_Id__c",
        "Event could not be described",
    ) in found
    assert {s for k, s, _ in found if k == "topic"} == set(TOPIC_NAMES.values())


def test_cli_exits_non_zero_on_issues(runner: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge import cli

    monkeypatch.setattr(cli, "_open_org", lambda rt, name, cfg: connected_org())
    env = {"SFBRIDGE_CONFIG": str(EXAMPLE)}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        register_describes(rsps, healthy_describes())
        table = PushTopicTable()
        table.register(rsps)
        result = runner.invoke(cli.main, ["org", "check", "acme"], env=env)
        assert result.exit_code == 1, result.output
        assert "SFB_Lead" in result.output and "missing in the org" in result.output
        assert result.output.rstrip().endswith("Issue(s)")

        applied = runner.invoke(cli.main, ["org", "topics", "acme", "--apply"], env=env)
        assert applied.exit_code == 0, applied.output
        assert "applied: created SFB_Lead, created SFB_Contact" in applied.output

        again = runner.invoke(cli.main, ["org", "check", "acme"], env=env)
        assert again.exit_code == 0, again.output
        assert ", 0 Issue(s)" in again.output


def test_static_values_of_written_objects_are_checked_like_activity_ones() -> None:
    org = example_org(**{"writeback.static": {"Lead": {"LeadSource": "Partner Referral"}}})
    assert "writeback.static.Lead.LeadSource" in {u.where for u in check.field_uses(org)}
    describes = healthy_describes()
    _replace("Lead", picklist("LeadSource", ["Web", "Phone Inquiry"]))(describes)
    assert issues(findings_for(describes, org)) == [
        ("mapping", "writeback.static.Lead.LeadSource: Lead.LeadSource",
         "Lead.LeadSource 'Partner Referral' is not an active value of the picklist (active "
         "values: Web, Phone Inquiry)"),
    ]  # fmt: skip


def test_a_mapped_formula_field_is_an_issue_with_the_remedy() -> None:
    org = example_org()
    read = next(u for u in check.field_uses(org) if u.role == "read" and u.sobject == "Lead")
    describes = healthy_describes()
    _set(read.sobject, read.field, calculated=True, updateable=False, createable=False)(describes)
    found = [
        reason
        for _check, subject, reason in issues(findings_for(describes, org))
        if subject.endswith(f"{read.sobject}.{read.field}")
    ]
    assert found, issues(findings_for(describes, org))
    assert all("formula field" in r and "Flow" in r and "value_check" in r for r in found)
    # a plain field of the same name is Ok
    assert not [i for i in issues(findings_for(healthy_describes(), org)) if read.field in i[1]]
