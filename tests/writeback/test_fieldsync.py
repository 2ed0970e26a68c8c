"""Field sync and link-back as effects of the receiver, on SQLite and PostgreSQL: a Salesforce
change updates the referral by its rules, a conflict is judged by recency with the loser in the
history, and a match without an id queues the link-back push (once)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bridge.config import OrgConfig
from bridge.receiver.service import approve_entry, process_entry
from bridge.store import Store
from bridge.store.models import (
    FieldChange,
    Member,
    OrgConnection,
    Program,
    Push,
    Referral,
    SalesEntry,
    utcnow,
)
from bridge.writeback import fieldsync

LEAD = "00Q000000000001AAA"
SALES = "005SALESUSER00AAAA"

MAPPINGS = [
    {"local": "company", "salesforce": "Company", "sync": "read_write"},
    {"local": "title", "salesforce": "Title", "sync": "read_only"},
    {"local": "website", "salesforce": "Website", "sync": "salesforce_unless_blank"},
    {"local": "plan", "salesforce": "Plan__c", "sync": "ours"},
    {"local": "phone", "salesforce": "Phone", "sync": "none"},
]


def org_config(link_back: bool = True) -> OrgConfig:
    return OrgConfig.model_validate(
        {
            "programs": [{"key": "main", "name": "Main"}],
            "receiver": {"program": "main"},
            "writeback": {"objects": {"Lead": {"fields": MAPPINGS}}, "link_back": link_back},
        }
    )


@pytest.fixture
def ids(store: Store) -> dict[str, int]:
    with store.session() as s:
        conn = OrgConnection(name="acme", login_url="https://x", auth_method="jwt")
        program = Program(key="main", name="Main")
        s.add_all([conn, program])
        s.flush()
        member = Member(program_id=program.id, name="Max", email="max@m.test", referral_code="MAX")
        s.add(member)
        s.flush()
        referral = Referral(
            public_id="R1", program_id=program.id, member_id=member.id, first_name="Jane",
            last_name="Doe", email="jane@doe.test", company="Ours Inc", phone="1",
            fields={"title": "Dev", "website": "ours.test", "plan": "gold"},
        )  # fmt: skip
        s.add(referral)
        s.flush()
        return {"conn": conn.id, "program": program.id, "referral": referral.id}


def lead(**values: Any) -> dict[str, Any]:
    return {
        "Id": LEAD, "FirstName": "Jane", "LastName": "Doe", "Email": "jane@doe.test",
        "Company": "Ours Inc", "Title": "Dev", "Website": "ours.test", "Plan__c": "x",
        "Phone": "2", "LastModifiedById": SALES, **values,
    }  # fmt: skip


def run(store: Store, ids: dict[str, int], record: dict[str, Any], org: OrgConfig) -> SalesEntry:
    with store.session() as s:
        entry = SalesEntry(
            org_connection_id=ids["conn"], program_id=ids["program"], source="stream",
            sobject_type="Lead", record_id=LEAD, change_type="updated",
            records={"Lead": record}, outcome="new", reasons=[],
        )  # fmt: skip
        process_entry(s, entry, org)
        s.flush()
        s.expunge(entry)
        return entry


def referral(store: Store, ids: dict[str, int]) -> Referral:
    with store.session() as s:
        r = s.get(Referral, ids["referral"])
        assert r is not None
        s.expunge(r)
        return r


def stamp(delta: timedelta) -> str:
    return (utcnow() + delta).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def history(store: Store) -> list[tuple[str, str, str, Any]]:
    with store.session() as s:
        rows = s.scalars(select(FieldChange).order_by(FieldChange.id))
        return [(c.field, c.source, c.outcome, c.value) for c in rows]


def test_a_salesforce_change_updates_local_fields_by_their_rules(
    store: Store, ids: dict[str, int]
) -> None:
    record = lead(
        Company="Theirs Inc", Title="CTO", Website="theirs.test", Plan__c="bronze", Phone="9",
        SystemModstamp=stamp(timedelta(0)),
    )  # fmt: skip
    entry = run(store, ids, record, org_config())
    assert entry.outcome == "processed" and entry.decision["match"] == "fuzzy"
    r = referral(store, ids)
    assert r.company == "Theirs Inc"  # read_write, never edited here: Salesforce's
    assert r.fields["title"] == "CTO"  # read_only
    assert r.fields["website"] == "theirs.test"  # salesforce_unless_blank
    assert r.fields["plan"] == "gold" and r.phone == "1"  # ours, none: not read
    assert ("company", "salesforce", "applied", "Theirs Inc") in history(store)
    # a conflict, reported: the local value lost
    assert ("company", "local", "lost", "Ours Inc") in history(store)


def test_a_newer_local_edit_wins_and_is_written_back(store: Store, ids: dict[str, int]) -> None:
    with store.session() as s:
        r = s.get(Referral, ids["referral"])
        assert r is not None
        fieldsync.edit_referral(s, r, {"company": "Edited Inc"}, [], actor="api")
    # Salesforce's change was made before our edit (its SystemModstamp is older)
    record = lead(Company="Theirs Inc", SystemModstamp=stamp(-timedelta(minutes=5)))
    entry = run(store, ids, record, org_config(link_back=False))
    assert referral(store, ids).company == "Edited Inc"
    assert ("company", "salesforce", "lost", "Theirs Inc") in history(store)
    with store.session() as s:
        [push] = s.scalars(select(Push).where(Push.id.in_(entry.decision["pushes"])))
        assert push.kind == "field_update" and push.payload["record_id"] == LEAD
        assert push.payload["fields"] == {"Company": "Edited Inc"}


def test_an_edit_elsewhere_on_the_record_is_no_conflict(store: Store, ids: dict[str, int]) -> None:
    older = stamp(-timedelta(minutes=10))
    run(store, ids, lead(Company="Theirs Inc", SystemModstamp=older), org_config(False))
    with store.session() as s:
        r = s.get(Referral, ids["referral"])
        assert r is not None
        fieldsync.edit_referral(s, r, {"company": "Edited Inc"}, [], actor="api")
    # Someone changes the Title later; the Company is still the value we had seen
    entry = run(
        store, ids, lead(Company="Theirs Inc", Title="VP", SystemModstamp=stamp(timedelta(0))),
        org_config(False),
    )  # fmt: skip
    r = referral(store, ids)
    assert r.company == "Edited Inc" and r.fields["title"] == "VP"
    assert "pushes" not in entry.decision


def test_link_back_after_a_fuzzy_match_writes_the_referral_id_and_member_once(
    store: Store, ids: dict[str, int]
) -> None:
    entry = run(store, ids, lead(SystemModstamp=stamp(timedelta(0))), org_config())
    assert entry.decision["match"] == "fuzzy"
    with store.session() as s:
        [push] = s.scalars(select(Push).where(Push.id.in_(entry.decision["pushes"])))
        fields = push.payload["fields"]
        assert push.payload["record_id"] == LEAD
        assert fields["Referral_ID__c"] == "R1"
        assert fields["Referring_Member_Email__c"] == "max@m.test"
        assert fields["Referral_Code__c"] == "MAX"
        assert "LastName" not in fields and "Email" not in fields
    # The next change matches directly (the Lead's id is the referral's now): no link-back
    again = run(store, ids, lead(SystemModstamp=stamp(timedelta(seconds=1))), org_config())
    assert again.decision["match"] == "direct" and "pushes" not in again.decision
    # and the same link-back asked for twice is one push
    with store.session() as s:
        e = s.get(SalesEntry, entry.id)
        r = s.get(Referral, ids["referral"])
        conn = s.get(OrgConnection, ids["conn"])
        assert e is not None and r is not None and conn is not None
        target = fieldsync.Target(conn, org_config())
        pushed = fieldsync.link_back(s, e, "fuzzy", r, target)
        assert pushed is not None and pushed.id == push.id
        assert len(list(s.scalars(select(Push)))) == 1


def test_no_link_back_for_a_direct_match_or_when_switched_off(
    store: Store, ids: dict[str, int]
) -> None:
    direct = run(
        store, ids, lead(Referral_ID__c="R1", SystemModstamp=stamp(timedelta(0))), org_config()
    )
    assert direct.decision["match"] == "direct" and "pushes" not in direct.decision
    off = run(store, ids, lead(SystemModstamp=stamp(timedelta(0))), org_config(link_back=False))
    assert off.decision["match"] != "direct" or "pushes" not in off.decision
    assert "pushes" not in off.decision


def test_a_member_field_mapped_read_only_updates_the_referring_member(
    store: Store, ids: dict[str, int]
) -> None:
    org = OrgConfig.model_validate(
        {
            "programs": [{"key": "main", "name": "Main"}],
            "receiver": {"program": "main"},
            "writeback": {
                "link_back": False,
                "objects": {
                    "Lead": {
                        "fields": [
                            {
                                "local": "member.phone",
                                "salesforce": "Referring_Member_Phone__c",
                                "sync": "read_only",
                            }
                        ]
                    }
                },
            },
        }
    )
    run(
        store,
        ids,
        lead(Referring_Member_Phone__c="+1 555", SystemModstamp=stamp(timedelta(0))),
        org,
    )
    with store.session() as s:
        referral = s.get(Referral, ids["referral"])
        assert referral is not None and referral.member_id is not None
        member = s.get(Member, referral.member_id)
        assert member is not None and member.phone == "+1 555"
        [change] = s.scalars(select(FieldChange).where(FieldChange.field == "member.phone"))
        assert (change.member_id, change.source) == (member.id, "salesforce")


def test_a_reviewer_approval_links_the_record_back(store: Store, ids: dict[str, int]) -> None:
    org = OrgConfig.model_validate(
        {
            "programs": [{"key": "main", "name": "Main"}],
            "receiver": {"program": "main", "process": {"auto_process_fuzzy": False}},
        }
    )
    entry = run(store, ids, lead(SystemModstamp=stamp(timedelta(0))), org)
    assert entry.outcome == "review" and "pushes" not in entry.decision
    with store.session() as s:
        waiting = s.get(SalesEntry, entry.id)
        assert waiting is not None
        approve_entry(s, waiting, org, actor="rita@example.com")
        assert waiting.outcome == "processed" and waiting.decision["match"] == "reviewer"
        [push] = s.scalars(select(Push).where(Push.id.in_(waiting.decision["pushes"])))
        assert push.payload["fields"]["Referral_ID__c"] == "R1"


def test_local_names_say_where_each_field_a_push_writes_comes_from() -> None:
    """The referral add's record (identity, member fields, its field_mappings), then the
    object's mappings: what fix-and-repush can also save on the referral."""
    org = OrgConfig.model_validate(
        {
            "programs": [{"key": "main", "name": "Main"}],
            "receiver": {"program": "main"},
            "writeback": {
                "objects": {"Lead": {"fields": MAPPINGS}},
                "referral_add": {
                    "member_fields": {"phone": "Partner_Phone__c", "url": ""},
                    "field_mappings": {"source_note": "Note__c"},
                },
            },
        }
    )
    names = fieldsync.local_names(org, "main", "Lead")
    assert {k: names[k] for k in ("LastName", "Company", "Email", "Note__c", "Plan__c")} == {
        "LastName": "last_name",
        "Company": "company",
        "Email": "email",
        "Note__c": "source_note",
        "Plan__c": "plan",
    }
    assert names["Partner_Phone__c"] == "member.phone"
    assert "Referring_Member_URL__c" not in names and "Referral_ID__c" not in names
    contact = fieldsync.local_names(org, "main", "Contact")  # no referral add to Contacts
    assert "LastName" not in contact and contact["Referring_Member_Name__c"] == "member.name"


def test_what_a_link_back_writes_follows_a_changed_config() -> None:
    """The config-derived parts (the id's field, the fields never written) are kept per
    config object: a new config (a reload; a dropped one's id may be reused) is read again."""

    def config(id_field: str, read_only: str) -> OrgConfig:
        return OrgConfig.model_validate(
            {
                "programs": [{"key": "main", "name": "Main"}],
                "receiver": {"program": "main", "target_match": {"direct_fields": [id_field]}},
                "writeback": {
                    "objects": {
                        "Lead": {
                            "fields": [
                                {
                                    "local": "member.name",
                                    "salesforce": read_only,
                                    "sync": "read_only",
                                }
                            ]
                        }
                    }
                },
            }
        )

    referral = Referral(public_id="R9", first_name="Jane", last_name="Doe")
    member = Member(name="Max", email="max@m.test")
    seen = []
    for id_field, read_only in [
        ("Lead.Referral_ID__c", "Referring_Member_Name__c"),
        ("Lead.Partner_Ref__c", "Referring_Member_Email__c"),
        ("Lead.Referral_ID__c", "Referring_Member_Email__c"),
    ]:
        org = config(id_field, read_only)  # the previous one is dropped
        fields = fieldsync.link_fields(org, "Lead", referral, member, "Main")
        assert fields[id_field.split(".")[1]] == "R9"
        assert read_only not in fields
        seen.append(sorted(fields))
        assert fieldsync.link_fields(org, "Lead", referral, member, "Main") == fields
        assert fieldsync.mappings_for(org, "Lead")[0].salesforce == [read_only]
    assert "Referring_Member_Name__c" in seen[1] and "Referral_ID__c" not in seen[1]
    assert "Partner_Ref__c" in seen[1] and "Partner_Ref__c" not in seen[2]
