"""Lead routing's wiring, piece by piece: the config (stars, delays, fallbacks), the user
mapping (by id and email, active only, batched, cached per org), the owner order around the
pure core (account rule, then the Lead owner priority, then the no-segment fallback) and the
gate's due time with a controllable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from bridge.config import check_config_text
from bridge.routingconfig import RepUser, Routing
from bridge.store import Store
from bridge.store.models import OrgConnection, Program, Push, Referral
from bridge.writeback import gate, lead_owners, users

SALLY, BOB, OLD = "005000000000001AAA", "005000000000002AAA", "005000000000003AAA"

# ---- config ----------------------------------------------------------------------------------


def org_yaml(**extra: Any) -> str:
    org = {"programs": [{"key": "p", "name": "P"}], "receiver": {"program": "p"}, **extra}
    return yaml.safe_dump({"orgs": {"acme": org}})


@pytest.mark.parametrize(
    ("given", "score"), [("all", 0), ("one", 1), ("two", 2), ("three", 3), (55, 55), (2.5, 2.5)]
)
def test_minimum_score_takes_stars_or_a_number(given: Any, score: float) -> None:
    cfg, problems = check_config_text(org_yaml(routing={"minimum_score": given}), "c.yaml")
    assert cfg is not None, problems
    assert cfg.orgs["acme"].routing.minimum_score == score


@pytest.mark.parametrize(
    ("given", "seconds"), [(0, 0), (90, 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400)]
)
def test_delay_takes_seconds_or_a_unit(given: Any, seconds: int) -> None:
    assert Routing(delay=given).delay == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("extra", "wanted"),
    [
        ({"routing": {"minimum_score": "four"}}, "not a score"),
        ({"routing": {"delay": "soon"}}, "not a delay"),
        ({"routing": {"lead_owner": {"fallback": "nobody"}}}, "neither a rep"),
        ({"users": {"a": {"email": "a@x.example", "salesforce_id": SALLY}}}, "exactly one"),
        ({"users": {"a": {"salesforce_id": "003000000000001AAA"}}}, "not a Salesforce user id"),
        ({"routing": {"campaign": {"status": "Sent"}}}, "exactly one of id or name"),
        ({"routing": {"account_rules": [{"name": "x", "segment": [
            {"field": "NumberOfEmployees", "op": "gte", "value": "big"}]}]}}, "needs a number"),
    ],
)  # fmt: skip
def test_bad_routing_config_says_what_is_wrong(extra: dict[str, Any], wanted: str) -> None:
    cfg, problems = check_config_text(org_yaml(**extra), "c.yaml")
    assert cfg is None
    assert wanted in "\n".join(str(p) for p in problems)


# ---- the user mapping ------------------------------------------------------------------------


class Org:
    """A Writer double answering User queries from a list, counting them."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.queries: list[str] = []

    def query(self, soql: str) -> list[dict[str, Any]]:
        self.queries.append(soql)
        if "FROM User" not in soql:
            return []
        return [
            r for r in self.records if f"'{r['Id']}'" in soql or f"'{r['Email'].lower()}'" in soql
        ]

    def collection(self, method: str, path: str, records: list[dict[str, Any]]) -> Any:
        raise AssertionError("the mapping writes nothing")


USERS = [
    {"Id": SALLY, "Email": "sally@acme.example", "IsActive": True},
    {"Id": OLD, "Email": "gone@acme.example", "IsActive": False},
    {"Id": BOB, "Email": "Bob@Acme.example", "IsActive": True},
]


def test_reps_map_to_active_users_by_id_or_email() -> None:
    refs = {
        "sally": RepUser(salesforce_id=SALLY),
        "bob": RepUser(email="bob@acme.example"),  # Salesforce's email case does not matter
        "gone": RepUser(email="gone@acme.example"),
        "old": RepUser(salesforce_id=OLD),
        "ghost": RepUser(email="ghost@acme.example"),
    }
    mapping = users.resolve(Org(USERS), refs)
    assert mapping.users == {"sally": SALLY, "bob": BOB, "gone": None, "old": None, "ghost": None}
    assert mapping.problems == {
        "gone": "the Salesforce user with email gone@acme.example is inactive",
        "old": f"Salesforce user {OLD} is inactive",
        "ghost": "no Salesforce user has the email ghost@acme.example",
    }
    assert mapping.owner("sally") == SALLY and mapping.owner(BOB) == BOB
    assert mapping.owner("ghost") is None and mapping.owner("nobody") is None


def test_the_mapping_is_resolved_in_batches_and_cached_per_org() -> None:
    refs = {f"rep{n}": RepUser(email=f"rep{n}@acme.example") for n in range(250)}
    org = Org([])
    now = [0.0]
    users.forget()
    users.user_map(org, "1", refs, clock=lambda: now[0])
    assert len(org.queries) == 3  # 100 emails a query
    users.user_map(org, "1", refs, clock=lambda: now[0])
    assert len(org.queries) == 3  # cached
    users.user_map(org, "2", refs, clock=lambda: now[0])
    assert len(org.queries) == 6  # another org
    now[0] = 10_000.0
    users.user_map(org, "1", refs, clock=lambda: now[0])
    assert len(org.queries) == 9  # expired
    users.user_map(org, "1", {"x": RepUser(salesforce_id=SALLY)}, clock=lambda: now[0])
    assert len(org.queries) == 10  # the config's mapping changed


# ---- who owns a new record -------------------------------------------------------------------

MAPPED = users.UserMap({"sally": SALLY, "bob": BOB, "ghost": None})
RULES = [
    {
        "name": "enterprise",
        "segment": [{"field": "NumberOfEmployees", "op": "gte", "value": 1000}],
        "owner_field": "OwnerId",
        "then_by": "Backup_Owner__c",
        "fallback": "bob",
    }
]
BIG = {"NumberOfEmployees": 5000, "OwnerId": SALLY, "Backup_Owner__c": BOB}


@pytest.mark.parametrize(
    ("config", "referral", "account", "owner", "source"),
    [
        # an account in a segment: its owner field, then by the second, then the rule's fallback
        ({"account_rules": RULES}, {}, BIG, SALLY, "account_rule"),
        ({"account_rules": RULES}, {}, {**BIG, "OwnerId": OLD}, BOB, "account_rule"),
        ({"account_rules": RULES}, {}, {**BIG, "OwnerId": None, "Backup_Owner__c": None}, BOB,
         "fallback"),
        # ... and it wins over the touches
        ({"account_rules": RULES, "lead_owner": {}}, {"meeting_owner": "bob"}, BIG, SALLY,
         "account_rule"),
        # no segment: the Lead owner priority, in Signals' order, each switchable
        ({"account_rules": RULES, "lead_owner": {}}, {"meeting_owner": "bob"},
         {"NumberOfEmployees": 5}, BOB, "meeting"),
        ({"lead_owner": {}}, {"meeting_owner": "ghost", "routed_owner": "sally"}, None, SALLY,
         "routed"),
        ({"lead_owner": {"routed": False}}, {"routed_owner": "sally", "closed_by": "bob"}, None,
         BOB, "closed"),
        ({"lead_owner": {"closed": False, "fallback": "bob"}}, {"closed_by": "sally"}, None, BOB,
         "fallback"),
        # nobody from the touches: the fallback for companies in no segment
        ({"account_rules": RULES, "lead_owner": {}, "no_segment_fallback": "sally"},
         {"meeting_owner": "ghost"}, None, SALLY, "fallback"),
        ({"account_rules": RULES, "no_segment_fallback": BOB}, {}, {"NumberOfEmployees": 5}, BOB,
         "fallback"),
        # nobody at all: unresolved, never the integration user
        ({"lead_owner": {}}, {"meeting_owner": "ghost"}, None, None, None),
        ({"account_rules": RULES}, {}, None, None, None),
    ],
)  # fmt: skip
def test_the_owner_of_a_new_record(
    config: dict[str, Any],
    referral: dict[str, Any],
    account: dict[str, Any] | None,
    owner: str | None,
    source: str | None,
) -> None:
    choice = lead_owners.choose(referral, account, Routing.model_validate(config), MAPPED)
    assert (choice.user_id, choice.source) == (owner, source), choice


# ---- the gate: criteria and delay with a controllable clock ---------------------------------

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def held(sqlite_store: Store) -> tuple[Store, Any, int]:
    text = org_yaml(routing={"minimum_score": 2, "delay": "1h"})
    cfg, problems = check_config_text(text, "c.yaml")
    assert cfg is not None, problems
    with sqlite_store.session() as s:
        conn = OrgConnection(name="acme", org_id="00D000000000001AAA", login_url="https://x",
                             username="i@x", auth_method="jwt")  # fmt: skip
        s.add(conn)
        s.flush()
        program = Program(key="p", name="P", org_connection_id=conn.id)
        s.add(program)
        s.flush()
        referral = Referral(public_id="ref_gate", program_id=program.id, last_name="G", score=1)
        s.add(referral)
        s.flush()
        return sqlite_store, cfg, referral.id


def _route(store: Store, cfg: Any, rid: int, now: datetime, **changes: Any) -> Push | None:
    with store.session() as s:
        referral = s.get(Referral, rid)
        assert referral is not None
        for name, value in changes.items():
            setattr(referral, name, value)
        target = gate.program_target(s, cfg, referral.program_id)
        assert target is not None
        return gate.route_referral(s, *target, referral, now=now)


def _referral(store: Store, rid: int) -> Referral:
    with store.session() as s:
        referral = s.get(Referral, rid)
        assert referral is not None
        return referral


def test_the_delay_counts_from_qualifying_and_survives_in_the_store(
    held: tuple[Store, Any, int],
) -> None:
    store, cfg, rid = held
    assert _route(store, cfg, rid, T0) is None
    assert _referral(store, rid).send_due_at is None  # below the criteria: nothing due

    assert _route(store, cfg, rid, T0 + timedelta(minutes=5), score=3) is None
    due = T0 + timedelta(minutes=65)
    assert _referral(store, rid).send_due_at == due
    # a later change does not restart the delay
    assert _route(store, cfg, rid, T0 + timedelta(minutes=30), score=2) is None
    assert _referral(store, rid).send_due_at == due

    assert gate.release_due(store, None, cfg, now=due - timedelta(seconds=1)) == []
    [pid] = gate.release_due(store, None, cfg, now=due)
    assert _referral(store, rid).send_due_at is None
    assert gate.release_due(store, None, cfg, now=due + timedelta(hours=1)) == []  # once
    with store.session() as s:
        push = s.get(Push, pid)
        assert push is not None and push.state == "pending" and push.referral_id == rid


def test_dropping_below_the_minimum_cancels_the_wait_and_a_rise_starts_it_again(
    held: tuple[Store, Any, int],
) -> None:
    store, cfg, rid = held
    _route(store, cfg, rid, T0, score=2)
    _route(store, cfg, rid, T0 + timedelta(minutes=10), score=1)
    assert _referral(store, rid).send_due_at is None
    assert gate.release_due(store, None, cfg, now=T0 + timedelta(hours=2)) == []
    _route(store, cfg, rid, T0 + timedelta(hours=3), score=2)
    assert _referral(store, rid).send_due_at == T0 + timedelta(hours=4)


def test_the_delay_counts_from_the_conversations_close_when_there_is_one(
    held: tuple[Store, Any, int],
) -> None:
    store, cfg, rid = held
    closed = T0 + timedelta(hours=5)
    _route(store, cfg, rid, T0, score=3, conversation_closed_at=closed)
    assert _referral(store, rid).send_due_at == closed + timedelta(hours=1)


def test_a_referral_already_in_salesforce_is_not_routed_again(
    held: tuple[Store, Any, int],
) -> None:
    store, cfg, rid = held
    with store.session() as s:
        s.get(Referral, rid).sf_lead_id = "00Q000000000001AAA"  # type: ignore[union-attr]
    assert _route(store, cfg, rid, T0, score=3) is None
    assert _referral(store, rid).send_due_at is None
    assert gate.release_due(store, None, cfg, now=T0 + timedelta(days=1)) == []
