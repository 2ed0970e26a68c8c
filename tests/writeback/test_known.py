"""Known records: what the index answers, what it learns and forgets, and the sender's use of it
(no lookup for a known person; a stale id falls back to the lookup for that push)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from bridge.store import Store
from bridge.writeback.known import KNOWN_RECORD_MAX_AGE, KnownRecords, learn_changes
from bridge.writeback.sender import send
from tests.writeback.sfdouble import SalesforceDouble
from tests.writeback.test_pushes import (
    NOW,
    SQLITE_ONLY,
    add_referral,
    org_config,
    queue_activities,
    queue_referrals,
    seeded,
    sf,
)

__all__ = ["seeded", "sf"]  # the fixtures

LEAD, CONTACT, OTHER = "00Q000000000001AAA", "003000000000001AAA", "003000000000002AAA"


@pytest.fixture
def index(redis_client: redis.Redis) -> KnownRecords:
    return KnownRecords(redis_client, 7)


def ids(index: KnownRecords, *emails: str) -> dict[str, tuple[str, str]]:
    return {k: (v.sobject, v.id) for k, v in index.whos(list(emails)).items()}


def test_a_contact_wins_over_a_lead_and_the_first_contact_stays(index: KnownRecords) -> None:
    index.learn([("Ann@Example.com", "Lead", LEAD)])
    assert ids(index, "ann@example.com") == {"ann@example.com": ("Lead", LEAD)}
    index.learn([("ann@example.com", "Contact", CONTACT)])
    assert ids(index, "ANN@example.com") == {"ann@example.com": ("Contact", CONTACT)}
    index.learn([("ann@example.com", "Lead", LEAD), ("ann@example.com", "Contact", OTHER)])
    assert ids(index, "ann@example.com") == {"ann@example.com": ("Contact", CONTACT)}
    # the WhoId lookup's own answer (oldest Contact, else oldest Lead) replaces what it knew
    index.learn([("ann@example.com", "Contact", OTHER)], lookup=True)
    assert ids(index, "ann@example.com") == {"ann@example.com": ("Contact", OTHER)}
    assert ids(index, "nobody@example.com", None) == {}  # type: ignore[arg-type]


def test_forget_a_changed_email_and_old_entries(
    index: KnownRecords, redis_client: redis.Redis
) -> None:
    index.learn([("ann@example.com", "Lead", LEAD), ("bob@example.com", "Contact", CONTACT)])
    index.forget([LEAD, "00Q0000000000zzAAA"])
    assert ids(index, "ann@example.com", "bob@example.com") == {
        "bob@example.com": ("Contact", CONTACT)
    }
    # the Contact's email changed: the old address no longer names it
    index.learn([("robert@example.com", "Contact", CONTACT)])
    assert ids(index, "bob@example.com", "robert@example.com") == {
        "robert@example.com": ("Contact", CONTACT)
    }
    later = datetime.now(UTC) + KNOWN_RECORD_MAX_AGE + timedelta(seconds=1)
    assert index.whos(["robert@example.com"], now=later) == {}  # not trusted any more
    # another org's index is another index; no Redis: nothing known, nothing learnt
    assert KnownRecords(redis_client, 8).whos(["robert@example.com"]) == {}
    blind = KnownRecords(None, 7)
    blind.learn([("carl@example.com", "Lead", LEAD)])
    assert blind.whos(["robert@example.com", "carl@example.com"]) == {}


def test_captured_changes_feed_and_drop_entries(
    index: KnownRecords, redis_client: redis.Redis
) -> None:
    learn_changes(
        redis_client,
        [
            (7, "Lead", {"Id": LEAD, "Email": "ann@example.com"}, False),
            (7, "Contact", {"Id": CONTACT, "Email": "bob@example.com"}, False),
            (7, "Account", {"Id": "001000000000001AAA", "Email": "acct@example.com"}, False),
            (7, "Contact", {"Id": OTHER, "LastName": "no email in this change"}, False),
        ],
    )
    assert ids(index, "ann@example.com", "bob@example.com", "acct@example.com") == {
        "ann@example.com": ("Lead", LEAD),
        "bob@example.com": ("Contact", CONTACT),
    }
    learn_changes(
        redis_client,
        [
            (7, "Lead", {"Id": LEAD, "IsConverted": True, "Email": "ann@example.com"}, False),
            (7, "Contact", {"Id": CONTACT}, True),  # deleted
        ],
    )
    assert ids(index, "ann@example.com", "bob@example.com") == {}


def _activity(n: int, email: str) -> dict[str, str]:
    return {"id": f"act-{n}", "kind": "email", "email": email, "subject": f"Hello {n}",
            "occurred_at": "2026-11-20T10:00:00Z"}  # fmt: skip


@SQLITE_ONLY
def test_a_known_person_needs_no_lookup_and_a_stale_id_falls_back(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble, redis_client: redis.Redis
) -> None:
    cfg = org_config()
    index = KnownRecords(redis_client, seeded["org"])
    ann = sf.add("Contact", Email="ann@example.com")
    # the first activity for Ann looks her up; the write result teaches the index
    first = queue_activities(store, seeded, cfg, [_activity(1, "ann@example.com")])
    assert send(store, sf.writer(), cfg, first, now=NOW, known=index).sent == first
    assert len(sf.queries) == 2  # Contact, then Lead, in one composite call
    assert ids(index, "ann@example.com") == {"ann@example.com": ("Contact", ann["Id"])}

    # known: the Task goes straight to her id, one call and no query
    calls = len(sf.rsps.calls)
    second = queue_activities(store, seeded, cfg, [_activity(2, "ann@example.com")])
    assert send(store, sf.writer(), cfg, second, now=NOW, known=index).sent == second
    assert len(sf.queries) == 2 and len(sf.rsps.calls) == calls + 1
    assert [t["WhoId"] for t in sf.records["Task"]] == [ann["Id"], ann["Id"]]

    # Ann's Contact is deleted and she comes back as a Lead: the known id is refused, the
    # entry dropped, and that push looks her up and lands once on the Lead
    sf.records["Contact"].clear()
    lead = sf.add("Lead", Email="ann@example.com")

    def deleted(sobject: str, fields: dict[str, object]) -> dict[str, object] | None:
        if fields.get("WhoId") == ann["Id"]:
            return {"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted",
                    "fields": ["WhoId"]}  # fmt: skip
        return None

    sf.fault = deleted
    third = queue_activities(store, seeded, cfg, [_activity(3, "ann@example.com")])
    assert send(store, sf.writer(), cfg, third, now=NOW, known=index).sent == third
    tasks = [t for t in sf.records["Task"] if t["SFBridge_Activity_Id__c"] == "act-3"]
    assert [t["WhoId"] for t in tasks] == [lead["Id"]]
    assert ids(index, "ann@example.com") == {"ann@example.com": ("Lead", lead["Id"])}


@SQLITE_ONLY
def test_referral_writes_teach_the_index_but_referrals_always_look_up(
    store: Store, seeded: dict[str, int], sf: SalesforceDouble, redis_client: redis.Redis
) -> None:
    cfg = org_config()
    index = KnownRecords(redis_client, seeded["org"])
    [pid] = queue_referrals(store, seeded, cfg, [add_referral(store, seeded, 1)])
    assert send(store, sf.writer(), cfg, [pid], now=NOW, known=index).sent == [pid]
    [lead] = sf.records["Lead"]
    assert ids(index, "person1@example.com") == {"person1@example.com": ("Lead", lead["Id"])}
    looked_up = len(sf.queries)
    again = add_referral(store, seeded, 2, email="person1@example.com")
    [pid2] = queue_referrals(store, seeded, cfg, [again])
    send(store, sf.writer(), cfg, [pid2], now=NOW, known=index)
    assert len(sf.queries) > looked_up  # the decision needs the record's values: looked up


def test_captured_changes_count_in_their_order(
    index: KnownRecords, redis_client: redis.Redis
) -> None:
    """An edit and then the delete of one Lead in one batch: forgotten (a delete is the last
    word); the other way round, a record that comes back is learnt again."""
    edited = (7, "Lead", {"Id": LEAD, "Email": "ann@example.com"}, False)
    deleted = (7, "Lead", {"Id": LEAD}, True)
    learn_changes(redis_client, [edited, deleted])
    assert ids(index, "ann@example.com") == {}
    learn_changes(redis_client, [deleted, edited])
    assert ids(index, "ann@example.com") == {"ann@example.com": ("Lead", LEAD)}
