"""PushTopic planning (pure), the restrictions checked before sending, and idempotent apply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import responses

from bridge.config import OrgConfig, load_config
from bridge.errors import UsageError
from bridge.salesforce import topics
from bridge.salesforce.package import PACKAGE_API_VERSION
from bridge.vocabulary import TOPIC_NAMES
from tests.org_doubles import PushTopicTable, connected_org, register_token_endpoint

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "bridge" / "examples" / "sfbridge.example.yaml"
APEX = ROOT / "scripts" / "apex" / "create_pushtopics.apex"


def example_org() -> OrgConfig:
    return load_config(EXAMPLE).orgs["acme"]


def minimal_org(**overrides: Any) -> OrgConfig:
    data: dict[str, Any] = {
        "programs": [{"key": "p", "name": "P"}],
        "receiver": {"program": "p", "target_match": {"fuzzy": False}},
    }
    for key, value in overrides.items():
        data[key] = value
    return OrgConfig.model_validate(data)


def by_name(specs: list[topics.TopicSpec]) -> dict[str, topics.TopicSpec]:
    return {s.name: s for s in specs}


# ---- planning the topics --------------------------------------------------------------------


def test_one_topic_per_streamed_object_with_the_package_api_version() -> None:
    specs = topics.desired_topics(example_org())
    assert [(s.name, s.sobject) for s in specs] == [
        ("SFB_Lead", "Lead"),
        ("SFB_Contact", "Contact"),
        ("SFB_Account", "Account"),
        ("SFB_Opportunity", "Opportunity"),
    ]
    for spec in specs:
        record = spec.record()
        assert record["ApiVersion"] == float(PACKAGE_API_VERSION)
        assert record["NotifyForFields"] == "Referenced"
        assert all(
            record[f"NotifyForOperation{op}"] for op in ("Create", "Update", "Delete", "Undelete")
        )
        assert spec.query.startswith("SELECT Id, SystemModstamp, LastModifiedById")
        assert spec.query.endswith(f" FROM {spec.sobject}")


def test_queries_select_every_field_the_config_reads() -> None:
    specs = by_name(topics.desired_topics(example_org()))
    lead = specs["SFB_Lead"].fields
    # relational keys for converted leads, the status rule field, direct and member match
    for name in ("IsConverted", "ConvertedContactId", "ConvertedAccountId",
                 "ConvertedOpportunityId", "Status", "Referral_ID__c", "Referral_Code__c",
                 "Referring_Member_Email__c", "Referring_Member_External_ID__c",
                 "Email", "Name", "Company"):  # fmt: skip
        assert name in lead, name
    assert {"AccountId", "StageName", "Amount"} <= set(specs["SFB_Opportunity"].fields)
    assert "AccountId" in specs["SFB_Contact"].fields
    # referral_fields company: Account.Name; Account writeback reads Website and Industry
    assert {"Name", "Website", "Industry"} <= set(specs["SFB_Account"].fields)
    # `ours` mappings are only written, never read: not in the topic
    assert "MobilePhone" not in specs["SFB_Contact"].fields
    assert "Title" in specs["SFB_Contact"].fields  # read_write


def test_fields_are_not_repeated() -> None:
    for spec in topics.desired_topics(example_org()):
        assert len(spec.fields) == len(set(spec.fields)), spec.name


def test_fuzzy_matching_fields_only_when_fuzzy_is_on() -> None:
    off = by_name(topics.desired_topics(minimal_org()))
    assert "Email" not in off["SFB_Lead"].fields
    on = by_name(
        topics.desired_topics(minimal_org(receiver={"program": "p"}))  # fuzzy defaults on
    )
    assert {"Email", "Name", "Company"} <= set(on["SFB_Lead"].fields)


def test_only_the_configured_topics_are_planned() -> None:
    specs = topics.desired_topics(minimal_org(streaming={"topics": ["SFB_Opportunity"]}))
    assert [s.name for s in specs] == ["SFB_Opportunity"]


def test_unknown_topic_name_is_refused() -> None:
    with pytest.raises(UsageError, match="MyLeads: sfbridge plans only SFB_Lead"):
        topics.desired_topics(minimal_org(streaming={"topics": ["MyLeads"]}))


def test_too_long_query_is_refused_before_anything_is_sent() -> None:
    many = {f"field{i}": f"Lead.A_Rather_Long_Custom_Field_{i:03d}__c" for i in range(40)}
    org = minimal_org(receiver={"program": "p", "referral_fields": many})
    with responses.RequestsMock() as rsps:  # any HTTP call would fail the test
        with pytest.raises(UsageError) as caught:
            topics.sync_topics(connected_org(), org)
        assert len(rsps.calls) == 0
    assert "SFB_Lead: query is" in caught.value.message
    assert "the limit is 1300" in caught.value.message


# ---- the documented PushTopic restrictions --------------------------------------------------

OK = "SELECT Id, Name FROM Lead"


@pytest.mark.parametrize(
    ("name", "query", "expected"),
    [
        ("SFB_Lead", OK, None),
        ("SFB_Lead", "SELECT Id FROM Lead WHERE Status NOT IN ('Open')", None),
        ("SFB_Lead", "SELECT Id FROM Lead WHERE Company = 'NOT LIMIT ORDER BY'", None),
        ("A" * 25, OK, None),
        ("A" * 26, OK, "name is 26 characters; the limit is 25"),
        ("SFB-Lead", OK, "letters, digits and _"),
        ("SFB_Lead", "SELECT Id, Name FROM Lead LIMIT 10", "LIMIT is not allowed"),
        ("SFB_Lead", "SELECT Id, Name FROM Lead ORDER BY Name", "ORDER BY is not allowed"),
        ("SFB_Lead", "SELECT Id FROM Lead WHERE NOT Name = 'x'", "NOT is not supported"),
        ("SFB_Lead", "SELECT Id, Owner.Name FROM Lead", "relationships are not supported"),
        ("SFB_Lead", "SELECT Id, COUNT(Name) FROM Lead", "aggregate queries"),
        ("SFB_Lead", "SELECT Id, Status FROM Lead GROUP BY Status", "GROUP BY"),
        ("SFB_Lead", "SELECT Name FROM Lead", "must include Id"),
        (
            "SFB_Account",
            "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact)",
            "semi-joins",
        ),
        ("SFB_Lead", "SELECT Id, " + ", ".join(["Name"] * 300) + " FROM Lead", "limit is 1300"),
        ("SFB_Lead", "DELETE FROM Lead", "SELECT fields FROM object"),
    ],
)
def test_query_restrictions(name: str, query: str, expected: str | None) -> None:
    problems = topics.query_problems(name, query)
    if expected is None:
        assert problems == []
    else:
        assert any(expected in p for p in problems), problems


# ---- plan -----------------------------------------------------------------------------------


def _existing(spec: topics.TopicSpec, **changes: Any) -> dict[str, Any]:
    return {"Id": "0IF000000000001AAA", "Name": spec.name, **spec.record(), **changes}


SPEC = topics.TopicSpec("SFB_Lead", "Lead", ("Id", "SystemModstamp", "Email"))


@pytest.mark.parametrize(
    ("existing", "action", "changes"),
    [
        ([], "create", ()),
        ([_existing(SPEC)], "unchanged", ()),
        ([_existing(SPEC, Query="SELECT  Id,\n SystemModstamp, Email FROM Lead")], "unchanged", ()),
        ([_existing(SPEC, ApiVersion=63)], "unchanged", ()),
        ([_existing(SPEC, Query="SELECT Id FROM Lead")], "update", ("Query",)),
        ([_existing(SPEC, ApiVersion=58.0)], "update", ("ApiVersion",)),
        ([_existing(SPEC, NotifyForFields="All", IsActive=False)], "update",
         ("NotifyForFields", "IsActive")),
        ([_existing(SPEC, NotifyForOperationDelete=False)], "update",
         ("NotifyForOperationDelete",)),
        ([_existing(SPEC, Name="SFB_Contact")], "create", ()),
    ],
)  # fmt: skip
def test_plan(existing: list[dict[str, Any]], action: str, changes: tuple[str, ...]) -> None:
    [act] = topics.plan(existing, [SPEC])
    assert act.action == action
    assert act.changes == changes
    if action == "update":
        assert act.topic_id == "0IF000000000001AAA"
        assert set(act.values) == set(changes)


# ---- apply against Salesforce-shaped HTTP doubles -------------------------------------------


def test_apply_twice_creates_then_changes_nothing() -> None:
    table = PushTopicTable()
    org = example_org()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        table.register(rsps)
        first, applied = topics.sync_topics(connected_org(), org)
        assert [a.action for a in first] == ["create"] * 4
        assert [a.action for a in applied] == ["create"] * 4
        assert {r["Name"] for r in table.records.values()} == set(TOPIC_NAMES.values())
        writes = len(table.writes)
        second, _ = topics.sync_topics(connected_org(), org)
        assert [a.action for a in second] == ["unchanged"] * 4
        assert len(table.writes) == writes  # nothing sent the second time


def test_apply_updates_only_what_differs() -> None:
    table = PushTopicTable()
    spec = by_name(topics.desired_topics(example_org()))["SFB_Opportunity"]
    stale = table.add(**{**spec.record(), "Name": spec.name, "Query": "SELECT Id FROM Opportunity"})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        table.register(rsps)
        actions, _ = topics.sync_topics(connected_org(), example_org())
    assert {a.spec.name: a.action for a in actions}["SFB_Opportunity"] == "update"
    updates = [w for kind, w in table.writes if kind == "update"]
    assert updates == [{"Id": stale, "Query": spec.query}]


def test_dry_run_sends_no_writes() -> None:
    table = PushTopicTable()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        table.register(rsps)
        actions, applied = topics.sync_topics(connected_org(), example_org(), dry_run=True)
    assert [a.action for a in actions] == ["create"] * 4
    assert applied == [] and table.writes == []


# ---- anonymous Apex -------------------------------------------------------------------------


def test_apex_script_matches_the_planned_topics_for_the_example_config() -> None:
    expected = topics.apex_script(topics.desired_topics(example_org()))
    assert APEX.read_text() == expected, (
        "scripts/apex/create_pushtopics.apex is stale: regenerate it with "
        "`SFBRIDGE_CONFIG=bridge/examples/sfbridge.example.yaml "
        "sfbridge org topics acme --apex > scripts/apex/create_pushtopics.apex`"
    )
    for spec in topics.desired_topics(example_org()):
        assert f"Name = '{spec.name}'" in expected
        assert f"Query = '{spec.query}'" in expected


def test_apex_strings_are_escaped() -> None:
    spec = topics.TopicSpec("SFB_Lead", "Lead", ("Id",))
    script = topics.apex_script([spec])
    assert "Description = 'sfbridge: changes to Lead records" in script
    assert topics._apex_string("it's \\ done") == "'it\\'s \\\\ done'"


# ---- CLI ------------------------------------------------------------------------------------


def test_cli_prints_apex_without_connecting(runner: Any) -> None:
    from bridge.cli import main

    result = runner.invoke(
        main, ["org", "topics", "acme", "--apex"], env={"SFBRIDGE_CONFIG": str(EXAMPLE)}
    )
    assert result.exit_code == 0, result.output
    assert result.output == APEX.read_text()


def test_cli_unknown_org(runner: Any) -> None:
    from bridge.cli import main

    result = runner.invoke(main, ["org", "topics", "nope"], env={"SFBRIDGE_CONFIG": str(EXAMPLE)})
    assert result.exit_code == 1
    assert "org 'nope' is not in the config file" in result.output


def test_apply_repeats_with_the_new_session_after_re_authentication() -> None:
    table = PushTopicTable(live_tokens={"00D000000000001!first"})
    org = connected_org("00D000000000001!first")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        table.register(rsps)
        register_token_endpoint(rsps, "00D000000000001!second")
        actions = topics.plan(
            topics.fetch_existing(org, ["SFB_Lead"]), topics.desired_topics(example_org())[:1]
        )
        table.live_tokens = {"00D000000000001!second"}  # the session expires now
        applied = topics.apply(actions, org)
    assert [a.action for a in applied] == ["create"]
    assert table.tokens_seen[-2:] == ["00D000000000001!first", "00D000000000001!second"]
    assert [w[1]["Name"] for w in table.writes] == ["SFB_Lead"]
