"""Writeback end to end against the local org: a real `sfbridge devorg` over HTTPS, connected with
the JWT bearer flow as the integration user, checked through the sales user's own API view."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from rq import Queue, SimpleWorker
from simple_salesforce import format_soql

from bridge import context, defaults
from bridge.config import OrgConfig, load_config
from bridge.devorg.testing import DevOrg
from bridge.orgs import jwt_credentials, read_private_key, save_connection
from bridge.salesforce.connection import connect
from bridge.store import Store
from bridge.store.models import OrgConnection, Program, Push, Referral
from bridge.vault import Vault, generate_key
from bridge.writeback import jobs, queue_activity, queue_referral_add, repush
from bridge.writeback.client import OrgWriter
from bridge.writeback.sender import send

pytestmark = pytest.mark.e2e


def write_config(
    path: Path, devorg: DevOrg, writeback: dict[str, Any] | None = None, **org: Any
) -> Path:
    info = devorg.info
    path.write_text(
        yaml.safe_dump(
            {
                "orgs": {
                    "acme": {
                        "login_url": info["login_url"],
                        "client_id": info["client_id"],
                        "username": info["users"]["integration"]["username"],
                        "private_key_file": info["jwt_private_key_path"],
                        "ca_bundle": info["ca_path"],
                        "programs": [{"key": "partners", "name": "Partner Program"}],
                        "receiver": {"program": "partners"},
                        "writeback": writeback or {},
                        **org,
                    }
                }
            }
        )
    )
    return path


class Bridge:
    """The writeback side of the bridge, connected to the local org."""

    def __init__(self, store: Store, devorg: DevOrg, config_path: Path) -> None:
        self.vault_key = generate_key()
        vault = Vault([self.vault_key])
        self.store = store
        self.devorg = devorg
        self.config_path = config_path
        self.org_config: OrgConfig = load_config(str(config_path)).orgs["acme"]
        key = read_private_key(devorg.info["jwt_private_key_path"])
        self.org = connect(jwt_credentials("acme", self.org_config, key))
        self.connection_id = save_connection(
            store, vault, "acme", self.org_config, self.org, key, auth_method="jwt"
        ).id
        with store.session() as s:
            program = Program(key="partners", name="Partner Program")
            s.add(program)
            s.flush()
            self.program_id = program.id
        self.sales = devorg.sf("sales")

    def configure(self, writeback: dict[str, Any], **org: Any) -> None:
        write_config(self.config_path, self.devorg, writeback, **org)
        self.org_config = load_config(str(self.config_path)).orgs["acme"]

    def referral(self, n: int, **values: Any) -> int:
        with self.store.session() as s:
            referral = Referral(
                public_id=f"ref_e2e_{n}",
                program_id=self.program_id,
                first_name=values.pop("first_name", "Rita"),
                last_name=values.pop("last_name", f"Referred{n}"),
                email=values.pop("email", f"rita{n}@example.com"),
                **values,
            )
            s.add(referral)
            s.flush()
            return referral.id

    def queue_referral(self, referral_id: int) -> int:
        with self.store.session() as s:
            org = s.get(OrgConnection, self.connection_id)
            referral = s.get(Referral, referral_id)
            assert org is not None and referral is not None
            return queue_referral_add(s, org, self.org_config, referral).id

    def send(self, *push_ids: int, now: datetime | None = None) -> Any:
        return send(self.store, OrgWriter.for_org(self.org), self.org_config, push_ids, now=now)

    def push(self, push_id: int) -> Push:
        with self.store.session() as s:
            push = s.get(Push, push_id)
            assert push is not None
            return push

    def referral_row(self, referral_id: int) -> Referral:
        with self.store.session() as s:
            referral = s.get(Referral, referral_id)
            assert referral is not None
            return referral

    def leads(self, email: str) -> list[dict[str, Any]]:
        soql = format_soql(
            "SELECT Id, FirstName, LastName, Company, Email, Referral_ID__c, Referral_Code__c, "
            "Referral_Source__c, CreatedById FROM Lead WHERE Email = {}",
            email,
        )
        return [dict(r) for r in self.sales.query_all(soql)["records"]]


PACKAGE_FIELD = (
    Path(__file__).resolve().parents[2]
    / "force-app/main/default/objects/Lead/fields/Referral_ID__c.field-meta.xml"
)


@pytest.fixture
def bridge(clean_devorg: DevOrg, sqlite_store: Store, tmp_path: Path) -> Iterator[Bridge]:
    if not PACKAGE_FIELD.exists():
        pytest.skip("the package's custom fields (force-app) are not in this checkout")
    yield Bridge(sqlite_store, clean_devorg, write_config(tmp_path / "sfbridge.yaml", clean_devorg))


def test_referral_add_creates_a_lead_and_a_resend_does_not_duplicate(bridge: Bridge) -> None:
    rid = bridge.referral(1, company=None, fields={"source": "Spring campaign"})
    pid = bridge.queue_referral(rid)
    report = bridge.send(pid)
    assert report.sent == [pid]

    [lead] = bridge.leads("rita1@example.com")
    assert lead["Id"].startswith("00Q") and len(lead["Id"]) == 18
    assert lead["Referral_ID__c"] == "ref_e2e_1"
    assert lead["Referral_Source__c"] == "Spring campaign"
    assert (lead["LastName"], lead["Company"]) == ("Referred1", "[not provided]")
    assert lead["CreatedById"] == bridge.devorg.user("integration")["id"]
    assert bridge.push(pid).sf_id == lead["Id"]
    assert bridge.referral_row(rid).sf_lead_id == lead["Id"]

    # a crash after Salesforce saved it leaves the push pending: sending again upserts the same
    with bridge.store.session() as s:
        s.get(Push, pid).state = "pending"  # type: ignore[union-attr]
    report = bridge.send(pid)
    assert report.sent == [pid], bridge.push(pid).error_message
    assert [lead["Id"]] == [r["Id"] for r in bridge.leads("rita1@example.com")]


def _existing_lead(bridge: Bridge, email: str, *, age: timedelta) -> str:
    """A Lead the sales user entered `age` ago (by the org's clock)."""
    bridge.devorg.control("clock", {"set": (datetime.now(UTC) - age).isoformat()})
    try:
        sales = bridge.devorg.sf("sales")
        result = sales.Lead.create({"LastName": "Known", "Company": "Initech", "Email": email})
    finally:
        bridge.devorg.control("clock", {"reset": True})
    return str(result["id"])


def test_on_existing_email_update_skip_and_deny(bridge: Bridge) -> None:
    # update: the referral's fields land on the existing Lead
    bridge.configure({"referral_add": {"on_existing_email": "update"}})
    existing = _existing_lead(bridge, "known1@example.com", age=timedelta(days=3))
    rid = bridge.referral(1, email="known1@example.com")
    pid = bridge.queue_referral(rid)
    bridge.send(pid)
    [lead] = bridge.leads("known1@example.com")
    assert lead["Id"] == existing and lead["Referral_ID__c"] == "ref_e2e_1"
    assert (lead["LastName"], lead["Company"]) == ("Known", "Initech")  # not overwritten
    assert bridge.referral_row(rid).sf_lead_id == existing

    # skip: nothing written, the push says why
    bridge.configure({"referral_add": {"on_existing_email": "skip"}})
    existing = _existing_lead(bridge, "known2@example.com", age=timedelta(days=3))
    pid = bridge.queue_referral(bridge.referral(2, email="known2@example.com"))
    bridge.send(pid)
    push = bridge.push(pid)
    assert (push.state, push.error_code) == ("skipped", "existing_email")
    [lead] = bridge.leads("known2@example.com")
    assert lead["Referral_ID__c"] is None

    # deny: an old record denies the referral...
    bridge.configure({"referral_add": {"on_existing_email": "deny"}})
    _existing_lead(bridge, "known3@example.com", age=timedelta(hours=2))
    rid = bridge.referral(3, email="known3@example.com")
    pid = bridge.queue_referral(rid)
    bridge.send(pid)
    assert bridge.referral_row(rid).status == "denied"
    assert bridge.push(pid).error_code == "existing_email"
    assert bridge.leads("known3@example.com")[0]["Referral_ID__c"] is None

    # ...but one created within the hour is updated instead
    existing = _existing_lead(bridge, "known4@example.com", age=timedelta(minutes=20))
    rid = bridge.referral(4, email="known4@example.com")
    pid = bridge.queue_referral(rid)
    bridge.send(pid)
    assert bridge.referral_row(rid).status == "pending"
    [lead] = bridge.leads("known4@example.com")
    assert lead["Id"] == existing and lead["Referral_ID__c"] == "ref_e2e_4"


def test_an_activity_upserted_twice_is_one_task(bridge: Bridge) -> None:
    who = bridge.sales.Contact.create({"LastName": "Ann", "Email": "ann@example.com"})["id"]
    activity = {
        "id": "act-e2e-1",
        "kind": "call",
        "email": "ann@example.com",
        "subject": "Intro",
        "occurred_at": "2026-11-20T15:30:00Z",
    }
    pushes = []
    for subject in ("Intro", "Intro call"):
        with bridge.store.session() as s:
            org = s.get(OrgConnection, bridge.connection_id)
            assert org is not None
            pushes.append(
                queue_activity(s, org, bridge.org_config, {**activity, "subject": subject}).id
            )
        assert bridge.send(pushes[-1]).sent == [pushes[-1]]
    tasks = bridge.sales.query_all(
        format_soql(
            "SELECT Id, Subject, WhoId, Type, Status, SFBridge_Activity_Id__c FROM Task "
            "WHERE SFBridge_Activity_Id__c = {}",
            "act-e2e-1",
        )
    )["records"]
    assert len(tasks) == 1
    assert tasks[0]["Subject"] == "Call: Intro call" and tasks[0]["WhoId"] == who
    assert (tasks[0]["Type"], tasks[0]["Status"]) == ("Call", "Completed")
    assert bridge.push(pushes[0]).sf_id == bridge.push(pushes[1]).sf_id == tasks[0]["Id"]

    # a meeting is an Event with a start and an end, upserted the same way
    meeting = {
        "id": "act-e2e-2",
        "kind": "meeting",
        "email": "ann@example.com",
        "subject": "Demo",
        "occurred_at": "2026-11-21T10:00:00Z",
        "duration_minutes": 45,
    }
    for _ in range(2):
        with bridge.store.session() as s:
            org = s.get(OrgConnection, bridge.connection_id)
            assert org is not None
            pid = queue_activity(s, org, bridge.org_config, meeting).id
            s.get(Push, pid).state = "pending"  # type: ignore[union-attr]
        assert bridge.send(pid).sent == [pid], bridge.push(pid).error_message
    events = bridge.sales.query_all(
        format_soql(
            "SELECT Id, Subject, WhoId, DurationInMinutes FROM Event "
            "WHERE SFBridge_Activity_Id__c = {}",
            "act-e2e-2",
        )
    )["records"]
    assert len(events) == 1 and events[0]["WhoId"] == who
    assert (events[0]["Subject"], events[0]["DurationInMinutes"]) == ("Meeting: Demo", 45)


def test_a_validation_error_is_saved_and_repush_after_the_fix_succeeds(bridge: Bridge) -> None:
    rid = bridge.referral(1, last_name="L" * 81)  # Lead.LastName is Text(80)
    pid = bridge.queue_referral(rid)
    report = bridge.send(pid)
    assert report.failed == [pid]
    push = bridge.push(pid)
    assert push.state == "failed" and push.error_class == "permanent"
    assert push.error_code == "STRING_TOO_LONG" and push.error_fields == ["LastName"]
    assert push.error_message
    assert bridge.leads("rita1@example.com") == []

    with bridge.store.session() as s:
        s.get(Referral, rid).last_name = "Fixed"  # type: ignore[union-attr]
        repush(s, pid, actor="admin@example.com")
    assert bridge.send(pid).sent == [pid]
    [lead] = bridge.leads("rita1@example.com")
    assert lead["LastName"] == "Fixed" and bridge.push(pid).sf_id == lead["Id"]


def test_the_outbound_worker_sends_through_the_stored_connection(
    bridge: Bridge,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The production path: Runtime from the environment, open_org, rq worker."""
    monkeypatch.setenv("SFBRIDGE_DATABASE_URL", bridge.store.url)
    monkeypatch.setenv("SFBRIDGE_CONFIG", str(bridge.config_path))
    monkeypatch.setenv("SFBRIDGE_INSTANCE_DIR", str(tmp_path))
    monkeypatch.setenv("SFBRIDGE_ENCRYPTION_KEYS", bridge.vault_key)
    context.set_context(None)  # the job builds its context from the environment
    try:
        pid = bridge.queue_referral(bridge.referral(7))
        jobs.enqueue_push(redis_client, [pid])
        SimpleWorker(
            [Queue(defaults.OUTBOUND_QUEUE, connection=redis_client)], connection=redis_client
        ).work(burst=True)
    finally:
        context.set_context(None)
    assert bridge.push(pid).state == "sent"
    assert len(bridge.leads("rita7@example.com")) == 1


def test_a_locked_row_is_retried_and_an_expired_session_renewed(bridge: Bridge) -> None:
    version = bridge.devorg.info["api_version"]
    collections = f"/services/data/v{version}/composite/sobjects"
    bridge.devorg.control(
        "faults",
        {"kind": "error", "error_code": "UNABLE_TO_LOCK_ROW", "path": collections, "count": 1},
    )
    pid = bridge.queue_referral(bridge.referral(1))
    report = bridge.send(pid)
    push = bridge.push(pid)
    assert report.retry == [pid]
    assert (push.state, push.error_code, push.error_class) == (
        "pending",
        "UNABLE_TO_LOCK_ROW",
        "transient",
    )
    assert bridge.leads("rita1@example.com") == []

    # the retry runs with an expired session: the connection re-authenticates once
    bridge.devorg.control(
        "faults", {"kind": "error", "error_code": "INVALID_SESSION_ID", "count": 1}
    )
    assert bridge.send(pid).sent == [pid]
    push = bridge.push(pid)
    assert push.attempts == 2 and push.error_code is None
    assert len(bridge.leads("rita1@example.com")) == 1


def test_referred_contacts_are_linked_to_accounts_by_root_domain(bridge: Bridge) -> None:
    bridge.configure(
        {
            "referral_add": {"create_as": "Contact"},
            "objects": {"Account": {"dedupe": "root_domain", "sync_mode": "create_update"}},
        }
    )
    foo = bridge.sales.Account.create({"Name": "Foo", "Website": "https://www.foo.co.uk"})["id"]
    pushes = [
        bridge.queue_referral(bridge.referral(1, email="ann@shop.foo.co.uk")),
        bridge.queue_referral(bridge.referral(2, email="bob@bar.example", company="Bar Ltd")),
    ]
    assert sorted(bridge.send(*pushes).sent) == sorted(pushes)
    rows = bridge.sales.query_all(
        "SELECT Email, AccountId, Account.Name, Referral_ID__c FROM Contact ORDER BY Email"
    )["records"]
    by_email = {r["Email"]: r for r in rows}
    assert by_email["ann@shop.foo.co.uk"]["AccountId"] == foo
    assert by_email["bob@bar.example"]["Account"]["Name"] == "Bar Ltd"
