"""Two-way sync over time (bridge.writeback.sync), as tables: each rule in both directions,
recency deciding read_write conflicts, echoes and edits elsewhere on the record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.config import FieldMapping
from bridge.writeback.sync import Conflict, inbound, outbound

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EARLIER, LATER = T0 - timedelta(minutes=5), T0 + timedelta(minutes=5)
UNSEEN = object()  # the record was never seen before
NEVER = object()  # the local field never changed here


def mapping(rule: str, strategy: str = "override") -> FieldMapping:
    return FieldMapping(local="title", salesforce="Title", sync=rule, strategy=strategy)  # type: ignore[arg-type]


# (rule, strategy, local, Salesforce now, Salesforce as last seen, local changed at,
#  SystemModstamp, expected local updates, expected writes back, expected conflict winner)
INBOUND: list[tuple[Any, ...]] = [
    # read_only: Salesforce always wins, a cleared value clears ours (override)
    ("read_only", "override", "Ours", "Theirs", "Old", LATER, T0, {"title": "Theirs"}, {}, None),
    ("read_only", "override", "Ours", None, "Ours", NEVER, T0, {"title": None}, {}, None),
    ("read_only", "if_empty", "Ours", "Theirs", "Old", NEVER, T0, {}, {}, None),
    ("read_only", "if_empty", None, "Theirs", UNSEEN, NEVER, T0, {"title": "Theirs"}, {}, None),
    ("read_only", "override", "Same", "Same", "Old", NEVER, T0, {}, {}, None),
    # salesforce_unless_blank: a Salesforce value wins, a blank one never clears ours
    ("salesforce_unless_blank", "override", "Ours", "Theirs", UNSEEN, LATER, T0,
     {"title": "Theirs"}, {}, None),
    ("salesforce_unless_blank", "override", "Ours", None, "Old", NEVER, T0, {}, {}, None),
    ("salesforce_unless_blank", "override", "Ours", "  ", "Old", NEVER, T0, {}, {}, None),
    # ours / none: Salesforce is never read
    ("ours", "override", "Ours", "Theirs", "Old", NEVER, T0, {}, {}, None),
    ("none", "override", "Ours", "Theirs", "Old", NEVER, T0, {}, {}, None),
    # read_write: the newer change wins
    ("read_write", "override", "Ours", "Theirs", "Old", EARLIER, T0,
     {"title": "Theirs"}, {}, "salesforce"),
    ("read_write", "override", "Ours", "Theirs", "Old", T0, T0,
     {"title": "Theirs"}, {}, "salesforce"),  # a tie goes to Salesforce
    ("read_write", "override", "Ours", "Theirs", "Old", LATER, T0,
     {}, {"Title": "Ours"}, "local"),  # ours is newer: kept and written back
    ("read_write", "override", "Ours", "Theirs", "Old", NEVER, T0,
     {"title": "Theirs"}, {}, "salesforce"),  # never edited here
    ("read_write", "override", "Ours", "Theirs", UNSEEN, LATER, T0,
     {}, {"Title": "Ours"}, "local"),
    ("read_write", "override", "Ours", "Theirs", "Old", LATER, None,
     {"title": "Theirs"}, {}, "salesforce"),  # no stamp to judge by: Salesforce
    # ... but no conflict when Salesforce did not change the field
    ("read_write", "override", "Ours", "Theirs", "Theirs", LATER, T0, {}, {}, None),
    ("read_write", "override", "Ours", "Theirs", "Theirs", EARLIER, T0, {}, {}, None),
    # ... nor for our own value coming back (an echo)
    ("read_write", "override", "Ours", "Ours", "Old", LATER, T0, {}, {}, None),
    ("read_write", "override", "Ours", " Ours ", "Old", LATER, T0, {}, {}, None),
    # ... a blank side: ours blank takes theirs; theirs blank clears nothing
    ("read_write", "override", None, "Theirs", UNSEEN, NEVER, T0, {"title": "Theirs"}, {}, None),
    ("read_write", "override", "Ours", None, "Old", EARLIER, T0, {}, {}, None),
    ("read_write", "if_empty", "Ours", "Theirs", "Old", EARLIER, T0, {}, {}, None),
    ("read_write", "if_empty", "", "Theirs", "Old", EARLIER, T0, {"title": "Theirs"}, {}, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "strategy", "ours", "theirs", "seen", "local_at", "modstamp", "updates", "writes",
     "winner"),
    INBOUND,
)  # fmt: skip
def test_a_salesforce_change_by_rule(
    rule: str,
    strategy: str,
    ours: Any,
    theirs: Any,
    seen: Any,
    local_at: Any,
    modstamp: datetime | None,
    updates: dict[str, Any],
    writes: dict[str, Any],
    winner: str | None,
) -> None:
    plan = inbound(
        {"title": ours},
        {} if local_at is NEVER else {"title": local_at},
        {"Id": "00Q1", "Title": theirs},
        {} if seen is UNSEEN else {"Id": "00Q1", "Title": seen},
        modstamp,
        [mapping(rule, strategy)],
    )
    assert plan.local_updates == updates
    assert plan.writes == writes
    assert [c.winner for c in plan.conflicts] == ([winner] if winner else [])


def test_the_losing_value_is_reported_with_the_kept_one() -> None:
    lost_here = inbound(
        {"title": "Ours"}, {"title": EARLIER}, {"Title": "Theirs"}, {}, T0, [mapping("read_write")]
    )
    assert lost_here.conflicts == [Conflict("title", "salesforce", kept="Theirs", lost="Ours")]
    lost_there = inbound(
        {"title": "Ours"}, {"title": LATER}, {"Title": "Theirs"}, {}, T0, [mapping("read_write")]
    )
    assert lost_there.conflicts == [Conflict("title", "local", kept="Ours", lost="Theirs")]


def test_a_field_the_change_did_not_carry_is_left_alone() -> None:
    plan = inbound({"title": "Ours"}, {}, {"Id": "00Q1"}, {}, T0, [mapping("read_only")])
    assert plan.local_updates == {} and plan.conflicts == []


def test_several_salesforce_fields_first_non_blank_read_each_written() -> None:
    m = FieldMapping(local="title", salesforce=["Title", "Job_Title__c"], sync="read_write")
    plan = inbound({"title": None}, {}, {"Title": "", "Job_Title__c": "CTO"}, {}, T0, [m])
    assert plan.local_updates == {"title": "CTO"}
    plan = inbound(
        {"title": "CEO"}, {"title": LATER}, {"Title": "CTO", "Job_Title__c": "CTO"}, {}, T0, [m]
    )
    assert plan.writes == {"Title": "CEO", "Job_Title__c": "CEO"}


def test_the_first_mapping_of_a_local_field_wins() -> None:
    first = FieldMapping(local="title", salesforce="Title", sync="read_only")
    second = FieldMapping(local="title", salesforce="Job_Title__c", sync="read_only")
    plan = inbound(
        {"title": None}, {}, {"Title": "A", "Job_Title__c": "B"}, {}, T0, [first, second]
    )
    assert plan.local_updates == {"title": "A"}


# (rule, strategy, new local value, Salesforce as last seen, expected writes)
OUTBOUND: list[tuple[Any, ...]] = [
    ("read_only", "override", "New", "Old", {}),
    ("none", "override", "New", "Old", {}),
    ("ours", "override", "New", "Old", {"Title": "New"}),
    ("ours", "override", "Same", "Same", {}),
    ("ours", "if_empty", "New", "Old", {}),
    ("ours", "if_empty", "New", None, {"Title": "New"}),
    ("read_write", "override", "New", "Old", {"Title": "New"}),
    ("read_write", "override", "New", UNSEEN, {"Title": "New"}),
    ("read_write", "override", None, "Old", {}),  # a blank local value never clears Salesforce
    ("salesforce_unless_blank", "override", "New", "Old", {}),
    ("salesforce_unless_blank", "override", "New", "", {"Title": "New"}),
]


@pytest.mark.parametrize(("rule", "strategy", "value", "seen", "writes"), OUTBOUND)
def test_a_local_change_by_rule(
    rule: str, strategy: str, value: Any, seen: Any, writes: dict[str, Any]
) -> None:
    current = {} if seen is UNSEEN else {"Title": seen}
    assert outbound({"title": value}, current, [mapping(rule, strategy)]) == writes


def test_only_the_changed_fields_are_written() -> None:
    other = FieldMapping(local="plan", salesforce="Plan__c", sync="ours")
    assert outbound({"title": "New"}, {}, [mapping("ours"), other]) == {"Title": "New"}


@pytest.mark.parametrize(
    ("local", "message"),
    [
        ("status", "kept by the bridge"),
        ("member.shoe_size", "no such attribute"),
        ("Account.Name", "not a local field"),
    ],
)
def test_config_refuses_local_names_that_cannot_sync(local: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FieldMapping(local=local, salesforce="Title")
    FieldMapping(local="member.email", salesforce="Referring_Member_Email__c")
