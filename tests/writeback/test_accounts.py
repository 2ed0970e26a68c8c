"""Accounts for referred Contacts: root-domain dedupe, sync modes, one push per account write."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import responses
from sqlalchemy import select

from bridge.config import ObjectSync
from bridge.store import Store
from bridge.store.models import Push
from bridge.writeback.accounts import plan_account, referral_domain
from bridge.writeback.sender import send
from tests.writeback.sfdouble import SalesforceDouble
from tests.writeback.test_pushes import (
    NOW,
    SQLITE_ONLY,
    add_referral,
    get_referral,
    org_config,
    queue_referrals,
    seed,
)


@pytest.mark.parametrize(
    ("referral", "domain"),
    [
        ({"email": "ann@foo.co.uk"}, "foo.co.uk"),
        ({"email": "ann@mail.foo.co.uk"}, "foo.co.uk"),
        ({"email": "ann@gmail.com"}, None),  # a mailbox provider says nothing of the company
        ({"email": "ann@gmail.com", "website": "https://www.foo.co.uk/about"}, "foo.co.uk"),
        ({"domain": "b.github.io", "email": "x@a.github.io"}, "b.github.io"),
        ({"email": None}, None),
        ({"email": "not an email"}, None),
    ],
)
def test_referral_domain(referral: dict[str, Any], domain: str | None) -> None:
    assert referral_domain(referral) == domain


SYNC = {
    "dedupe": "root_domain",
    "fields": [
        {"local": "industry", "salesforce": "Industry", "sync": "ours", "strategy": "if_empty"}
    ],
}


@pytest.mark.parametrize(
    ("mode", "existing", "expected"),
    [
        (
            "create_update",
            None,
            {"create": {"Name": "Foo Ltd", "Website": "foo.co.uk", "Industry": "Retail"}},
        ),
        ("update_only", None, {}),
        (
            "create_update",
            {"Id": "001A", "Industry": None},
            {"account_id": "001A", "update": {"Industry": "Retail"}},
        ),
        ("create_update", {"Id": "001A", "Industry": "Banking"}, {"account_id": "001A"}),
        (
            "update_only",
            {"Id": "001A", "Industry": None},
            {"account_id": "001A", "update": {"Industry": "Retail"}},
        ),
    ],
)
def test_plan_account(mode: str, existing: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    sync = ObjectSync.model_validate({**SYNC, "sync_mode": mode})
    plan = plan_account("foo.co.uk", {"company": "Foo Ltd", "industry": "Retail"}, existing, sync)
    assert (plan.account_id, plan.create, plan.update) == (
        expected.get("account_id"),
        expected.get("create"),
        expected.get("update", {}),
    )


@pytest.fixture
def sf() -> Iterator[SalesforceDouble]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield SalesforceDouble(rsps)


def config(mode: str = "create_update") -> Any:
    return org_config(
        {
            "referral_add": {"create_as": "Contact"},
            "objects": {"Account": {"dedupe": "root_domain", "sync_mode": mode}},
        }
    )


@SQLITE_ONLY
def test_contacts_are_linked_to_accounts_by_root_domain(store: Store, sf: SalesforceDouble) -> None:
    seeded = seed(store)
    foo = sf.add("Account", Name="Foo", Website="https://www.foo.co.uk")
    github_a = sf.add("Account", Name="A", Website="a.github.io")
    cfg = config()
    ids = [
        add_referral(store, seeded, 1, email="ann@foo.co.uk"),
        add_referral(store, seeded, 2, email="bob@bar.example", company="Bar Ltd"),
        add_referral(store, seeded, 3, email="bea@bar.example"),  # same new domain: one account
        add_referral(store, seeded, 4, email="carl@gmail.com"),
        add_referral(store, seeded, 5, email="dee@b.github.io"),
    ]
    pushes = queue_referrals(store, seeded, cfg, ids)
    report = send(store, sf.writer(), cfg, pushes, now=NOW)
    assert sorted(report.sent) == sorted(pushes)

    contacts = {c["Email"]: c for c in sf.records["Contact"]}
    accounts = {a["Website"]: a for a in sf.records["Account"]}
    assert contacts["ann@foo.co.uk"]["AccountId"] == foo["Id"]
    bar = accounts["bar.example"]
    assert bar["Name"] == "Bar Ltd"
    assert contacts["bob@bar.example"]["AccountId"] == contacts["bea@bar.example"]["AccountId"]
    assert contacts["bob@bar.example"]["AccountId"] == bar["Id"]
    assert "AccountId" not in contacts["carl@gmail.com"]
    assert contacts["dee@b.github.io"]["AccountId"] == accounts["b.github.io"]["Id"]
    assert contacts["dee@b.github.io"]["AccountId"] != github_a["Id"]
    assert len(sf.records["Account"]) == 4  # Foo, A, and the two created

    # every account write is a saved push
    with store.session() as s:
        account_pushes = s.scalars(select(Push).where(Push.sobject_type == "Account")).all()
        assert {(p.kind, p.state) for p in account_pushes} == {("field_update", "sent")}
        assert {p.sf_id for p in account_pushes} == {bar["Id"], accounts["b.github.io"]["Id"]}
    assert get_referral(store, ids[0]).sf_contact_id == contacts["ann@foo.co.uk"]["Id"]


@SQLITE_ONLY
def test_update_only_links_but_never_creates_accounts(store: Store, sf: SalesforceDouble) -> None:
    seeded = seed(store)
    foo = sf.add("Account", Name="Foo", Website="foo.co.uk")
    cfg = config("update_only")
    ids = [
        add_referral(store, seeded, 1, email="ann@foo.co.uk"),
        add_referral(store, seeded, 2, email="bob@bar.example"),
    ]
    send(store, sf.writer(), cfg, queue_referrals(store, seeded, cfg, ids), now=NOW)
    contacts = {c["Email"]: c for c in sf.records["Contact"]}
    assert contacts["ann@foo.co.uk"]["AccountId"] == foo["Id"]
    assert "AccountId" not in contacts["bob@bar.example"]
    assert len(sf.records["Account"]) == 1


@SQLITE_ONLY
def test_a_failed_account_leaves_the_contact_unlinked_but_written(
    store: Store, sf: SalesforceDouble
) -> None:
    seeded = seed(store)
    cfg = config()
    sf.fault = lambda sobject, fields: (
        {
            "statusCode": "REQUIRED_FIELD_MISSING",
            "message": "Required fields are missing: [Region__c]",
            "fields": ["Region__c"],
        }
        if sobject == "Account"
        else None
    )
    [pid] = queue_referrals(
        store, seeded, cfg, [add_referral(store, seeded, 1, email="bob@bar.example")]
    )
    report = send(store, sf.writer(), cfg, [pid], now=NOW)
    assert report.sent == [pid]
    [contact] = sf.records["Contact"]
    assert "AccountId" not in contact
    with store.session() as s:
        account_push = s.scalars(select(Push).where(Push.sobject_type == "Account")).one()
        assert (account_push.state, account_push.error_code) == ("failed", "REQUIRED_FIELD_MISSING")


@SQLITE_ONLY
def test_an_existing_contact_with_an_account_keeps_it(store: Store, sf: SalesforceDouble) -> None:
    seeded = seed(store)
    cfg = config()
    contact = sf.add("Contact", Email="ann@foo.co.uk", LastName="Known", AccountId="001KEEP")
    [pid] = queue_referrals(
        store, seeded, cfg, [add_referral(store, seeded, 1, email="ann@foo.co.uk")]
    )
    send(store, sf.writer(), cfg, [pid], now=NOW)
    assert contact["AccountId"] == "001KEEP" and "Account" not in sf.records
    assert all("FROM Account" not in q for q in sf.queries)


@SQLITE_ONLY
def test_an_account_created_before_a_crash_is_not_created_again(
    store: Store, sf: SalesforceDouble
) -> None:
    """The account create reached Salesforce but its result was never saved (a crash): the
    resend links the Contact to that account and settles the pending create, so no later
    send (the sweep) creates the account a second time."""
    from bridge.writeback.pushes import queue_push

    seeded = seed(store)
    cfg = config()
    [pid] = queue_referrals(
        store, seeded, cfg, [add_referral(store, seeded, 1, email="bob@bar.example")]
    )
    created = sf.add("Account", Name="bar.example", Website="bar.example")
    with store.session() as s:
        org_id = s.get(Push, pid).org_connection_id
        stale, _ = queue_push(
            s,
            kind="field_update",
            idempotency_key=f"account:{org_id}:bar.example:push-{pid}",
            sobject_type="Account",
            payload={"fields": {"Name": "bar.example", "Website": "bar.example"}},
            org_connection_id=org_id,
        )
        stale.attempts = 1
        s.flush()
        stale_id = stale.id

    assert send(store, sf.writer(), cfg, [pid], now=NOW).sent == [pid]
    [contact] = sf.records["Contact"]
    assert contact["AccountId"] == created["Id"]
    with store.session() as s:
        assert (s.get(Push, stale_id).state, s.get(Push, stale_id).error_code) == (
            "skipped",
            "existing_account",
        )
    send(store, sf.writer(), cfg, [stale_id], now=NOW)  # what the sweep would do
    assert len(sf.records["Account"]) == 1
