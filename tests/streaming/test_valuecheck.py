"""The value check's pure parts: which mapped fields are formulas, which records changed, and
the change key that keeps a value change apart from the record's last saved change."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.config import OrgConfig
from bridge.streaming import valuecheck

ORG = OrgConfig.model_validate(
    {
        "programs": [{"key": "main", "name": "Main"}],
        "receiver": {"program": "main"},
        "writeback": {
            "objects": {
                "Contact": {
                    "fields": [
                        {"local": "tier", "salesforce": "Tier__c", "sync": "read_only"},
                        {"local": "score", "salesforce": "Score__c", "sync": "ours"},
                        {"local": "title", "salesforce": "Title", "sync": "read_write"},
                    ]
                }
            }
        },
    }
)


def test_only_mapped_fields_that_are_read_and_calculated_are_checked() -> None:
    describe = {
        "fields": [
            {"name": "Tier__c", "calculated": True},
            {"name": "Score__c", "calculated": True},  # written, not read: not checked
            {"name": "Title", "calculated": False},
        ]
    }
    mapped = valuecheck.mapped_read_fields(ORG)
    assert mapped == {"Contact": ["Tier__c", "Title"]}
    assert valuecheck.formula_fields(mapped, {"Contact": describe}) == {"Contact": ["Tier__c"]}
    assert valuecheck.formula_fields(mapped, {"Contact": "INVALID_TYPE"}) == {}


def test_records_whose_formula_values_differ_from_the_last_seen_are_changed() -> None:
    records = [
        {"Id": "003A", "Tier__c": "Enterprise", "Title": "x"},
        {"Id": "003B", "Tier__c": "SMB", "Title": "new title"},  # not a formula: polling's
        {"Id": "003C", "Tier__c": "SMB"},  # never seen: read once
    ]
    seen = {"003A": {"Tier__c": "SMB"}, "003B": {"Tier__c": "SMB", "Title": "old"}}
    changed = valuecheck.changed_records(records, seen, ["Tier__c"])
    assert [r["Id"] for r in changed] == ["003A", "003C"]


def test_a_value_change_has_its_own_change_key() -> None:
    stamp = "2026-12-01T10:00:00.000+0000"
    record = {"Id": "003A", "SystemModstamp": stamp, "Tier__c": "SMB"}
    smb = valuecheck._event("Contact", record, ["Tier__c"])
    ent = valuecheck._event("Contact", {**record, "Tier__c": "Enterprise"}, ["Tier__c"])
    assert smb.change_key != ent.change_key
    assert smb.change_key.startswith("003A@2026-12-01T10:00:00.000Z:values:")
    assert smb.channel == "values:Contact" and smb.change_type == "updated"
    assert smb.modstamp == datetime(2026, 12, 1, 10, tzinfo=UTC)
