"""`sfbridge config check`: the example config passes; mistakes are reported with line and key."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.cli import main
from bridge.config import check_config_text

EXAMPLE = Path(__file__).resolve().parent.parent / "bridge" / "examples" / "sfbridge.example.yaml"

FIVE_MISTAKES = """\
orgs:
  acme:
    login_url: http://login.salesforce.com
    programs:
      - {key: partners, name: Partners}
    receiver:
      program: partners
      status_rules:
        - {status: won, object: Opportunity, field: StageName, op: equals, value: Closed Won}
      referral_fields:
        company: Contact.Account.Name
      target_match:
        fuzzy_threshold: 2
    polling:
      evrey: 60
"""


def line_of(text: str, marker: str) -> int:
    [number] = [i for i, line in enumerate(text.splitlines(), 1) if marker in line]
    return number


def test_example_config_passes(
    runner: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where the processes run: the key file is read from there
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "acme-jwt.key").write_text("a key")
    result = runner.invoke(main, ["config", "check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "OK (1 org(s): acme)" in result.output


def test_example_config_covers_every_section() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    org = data["orgs"]["acme"]
    assert set(org) >= {"login_url", "client_id", "username", "private_key_file", "api_version",
                        "programs", "receiver", "writeback", "streaming", "polling"}  # fmt: skip
    assert set(org["receiver"]) == {"program", "status_rules", "override_denied",
                                    "referral_fields", "target_match", "member_match",
                                    "contact_matching", "process"}  # fmt: skip
    assert set(org["writeback"]) == {"referral_add", "activities", "objects", "link_back"}
    assert set(org["writeback"]["activities"]["kinds"]) == {
        "email", "call", "linkedin_message", "linkedin_connection", "meeting"
    }  # fmt: skip
    assert {"sync_mode", "dedupe", "fields"} <= set(org["writeback"]["objects"]["Account"])


def test_five_mistakes_are_all_reported_with_their_lines(runner: Any, tmp_path: Path) -> None:
    path = tmp_path / "sfbridge.yaml"
    path.write_text(FIVE_MISTAKES)
    result = runner.invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith(str(path))]
    expected = [
        ("login_url: http", "orgs.acme.login_url", "must be an https:// URL"),
        ("status: won", "orgs.acme.receiver.status_rules[0].status",
         "found 'won'; allowed: 'pending', 'qualified', 'approved' or 'denied'"),
        ("company: Contact.Account.Name", "orgs.acme.receiver.referral_fields.company",
         "'Contact.Account.Name' is a relationship path; name the related object directly, "
         "e.g. 'Account.Name'"),
        ("fuzzy_threshold: 2", "orgs.acme.receiver.target_match.fuzzy_threshold",
         "found 2; must be less than or equal to 1"),
        ("evrey: 60", "orgs.acme.polling.evrey", "unknown key"),
    ]  # fmt: skip
    assert len(lines) == len(expected), result.output
    for (marker, key, message), line in zip(expected, lines, strict=True):
        assert line.startswith(f"{path}:{line_of(FIVE_MISTAKES, marker)}: {key}: "), line
        assert message in line, line
    assert f"5 problem(s) found in {path}" in result.output
    assert "Traceback" not in result.output


def _org(receiver: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "orgs": {
                "acme": {
                    "programs": [{"key": "p", "name": "P"}],
                    "receiver": {"program": "p", **receiver},
                }
            }
        }  # fmt: skip
    )


def _problems(receiver: dict[str, Any]) -> list[str]:
    config, problems = check_config_text(_org(receiver), "sfbridge.yaml")
    assert (config is None) == bool(problems)
    return [str(p) for p in problems]


@pytest.mark.parametrize(
    ("receiver", "key", "message"),
    [
        ({"referral_fields": {"company": "Contact.Account.Name"}},
         "receiver.referral_fields.company", "e.g. 'Account.Name'"),
        ({"target_match": {"direct_fields": ["Lead.Referral_ID__c", "Lead.Owner.Email"]}},
         "receiver.target_match.direct_fields[1]", "'Lead.Owner.Email' is a relationship path"),
        ({"member_match": {"member_email": ["Contact.Account.Owner.Email"]}},
         "receiver.member_match.member_email[0]", "e.g. 'Owner.Email'"),
        ({"status_rules": [{"status": "approved", "object": "Opportunity",
                            "field": "Account.Name", "op": "is_blank"}]},
         "receiver.status_rules[0].field", "name a field of the rule's object"),
    ],
)  # fmt: skip
def test_relationship_paths_are_rejected(receiver: dict[str, Any], key: str, message: str) -> None:
    problems = _problems(receiver)
    assert any(f": orgs.acme.{key}: " in p and message in p for p in problems), problems


@pytest.mark.parametrize(
    ("receiver", "key", "message"),
    [
        ({"referral_fields": {"size": "Deal.Size__c"}}, "receiver.referral_fields.size",
         "unknown object 'Deal' in 'Deal.Size__c'; allowed: Lead, Contact, Account, Opportunity"),
        ({"target_match": {"direct_fields": ["Case.Referral_ID__c"]}},
         "receiver.target_match.direct_fields[0]", "unknown object 'Case'"),
        ({"status_rules": [{"status": "approved", "object": "Deal", "field": "Stage",
                            "op": "equals", "value": "Won"}]},
         "receiver.status_rules[0].object",
         "found 'Deal'; allowed: 'Lead', 'Contact', 'Account' or 'Opportunity'"),
    ],
)  # fmt: skip
def test_unknown_objects_are_rejected(receiver: dict[str, Any], key: str, message: str) -> None:
    problems = _problems(receiver)
    assert any(f": orgs.acme.{key}: " in p and message in p for p in problems), problems


def test_every_bad_reference_is_reported_not_just_the_first() -> None:
    problems = _problems({"referral_fields": {"a": "Deal.X", "b": "Lead.Owner.Name", "c": "Lead"}})
    assert len(problems) == 3, problems


def _rule(status: str, op: str, value: Any = None, obj: str = "Lead", field: str = "Status"):
    rule: dict[str, Any] = {"status": status, "object": obj, "field": field, "op": op}
    if value is not None:
        rule["value"] = value
    return rule


@pytest.mark.parametrize(
    ("rules", "contradiction"),
    [
        ([_rule("qualified", "equals", "Working"), _rule("denied", "equals", "Working")], True),
        ([_rule("qualified", "in", ["Working", "Open"]), _rule("denied", "equals", "Open")], True),
        ([_rule("qualified", "equals", "Open"), _rule("denied", "changed_to", "Open")], True),
        ([_rule("qualified", "changed_to", "Open"), _rule("denied", "changed_to", "Open")], True),
        ([_rule("denied", "not_equals", "Open"), _rule("approved", "in", ["Won", "Lost"])], True),
        ([_rule("pending", "is_blank"), _rule("denied", "is_blank", True)], True),
        ([_rule("qualified", "is_blank", False), _rule("approved", "equals", "Won")], True),
        # not contradictions: different values, fields, objects, the same status, or the
        # earlier rule is narrower than the later one
        ([_rule("qualified", "equals", "Working"), _rule("denied", "equals", "Lost")], False),
        ([_rule("qualified", "equals", "Open"), _rule("qualified", "in", ["Open"])], False),
        ([_rule("qualified", "equals", "Won"),
          _rule("approved", "equals", "Won", obj="Opportunity", field="StageName")], False),
        ([_rule("qualified", "changed_to", "Open"), _rule("denied", "equals", "Open")], False),
        ([_rule("qualified", "equals", "Open"), _rule("denied", "in", ["Open", "New"])], False),
        ([_rule("denied", "not_equals", "Open"), _rule("approved", "equals", "Open")], False),
        ([_rule("pending", "is_blank"), _rule("denied", "is_blank", False)], False),
    ],
)  # fmt: skip
def test_contradictory_status_rules(rules: list[dict[str, Any]], contradiction: bool) -> None:
    problems = _problems({"status_rules": rules})
    if not contradiction:
        assert problems == []
        return
    [problem] = problems
    # reported at the rule that can never apply, on its own line
    assert problem.startswith("sfbridge.yaml:")
    assert ": orgs.acme.receiver.status_rules[1]: contradicts status_rules[0]:" in problem
    assert f"this rule's '{rules[1]['status']}' can never apply" in problem
    line = int(problem.split(":")[1])
    assert _org({"status_rules": rules}).splitlines()[line - 1].lstrip().startswith("- ")


def test_a_config_file_that_is_not_utf8_is_named_not_a_traceback(
    runner: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sfbridge.yaml"
    path.write_bytes(b"orgs:\n  acme: \xff\xfe\n")
    result = runner.invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 1, result.output
    assert f"{path}: the config file is not UTF-8 text" in result.output
    # Every other command reads it through the same path.
    monkeypatch.setenv("SFBRIDGE_CONFIG", str(path))
    result = runner.invoke(main, ["org", "topics", "acme", "--apex"])
    assert result.exit_code == 1, result.output
    assert f"{path}: the config file is not UTF-8 text" in result.output


def test_a_key_given_twice_is_reported_with_both_lines(runner: Any, tmp_path: Path) -> None:
    path = tmp_path / "sfbridge.yaml"
    path.write_text(
        "orgs:\n"
        "  acme:\n"
        "    login_url: https://login.salesforce.com\n"
        "    client_id: first\n"
        "    client_id: second\n"
        "    programs: [{key: main, name: Main}]\n"
        "    receiver: {program: main}\n"
    )
    result = runner.invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 1, result.output
    assert f"{path}:5: orgs.acme.client_id: duplicate key (also on line 4)" in result.output
    cfg, problems = check_config_text(path.read_text(), str(path))
    assert cfg is None and len(problems) == 1


@pytest.mark.parametrize(
    ("streaming", "message"),
    [
        ({"transport": "grpc"}, "streaming.transport: "),
        ({"transport": "pubsub", "pubsub_topics": ["/topic/SFB_Lead"]}, "is not a Pub/Sub topic"),
        ({"transport": "pubsub", "pubsub_topics": []}, "list at least one topic"),
        ({"transport": "pubsub", "pubsub_endpoint": "https://x"}, "is not host:port"),
    ],
)
def test_pubsub_streaming_settings_are_checked(streaming: dict[str, Any], message: str) -> None:
    text = yaml.safe_dump(
        {"orgs": {"acme": {"programs": [{"key": "p", "name": "P"}],
                           "receiver": {"program": "p"}, "streaming": streaming}}}
    )  # fmt: skip
    config, problems = check_config_text(text, "sfbridge.yaml")
    assert config is None
    assert any(message in str(p) for p in problems), [str(p) for p in problems]


def test_pubsub_transport_defaults() -> None:
    text = yaml.safe_dump(
        {"orgs": {"acme": {"programs": [{"key": "p", "name": "P"}],
                           "receiver": {"program": "p"}, "streaming": {"transport": "pubsub"}}}}
    )  # fmt: skip
    config, problems = check_config_text(text, "sfbridge.yaml")
    assert config is not None, problems
    streaming = config.orgs["acme"].streaming
    assert streaming.pubsub_endpoint == "api.pubsub.salesforce.com:7443"
    assert streaming.pubsub_topics[0] == "/data/LeadChangeEvent"
    assert config.orgs["acme"].polling.safety_net and config.orgs["acme"].polling.every == 300


# ---- hostile YAML, one pass, the connection's values (issue: config check survives) -------

ORG_HEAD = """\
orgs:
  acme:
    client_id: abc
    username: integration@example.com
    programs:
      - {key: main, name: Main}
    receiver:
      program: main
"""


def check(runner: Any, tmp_path: Path, text: str) -> tuple[int, list[str]]:
    path = tmp_path / "sfbridge.yaml"
    path.write_text(text)
    result = runner.invoke(main, ["config", "check", str(path)])
    lines = [line for line in result.output.splitlines() if line.startswith(str(path))]
    return result.exit_code, [line.removeprefix(str(path)) for line in lines]


@pytest.mark.parametrize(
    "text",
    [
        "orgs:\n  acme: &a\n    login_url: https://x\n    again: *a\n",
        "base: &b [1, *b]\norgs: {}\n",
    ],
    ids=["mapping", "list"],
)
@pytest.mark.timeout(10)
def test_a_self_referencing_alias_is_refused_with_file_line_and_key(
    runner: Any, tmp_path: Path, text: str
) -> None:
    code, lines = check(runner, tmp_path, text)
    assert code == 1 and len(lines) == 1, lines
    assert "refers to a value that contains it" in lines[0]
    assert lines[0].startswith(":4: orgs.acme.again:") or lines[0].startswith(":1: base[1]:")


@pytest.mark.timeout(10)
def test_an_alias_bomb_is_refused_quickly(runner: Any, tmp_path: Path) -> None:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        text += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
    text += ORG_HEAD + "    status_rules: *i\n"
    started = time.monotonic()
    code, lines = check(runner, tmp_path, text)
    assert time.monotonic() - started < 5  # 9^9 values were over 60 s of CPU
    assert code == 1 and len(lines) == 1 and "alias bomb" in lines[0], lines


def test_schema_errors_do_not_hide_rule_and_cross_reference_errors(
    runner: Any, tmp_path: Path
) -> None:
    text = """\
orgs:
  acme:
    client_id: abc
    username: integration@example.com
    programs:
      - {key: main, name: Main}
    receiver:
      program: nope
      status_rules:
        - {status: qualified, object: Lead, field: Status, op: equals, value: Open}
        - {status: qualified, object: Lead, field: Status, op: equals, value: Open}
        - {status: won, object: Lead, field: Status, op: equals, value: Won}
    polling:
      every: 1
"""
    code, lines = check(runner, tmp_path, text)
    assert code == 1
    joined = "\n".join(lines)
    assert ":12: orgs.acme.receiver.status_rules[2].status:" in joined  # schema
    assert ":14: orgs.acme.polling.every:" in joined  # schema
    assert ":8: orgs.acme.receiver.program: 'nope' is not one of the programs" in joined  # x-ref
    assert ":11: orgs.acme.receiver.status_rules[1]:" in joined  # rule that never fires
    assert len(lines) == 4, lines


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [
        ("    client_id: ''\n", "client_id", "is empty"),
        ("    client_id: '   '\n", "client_id", "is empty"),
        ("    username: integration\n", "username", "is not a Salesforce username"),
        ("    username: a b@example.com\n", "username", "is not a Salesforce username"),
        ("    api_version: '29.0'\n", "api_version", "below the supported range"),
        ("    api_version: '41.0'\n", "api_version", "below the supported range"),
        ("    api_version: latest\n", "api_version", "is not an API version"),
        ("    polling: {every: 4}\n", "polling.every", "greater than or equal to 5"),
        ("    polling: {every: 100000}\n", "polling.every", "less than or equal to 86400"),
        ("    polling: {page_size: 100}\n", "polling.page_size", "greater than or equal to 200"),
        ("    polling: {page_size: 5000}\n", "polling.page_size", "less than or equal to 2000"),
        ("    polling: {overlap_seconds: -1}\n", "polling.overlap_seconds", "greater than"),
        ("    private_key_file: missing.key\n", "private_key_file", "does not exist"),
        ("    ca_bundle: /no/such/ca.pem\n", "ca_bundle", "does not exist"),
    ],
)
def test_the_connection_values_are_checked(
    runner: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str, key: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    text = ORG_HEAD.replace("    client_id: abc\n", "").replace(
        "    username: integration@example.com\n", ""
    )
    code, lines = check(runner, tmp_path, text + extra)
    assert code == 1 and len(lines) == 1, lines
    assert f": orgs.acme.{key}:" in lines[0] and message in lines[0], lines


def test_the_connection_values_that_are_fine(
    runner: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jwt.key").write_text("k")
    text = ORG_HEAD + "    private_key_file: jwt.key\n    api_version: '42.0'\n"
    code, lines = check(runner, tmp_path, text)
    assert code == 0, lines


def test_duplicate_program_keys_are_refused(runner: Any, tmp_path: Path) -> None:
    text = ORG_HEAD.replace(
        "      - {key: main, name: Main}\n",
        "      - {key: main, name: Main}\n      - {key: main, name: Again}\n",
    )
    code, lines = check(runner, tmp_path, text)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(":7: orgs.acme.programs[1].key:") and "given twice" in lines[0]
    other = ORG_HEAD + ORG_HEAD.replace("orgs:\n  acme:", "  beta:")
    code, lines = check(runner, tmp_path, other)
    assert code == 1 and any("unique across the config" in line for line in lines), lines


@pytest.mark.timeout(10)
def test_yaml_nested_past_the_parsers_stack_is_refused(runner: Any, tmp_path: Path) -> None:
    code, lines = check(runner, tmp_path, "orgs: " + "[" * 20000 + "]" * 20000 + "\n")
    assert code == 1 and len(lines) == 1 and "nested too deeply" in lines[0], lines
