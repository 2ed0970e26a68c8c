"""Sync rules × strategies × blank handling, sync modes and dedupe keys, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.config import FieldMapping
from bridge.writeback.mapping import (
    FieldPlan,
    find_account,
    is_blank,
    plan_fields,
    root_domain,
    salesforce_email,
    sync_action,
)

MISSING = object()  # the record does not exist yet (a create)

# (rule, strategy, local value, Salesforce value, expected writes, expected local updates)
# One local field "title" mapped to Salesforce "Title".
CASES: list[tuple[str, str, Any, Any, dict[str, Any], dict[str, Any]]] = [
    # read_only: Salesforce → local only, never written
    ("read_only", "override", "Ours", "Theirs", {}, {"title": "Theirs"}),
    ("read_only", "override", None, "Theirs", {}, {"title": "Theirs"}),
    ("read_only", "override", "Ours", None, {}, {"title": None}),  # cleared in SF: mirror it
    ("read_only", "override", "Ours", "  ", {}, {"title": None}),
    ("read_only", "override", "Same", "Same", {}, {}),
    ("read_only", "override", None, None, {}, {}),
    ("read_only", "if_empty", "Ours", "Theirs", {}, {}),
    ("read_only", "if_empty", "", "Theirs", {}, {"title": "Theirs"}),
    ("read_only", "if_empty", "Ours", None, {}, {}),
    ("read_only", "override", "Ours", MISSING, {}, {}),
    # read_write: ours goes out; a blank local value is filled from Salesforce
    ("read_write", "override", "Ours", "Theirs", {"Title": "Ours"}, {}),
    ("read_write", "override", "Ours", None, {"Title": "Ours"}, {}),
    ("read_write", "override", "Same", "Same", {}, {}),
    ("read_write", "override", None, "Theirs", {}, {"title": "Theirs"}),
    ("read_write", "override", "", None, {}, {}),
    ("read_write", "if_empty", "Ours", "Theirs", {}, {}),
    ("read_write", "if_empty", "Ours", "", {"Title": "Ours"}, {}),
    ("read_write", "if_empty", None, "Theirs", {}, {"title": "Theirs"}),
    ("read_write", "override", "Ours", MISSING, {"Title": "Ours"}, {}),
    ("read_write", "override", None, MISSING, {}, {}),
    # salesforce_unless_blank: Salesforce wins; we fill its blanks
    ("salesforce_unless_blank", "override", "Ours", "Theirs", {}, {"title": "Theirs"}),
    ("salesforce_unless_blank", "override", "Ours", None, {"Title": "Ours"}, {}),
    ("salesforce_unless_blank", "override", "Ours", " ", {"Title": "Ours"}, {}),
    ("salesforce_unless_blank", "override", None, "Theirs", {}, {"title": "Theirs"}),
    ("salesforce_unless_blank", "override", None, None, {}, {}),
    ("salesforce_unless_blank", "if_empty", "Ours", "Theirs", {}, {}),
    ("salesforce_unless_blank", "if_empty", None, "Theirs", {}, {"title": "Theirs"}),
    ("salesforce_unless_blank", "if_empty", "Ours", None, {"Title": "Ours"}, {}),
    ("salesforce_unless_blank", "override", "Ours", MISSING, {"Title": "Ours"}, {}),
    # ours: local → Salesforce only; blanks never clear Salesforce
    ("ours", "override", "Ours", "Theirs", {"Title": "Ours"}, {}),
    ("ours", "override", "Ours", None, {"Title": "Ours"}, {}),
    ("ours", "override", None, "Theirs", {}, {}),
    ("ours", "override", "  ", "Theirs", {}, {}),
    ("ours", "override", "Same", " Same ", {}, {}),
    ("ours", "if_empty", "Ours", "Theirs", {}, {}),
    ("ours", "if_empty", "Ours", None, {"Title": "Ours"}, {}),
    ("ours", "if_empty", "Ours", MISSING, {"Title": "Ours"}, {}),
    ("ours", "override", 0, 5, {"Title": 0}, {}),  # 0 is a value, not a blank
    ("ours", "override", False, True, {"Title": False}, {}),
    # none: nothing either way
    ("none", "override", "Ours", "Theirs", {}, {}),
    ("none", "if_empty", "Ours", None, {}, {}),
    ("none", "override", None, "Theirs", {}, {}),
]


@pytest.mark.parametrize(("rule", "strategy", "ours", "theirs", "writes", "updates"), CASES)
def test_sync_rule_and_strategy(
    rule: str,
    strategy: str,
    ours: Any,
    theirs: Any,
    writes: dict[str, Any],
    updates: dict[str, Any],
) -> None:
    mapping = FieldMapping(local="title", salesforce="Title", sync=rule, strategy=strategy)  # type: ignore[arg-type]
    current = None if theirs is MISSING else {"Title": theirs}
    plan = plan_fields({"title": ours}, current, [mapping])
    assert plan == FieldPlan(writes=writes, local_updates=updates)


# Several Salesforce fields per local field: written one by one, read first non-blank.
MULTI: list[tuple[str, str, Any, dict[str, Any] | None, dict[str, Any], dict[str, Any]]] = [
    ("ours", "override", "x", {"A": "a", "B": None}, {"A": "x", "B": "x"}, {}),
    ("ours", "if_empty", "x", {"A": "a", "B": None}, {"B": "x"}, {}),
    ("ours", "if_empty", "x", {"A": "a", "B": "b"}, {}, {}),
    ("ours", "override", "x", None, {"A": "x", "B": "x"}, {}),
    ("read_only", "override", None, {"A": "", "B": "b"}, {}, {"v": "b"}),
    ("read_only", "override", None, {"A": "a", "B": "b"}, {}, {"v": "a"}),
    ("read_write", "override", None, {"A": None, "B": "b"}, {}, {"v": "b"}),
    ("salesforce_unless_blank", "override", "x", {"A": None, "B": "b"}, {"A": "x"}, {"v": "b"}),
    ("salesforce_unless_blank", "override", "x", {"A": "", "B": None}, {"A": "x", "B": "x"}, {}),
    # B was not read from Salesforce: it is written as if blank but never read back
    ("read_only", "override", "old", {"A": None}, {}, {"v": None}),
    ("salesforce_unless_blank", "override", "x", {"A": "a"}, {"B": "x"}, {"v": "a"}),
]


@pytest.mark.parametrize(("rule", "strategy", "ours", "current", "writes", "updates"), MULTI)
def test_several_salesforce_fields_per_local_field(
    rule: str,
    strategy: str,
    ours: Any,
    current: dict[str, Any] | None,
    writes: dict[str, Any],
    updates: dict[str, Any],
) -> None:
    mapping = FieldMapping(local="v", salesforce=["A", "B"], sync=rule, strategy=strategy)  # type: ignore[arg-type]
    plan = plan_fields({"v": ours}, current, [mapping])
    assert plan.writes == writes
    assert plan.local_updates == updates


def test_first_mapping_wins_when_two_write_the_same_field() -> None:
    mappings = [
        FieldMapping(local="company", salesforce="Company", sync="ours"),
        FieldMapping(local="domain", salesforce="Company", sync="ours"),
        FieldMapping(local="title", salesforce="Title", sync="read_only"),
    ]
    plan = plan_fields(
        {"company": "Acme", "domain": "acme.com", "title": "CTO"},
        {"Company": "Old", "Title": "CEO"},
        mappings,
    )
    assert plan.writes == {"Company": "Acme"}
    assert plan.local_updates == {"title": "CEO"}


@pytest.mark.parametrize(
    ("value", "blank"),
    [
        (None, True),
        ("", True),
        ("  \t", True),
        ([], True),
        ({}, True),
        (0, False),
        (False, False),
        ("0", False),
        ("x", False),
        (0.0, False),
    ],
)
def test_blank(value: Any, blank: bool) -> None:
    assert is_blank(value) is blank


@pytest.mark.parametrize(
    ("mode", "existing", "action"),
    [
        ("create_update", None, "create"),
        ("create_update", "003000000000001AAA", "update"),
        ("update_only", None, "skip"),
        ("update_only", "003000000000001AAA", "update"),
        ("disabled", None, "skip"),
        ("disabled", "003000000000001AAA", "skip"),
    ],
)
def test_sync_modes(mode: Any, existing: str | None, action: str) -> None:
    assert sync_action(mode, existing) == action


@pytest.mark.parametrize(
    ("value", "root"),
    [
        ("foo.co.uk", "foo.co.uk"),
        ("www.foo.co.uk", "foo.co.uk"),
        ("https://www.foo.co.uk/about?x=1", "foo.co.uk"),
        ("http://WWW.Foo.CO.UK:8080", "foo.co.uk"),
        ("sales@mail.foo.co.uk", "foo.co.uk"),
        ("a.github.io", "a.github.io"),
        ("b.github.io", "b.github.io"),
        ("https://docs.a.github.io/x", "a.github.io"),
        ("example.com.", "example.com"),
        ("shop.example.com", "example.com"),
        ("co.uk", None),  # a public suffix alone is no one's domain
        ("", None),
        ("   ", None),
        (None, None),
        ("10.1.2.3", "10.1.2.3"),
        ("localhost", "localhost"),
        ("crm.acme.internal", "acme.internal"),
    ],
)
def test_root_domain(value: str | None, root: str | None) -> None:
    assert root_domain(value) == root


def test_accounts_dedupe_on_root_domain() -> None:
    accounts = [
        {
            "Id": "001B",
            "Website": "https://b.github.io",
            "CreatedDate": "2024-01-01T00:00:00.000+0000",
        },
        {"Id": "001A", "Website": "a.github.io", "CreatedDate": "2024-01-02T00:00:00.000+0000"},
        {
            "Id": "001F2",
            "Website": "http://foo.co.uk",
            "CreatedDate": "2024-03-01T00:00:00.000+0000",
        },
        {"Id": "001F1", "Website": "www.foo.co.uk/", "CreatedDate": "2024-02-01T00:00:00.000+0000"},
        {"Id": "001N", "Website": None},
    ]
    assert find_account("foo.co.uk", accounts)["Id"] == "001F1"  # type: ignore[index]
    assert find_account("https://www.foo.co.uk", accounts)["Id"] == "001F1"  # type: ignore[index]
    assert find_account("a.github.io", accounts)["Id"] == "001A"  # type: ignore[index]
    assert find_account("b.github.io", accounts)["Id"] == "001B"  # type: ignore[index]
    assert find_account("c.github.io", accounts) is None
    assert find_account(None, accounts) is None


def test_emails_compare_as_salesforce_stores_them() -> None:
    assert salesforce_email("not-an-email") is None
    assert salesforce_email(" X@Y.Z ") == "x@y.z"
