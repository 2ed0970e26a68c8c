"""The local org's Streaming API end to end: a real `sfbridge devorg` process over HTTPS.

PushTopics are created through simple-salesforce as the integration user, records are changed
as the sales user, and events are received by two Bayeux clients that are not the bridge's
own: a small synchronous long-polling loop on `requests` written here, and aiocometd-ng with a
replay extension.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests
from aiocometd_ng import Client as CometClient
from aiocometd_ng.exceptions import ServerError
from aiocometd_ng.extensions import AuthExtension, Extension
from simple_salesforce.exceptions import SalesforceMalformedRequest

from bridge.devorg.testing import DevOrg
from tests.services import wait_for

pytestmark = pytest.mark.e2e

#: Short long polls in these tests, so that a missing event fails fast instead of after 110 s.
TEST_CONNECT_TIMEOUT_MS = 2000


class Bayeux:
    """A minimal synchronous Bayeux long-polling client (the test's own, not the bridge's)."""

    def __init__(self, org: DevOrg, user: str = "integration", token: str | None = None) -> None:
        self.http = org.session()
        self.url = f"{org.base_url}/cometd/{org.info['api_version']}"
        self.token = token or org.token(user)["access_token"]
        self.client_id: str | None = None
        self.next_id = 0

    def send(self, *messages: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
        for message in messages:
            self.next_id += 1
            message.setdefault("id", str(self.next_id))
            if self.client_id and message["channel"] != "/meta/handshake":
                message.setdefault("clientId", self.client_id)
        r = self.http.post(
            self.url,
            json=list(messages),
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        return r.status_code, r.json()

    def handshake(self) -> dict[str, Any]:
        _, (reply,) = self.send(
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
            }
        )
        if reply["successful"]:
            self.client_id = reply["clientId"]
        return reply

    def subscribe(self, channel: str, replay: int | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"channel": "/meta/subscribe", "subscription": channel}
        if replay is not None:
            message["ext"] = {"replay": {channel: replay}}
        _, (reply,) = self.send(message)
        return reply

    def connect(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        _, replies = self.send({"channel": "/meta/connect", "connectionType": "long-polling"})
        events = [r for r in replies if not r["channel"].startswith("/meta/")]
        (reply,) = [r for r in replies if r["channel"] == "/meta/connect"]
        return events, reply

    def start(self, *channels: str, replay: int | None = None) -> Bayeux:
        assert self.handshake()["successful"]
        for channel in channels:
            reply = self.subscribe(channel, replay)
            assert reply["successful"], reply
        return self

    def collect(self, until: Any, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Long-poll until ``until(events)`` holds."""
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not until(events):
            assert time.monotonic() < deadline, f"gave up waiting; got {events}"
            batch, reply = self.connect()
            assert reply["successful"], reply
            events.extend(batch)
        return events


@pytest.fixture
def org(clean_devorg: DevOrg) -> Iterator[DevOrg]:
    """The clean session org with short long polls (put back to Salesforce's values after)."""
    clean_devorg.control("streaming", {"connect_timeout_ms": TEST_CONNECT_TIMEOUT_MS})
    yield clean_devorg
    clean_devorg.control("streaming", {"connect_timeout_ms": 110_000, "client_timeout_ms": 40_000})


def create_topic(org: DevOrg, name: str, query: str, **fields: Any) -> str:
    sf = org.sf("integration")
    result = sf.PushTopic.create(
        {
            "Name": name,
            "Query": query,
            "ApiVersion": 63.0,
            "NotifyForFields": "Referenced",
            **fields,
        }
    )
    return str(result["id"])


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    return [
        (e["channel"], e["data"]["event"]["type"], e["data"]["sobject"].get("Email"))
        for e in events
    ]


# ---- events with the requests loop ---------------------------------------------------------


def test_record_changes_by_the_sales_user_stream_to_a_subscriber(org: DevOrg) -> None:
    create_topic(org, "Leads", "SELECT Id, Email, Status FROM Lead")
    bayeux = Bayeux(org)
    handshake = bayeux.handshake()
    assert handshake["advice"] == {
        "reconnect": "retry",
        "interval": 0,
        "timeout": TEST_CONNECT_TIMEOUT_MS,
    }
    assert bayeux.subscribe("/topic/Leads", -1)["successful"]
    sales = org.sf("sales")
    lead_id = sales.Lead.create(
        {"LastName": "Lovelace", "Company": "Engines", "Email": "ada@x.com"}
    )["id"]
    sales.Lead.update(lead_id, {"Email": "ada@engines.com"})
    sales.Lead.delete(lead_id)
    org.control("undelete", {"ids": [lead_id], "user": "sales"})
    events = bayeux.collect(lambda evs: len(evs) >= 4)
    assert [e["data"]["event"]["type"] for e in events] == [
        "created",
        "updated",
        "deleted",
        "undeleted",
    ]
    assert events[0]["data"]["sobject"] == {
        "Id": lead_id,
        "Email": "ada@x.com",
        "Status": "Open - Not Contacted",
    }
    assert events[1]["data"]["sobject"]["Email"] == "ada@engines.com"
    assert events[2]["data"]["sobject"] == {"Id": lead_id}
    assert events[3]["data"]["sobject"]["Id"] == lead_id
    replay_ids = [e["data"]["event"]["replayId"] for e in events]
    assert replay_ids == sorted(replay_ids) and len(set(replay_ids)) == 4
    created = events[0]["data"]["event"]["createdDate"]
    assert created.endswith("Z") and len(created) == len("2026-03-29T16:40:08.208Z")
    stats = org.control("stats", method="GET")
    assert stats["events_delivered"]["by_channel"]["/topic/Leads"] == 4


def test_notify_for_fields_where_matching_and_operation_flags(org: DevOrg) -> None:
    where = "SELECT Id, Email FROM Lead WHERE Status = 'Working - Contacted'"
    for mode in ("All", "Referenced", "Select", "Where"):
        create_topic(org, f"Working{mode}", where, NotifyForFields=mode)
    create_topic(
        org,
        "NoCreateNoDelete",
        "SELECT Id, Email FROM Lead",
        NotifyForOperationCreate=False,
        NotifyForOperationDelete=False,
    )
    create_topic(org, "Done", "SELECT Id, Email FROM Lead WHERE LastName = 'Sentinel'")
    channels = [
        "/topic/WorkingAll",
        "/topic/WorkingReferenced",
        "/topic/WorkingSelect",
        "/topic/WorkingWhere",
    ]
    bayeux = Bayeux(org).start(*channels, "/topic/NoCreateNoDelete", "/topic/Done")
    sales = org.sf("sales")
    lead = sales.Lead.create(
        {
            "LastName": "Hopper",
            "Company": "Navy",
            "Email": "g@x.com",
            "Status": "Working - Contacted",
        }
    )["id"]
    sales.Lead.update(lead, {"Company": "US Navy"})  # a field no query references
    sales.Lead.update(lead, {"Email": "grace@x.com"})  # a SELECT field
    sales.Lead.update(lead, {"Status": "Open - Not Contacted"})  # stops matching the WHERE
    sales.Lead.update(lead, {"Status": "Working - Contacted"})  # matches again (WHERE field)
    sales.Lead.delete(lead)
    sales.Lead.create({"LastName": "Sentinel", "Company": "End", "Email": "end@x.com"})
    events = bayeux.collect(lambda evs: any(e["channel"] == "/topic/Done" for e in evs))
    got = summary(events)
    expected = [
        ("/topic/WorkingAll", "created", "g@x.com"),
        ("/topic/WorkingReferenced", "created", "g@x.com"),
        ("/topic/WorkingSelect", "created", "g@x.com"),
        ("/topic/WorkingWhere", "created", "g@x.com"),
        ("/topic/WorkingAll", "updated", "g@x.com"),  # All: any field
        ("/topic/WorkingAll", "updated", "grace@x.com"),
        ("/topic/WorkingReferenced", "updated", "grace@x.com"),
        ("/topic/WorkingSelect", "updated", "grace@x.com"),
        ("/topic/NoCreateNoDelete", "updated", "grace@x.com"),
        # the update that makes the record stop matching notifies no WHERE topic; matching
        # again is a change of a WHERE field: not for Select
        ("/topic/WorkingAll", "updated", "grace@x.com"),
        ("/topic/WorkingReferenced", "updated", "grace@x.com"),
        ("/topic/WorkingWhere", "updated", "grace@x.com"),
        ("/topic/WorkingAll", "deleted", None),
        ("/topic/WorkingReferenced", "deleted", None),
        ("/topic/WorkingSelect", "deleted", None),
        ("/topic/WorkingWhere", "deleted", None),
        ("/topic/Done", "created", "end@x.com"),
    ]
    assert got == expected  # in commit order across channels


@pytest.mark.parametrize(
    ("topic", "code", "message"),
    [
        (
            {"Query": "SELECT Id, Email FROM Lead ORDER BY Email"},
            "INVALID_FIELD",
            "'ORDER BY' clause is not allowed",
        ),
        (
            {"Query": "SELECT Id, Email FROM Lead LIMIT 10"},
            "INVALID_FIELD",
            "'LIMIT' is not allowed",
        ),
        (
            {"Query": "SELECT Id, Account.Name FROM Contact"},
            "INVALID_FIELD",
            "relationships are not supported",
        ),
        (
            {"Query": "SELECT Id FROM Lead WHERE NOT Email = 'a@x.com'"},
            "INVALID_FIELD",
            "'NOT' is not supported",
        ),
        (
            {"Query": "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact)"},
            "INVALID_FIELD",
            "semi/anti join sub-selects are not supported",
        ),
        (
            {"Query": "SELECT Id, COUNT(Email) FROM Lead"},
            "INVALID_FIELD",
            "Aggregate queries are not supported",
        ),
        ({"Query": "SELECT Email FROM Lead"}, "INVALID_FIELD", None),
        (
            {"Query": "SELECT Id, Nope__c FROM Lead"},
            "INVALID_FIELD",
            "No such column 'Nope__c' on entity 'Lead'",
        ),
        ({"Query": "SELECT Id, Name FROM Product2"}, "INVALID_TYPE", None),
        (
            {"Query": "SELECT Id FROM Lead WHERE Description = 'x'"},
            "INVALID_FIELD",
            "field 'Description' can not be filtered in a query call",
        ),
        (
            {"Query": "SELECT Id, Email FROM Lead", "Name": "A_Name_Longer_Than_25_Chars"},
            "STRING_TOO_LONG",
            None,
        ),
        (
            {"Query": "SELECT Id, Email FROM Lead", "NotifyForFields": "Where"},
            "FIELD_INTEGRITY_EXCEPTION",
            None,
        ),
        ({"Query": "SELECT Id, Email FROM Lead", "NotifyForFields": "Often"}, None, None),
    ],
)
def test_topic_validation_errors(
    org: DevOrg, topic: dict[str, Any], code: str | None, message: str | None
) -> None:
    sf = org.sf("integration")
    record = {"Name": "Bad", "ApiVersion": 63.0, **topic}
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.PushTopic.create(record)
    errors = caught.value.content
    assert errors and all(e["errorCode"] and e["message"] for e in errors)
    if code is not None:
        assert [e["errorCode"] for e in errors] == [code]
    if message is not None:
        assert errors[0]["message"].startswith(message)


def test_topic_names_are_unique_and_updates_are_validated(org: DevOrg) -> None:
    topic_id = create_topic(org, "Leads", "SELECT Id, Email FROM Lead")
    sf = org.sf("integration")
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.PushTopic.create(
            {"Name": "Leads", "Query": "SELECT Id, Email FROM Lead", "ApiVersion": 63.0}
        )
    assert caught.value.content[0]["errorCode"] == "DUPLICATE_VALUE"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.PushTopic.update(topic_id, {"Query": "SELECT Id, Email FROM Lead LIMIT 1"})
    assert caught.value.content[0]["message"] == "'LIMIT' is not allowed"
    # a valid update takes effect at once: the new query decides the payload
    sf.PushTopic.update(topic_id, {"Query": "SELECT Id, Company FROM Lead"})
    bayeux = Bayeux(org).start("/topic/Leads")
    org.sf("sales").Lead.create({"LastName": "K", "Company": "Kay Inc", "Email": "k@x.com"})
    (event,) = bayeux.collect(lambda evs: len(evs) >= 1)
    assert set(event["data"]["sobject"]) == {"Id", "Company"}


# ---- replay --------------------------------------------------------------------------------


def test_replay_all_resume_and_invalid_replay_with_requests(org: DevOrg) -> None:
    create_topic(org, "Leads", "SELECT Id, Email FROM Lead")
    sales = org.sf("sales")
    emails = [f"r{i}@x.com" for i in range(3)]
    for email in emails:
        sales.Lead.create({"LastName": "R", "Company": "R", "Email": email})
    everything = Bayeux(org).start("/topic/Leads", replay=-2).collect(lambda evs: len(evs) >= 3)
    assert [e["data"]["sobject"]["Email"] for e in everything] == emails
    first_id = everything[0]["data"]["event"]["replayId"]
    resumed = Bayeux(org).start("/topic/Leads", replay=first_id).collect(lambda evs: len(evs) >= 2)
    assert [e["data"]["sobject"]["Email"] for e in resumed] == emails[1:]
    bayeux = Bayeux(org)
    bayeux.handshake()
    bad = everything[-1]["data"]["event"]["replayId"] + 100
    reply = bayeux.subscribe("/topic/Leads", bad)
    assert reply["successful"] is False
    assert reply["error"] == (
        f"400::The replayId {bad} you provided was invalid. Please provide a valid ID, "
        "-2 to replay all events, or -1 to replay only new events."
    )
    # 24 hours later by the org clock the window has passed
    org.control("clock", {"advance_seconds": 25 * 3600})
    late = Bayeux(org)
    late.handshake()
    assert late.subscribe("/topic/Leads", first_id)["error"].startswith(
        f"400::The replayId {first_id} "
    )


class BearerAuth(AuthExtension):
    """Sends the OAuth token; logs in again when the server says authentication is invalid."""

    def __init__(self, org: DevOrg) -> None:
        self.org = org
        self.token = org.token("integration")["access_token"]
        self.logins = 1

    async def outgoing(self, payload: list[dict[str, Any]], headers: dict[str, str]) -> None:
        headers["Authorization"] = f"OAuth {self.token}"

    async def incoming(self, payload: list[dict[str, Any]], headers: Any = None) -> None:
        return None

    async def authenticate(self) -> None:
        self.token = await asyncio.to_thread(lambda: self.org.token("integration")["access_token"])
        self.logins += 1


class ReplayExtension(Extension):
    """Salesforce's replay extension: subscribe from the last replayId seen on each channel
    (or the starting value given), so a re-handshake resumes where the client was."""

    def __init__(self, replay: dict[str, int]) -> None:
        self.replay = dict(replay)

    async def outgoing(self, payload: list[dict[str, Any]], headers: dict[str, str]) -> None:
        for message in payload:
            if message.get("channel") == "/meta/subscribe":
                message.setdefault("ext", {})["replay"] = {
                    message["subscription"]: self.replay.get(message["subscription"], -1)
                }

    async def incoming(self, payload: list[dict[str, Any]], headers: Any = None) -> None:
        for message in payload:
            event = message.get("data", {}).get("event", {}) if "data" in message else {}
            if "replayId" in event:
                self.replay[message["channel"]] = event["replayId"]


def comet_url(org: DevOrg) -> str:
    # aiohttp's cookie jar ignores cookies from IP-address hosts; Salesforce is always reached by
    # name, so use the certificate's "localhost" name for the org to keep BAYEUX_BROWSER working.
    return f"{org.base_url.replace('127.0.0.1', 'localhost')}/cometd/{org.info['api_version']}"


async def receive(client: CometClient, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(client.receive(), timeout) for _ in range(n)]


def test_aiocometd_replay_resume_reauthentication_and_failover(org: DevOrg) -> None:
    create_topic(org, "Leads", "SELECT Id, Email FROM Lead")
    sales = org.sf("sales")
    for i in range(3):
        sales.Lead.create({"LastName": "A", "Company": "A", "Email": f"a{i}@x.com"})
    context = ssl.create_default_context(cafile=org.ca_path)

    async def scenario() -> None:
        auth = BearerAuth(org)
        replay = {"/topic/Leads": -2}
        async with CometClient(
            comet_url(org), ssl=context, auth=auth, extensions=[ReplayExtension(replay)]
        ) as client:
            await client.subscribe("/topic/Leads")
            events = await receive(client, 3)
            assert [e["data"]["sobject"]["Email"] for e in events] == [
                f"a{i}@x.com" for i in range(3)
            ]
            # the session ends; the client logs in again and keeps streaming
            await asyncio.to_thread(org.control, "expire-tokens", {"user": "integration"})
            await asyncio.to_thread(
                sales.Lead.create, {"LastName": "A", "Company": "A", "Email": "after@x.com"}
            )
            (after,) = await receive(client, 1)
            assert after["data"]["sobject"]["Email"] == "after@x.com"
            assert auth.logins >= 2
        resume = {"/topic/Leads": events[1]["data"]["event"]["replayId"]}
        async with CometClient(
            comet_url(org), ssl=context, auth=BearerAuth(org), extensions=[ReplayExtension(resume)]
        ) as client:
            await client.subscribe("/topic/Leads")
            resumed = await receive(client, 2)
            assert [e["data"]["sobject"]["Email"] for e in resumed] == ["a2@x.com", "after@x.com"]
        invalid = {"/topic/Leads": after["data"]["event"]["replayId"] + 1000}
        async with CometClient(
            comet_url(org), ssl=context, auth=BearerAuth(org), extensions=[ReplayExtension({})]
        ) as client:
            await client.subscribe("/topic/Leads")
            await asyncio.to_thread(
                sales.Lead.create, {"LastName": "A", "Company": "A", "Email": "before@x.com"}
            )
            (event,) = await receive(client, 1)
            # the server forgets its clients (a failover) and a record changes meanwhile:
            # 403::Unknown client, advice handshake; aiocometd handshakes and subscribes again
            # from the last replayId it saw, so the change arrives once and nothing repeats
            await asyncio.to_thread(org.control, "streaming", {"drop_clients": True})
            await asyncio.to_thread(
                sales.Lead.create, {"LastName": "A", "Company": "A", "Email": "failover@x.com"}
            )
            (event,) = await receive(client, 1)
            assert event["data"]["sobject"]["Email"] == "failover@x.com"
        async with CometClient(
            comet_url(org), ssl=context, auth=BearerAuth(org), extensions=[ReplayExtension(invalid)]
        ) as client:
            with pytest.raises(ServerError) as caught:
                await client.subscribe("/topic/Leads")
            assert "you provided was invalid" in str(caught.value)

    asyncio.run(scenario())


# ---- sessions, clients, cookies --------------------------------------------------------------


def test_a_client_that_does_not_reconnect_in_time_is_unknown(org: DevOrg) -> None:
    create_topic(org, "Leads", "SELECT Id, Email FROM Lead")
    org.control("streaming", {"client_timeout_ms": 300})
    bayeux = Bayeux(org).start("/topic/Leads")
    wait_for(
        lambda: bayeux.client_id not in org.control("streaming", method="GET")["clients"],
        timeout=10,
        what="the idle client to be dropped",
    )
    _, reply = bayeux.connect()
    assert reply["successful"] is False
    assert reply["error"] == "403::Unknown client"
    assert reply["advice"]["reconnect"] == "handshake"
    # as advised: handshake and subscribe again, and events flow
    bayeux.start("/topic/Leads")
    org.sf("sales").Lead.create({"LastName": "B", "Company": "B", "Email": "b@x.com"})
    assert summary(bayeux.collect(lambda evs: len(evs) >= 1)) == [
        ("/topic/Leads", "created", "b@x.com")
    ]


def test_an_expired_session_gets_401_and_a_denied_handshake(org: DevOrg) -> None:
    create_topic(org, "Leads", "SELECT Id, Email FROM Lead")
    bayeux = Bayeux(org).start("/topic/Leads")
    org.control("expire-tokens", {"user": "integration"})
    status, replies = bayeux.send({"channel": "/meta/connect", "connectionType": "long-polling"})
    assert status == 200
    assert replies[0]["error"] == "401::Authentication invalid"
    assert replies[0]["advice"] == {"reconnect": "none", "interval": 0}
    reply = bayeux.handshake()
    assert reply["error"] == "403::Handshake denied"
    assert reply["ext"]["sfdc"]["failureReason"] == "401::Authentication invalid"
    bayeux.token = org.token("integration")["access_token"]
    assert bayeux.handshake()["successful"]


def test_requests_after_the_handshake_need_the_browser_cookie(org: DevOrg) -> None:
    create_topic(org, "Leads", "SELECT Id, Email FROM Lead")
    bayeux = Bayeux(org)
    bayeux.handshake()
    assert "BAYEUX_BROWSER" in bayeux.http.cookies
    bayeux.http.cookies.clear()
    reply = bayeux.subscribe("/topic/Leads")
    assert reply["successful"] is False
    assert reply["error"] == (
        f"400::Client {bayeux.client_id} has established a session, "
        "but no BAYEUX_BROWSER cookie present"
    )
    # and every request needs the OAuth token
    bare = org.session()
    bare.cookies.update(bayeux.http.cookies)
    r = bare.post(bayeux.url, json=[{"channel": "/meta/connect", "clientId": bayeux.client_id}])
    assert r.status_code == 200
    assert r.json()[0]["error"] == "401::Request requires authentication"


def test_unknown_channel_and_an_empty_long_poll(org: DevOrg) -> None:
    bayeux = Bayeux(org)
    bayeux.handshake()
    reply = bayeux.subscribe("/topic/NoSuchTopic")
    assert (
        reply["error"]
        == "400::The channel you requested to subscribe to does not exist /topic/NoSuchTopic"
    )
    create_topic(org, "Quiet", "SELECT Id, Email FROM Lead")
    assert bayeux.subscribe("/topic/Quiet")["successful"]
    bayeux.connect()  # the first connect is answered at once
    events, reply = bayeux.connect()  # nothing happens: held for the advised timeout, then empty
    assert events == [] and reply["successful"]
    assert reply["advice"]["reconnect"] == "retry"


def test_a_dropped_long_poll_loses_no_event(org: DevOrg) -> None:
    create_topic(org, "Leads", "SELECT Id, Email FROM Lead")
    bayeux = Bayeux(org).start("/topic/Leads")
    bayeux.connect()
    org.sf("sales").Lead.create({"LastName": "D", "Company": "D", "Email": "d@x.com"})
    org.control("faults", {"kind": "drop", "path": "/cometd", "count": 1})
    with pytest.raises(requests.ConnectionError):
        bayeux.connect()
    assert summary(bayeux.collect(lambda evs: len(evs) >= 1)) == [
        ("/topic/Leads", "created", "d@x.com")
    ]


def test_change_data_capture(org: DevOrg) -> None:
    bayeux = Bayeux(org).start("/data/LeadChangeEvent")
    sales = org.sf("sales")
    lead = sales.Lead.create({"LastName": "C", "Company": "C", "Email": "c@x.com"})["id"]
    sales.Lead.update(lead, {"Email": "c2@x.com"})
    events = bayeux.collect(lambda evs: len(evs) >= 2)
    headers = [e["data"]["payload"]["ChangeEventHeader"] for e in events]
    assert [h["changeType"] for h in headers] == ["CREATE", "UPDATE"]
    assert headers[0]["recordIds"] == [lead]
    assert headers[0]["commitUser"] == org.user("sales")["id"]
    assert "Email" in headers[1]["changedFields"]
    assert events[1]["data"]["payload"]["Email"] == "c2@x.com"


def test_the_change_events_of_one_request_share_its_transaction(org: DevOrg) -> None:
    """A collection of 20 Leads is one transaction: one transactionKey and commitNumber, the
    changes numbered 1…20, each commitTimestamp its record's LastModifiedDate (CDC guide,
    "Change Events for Lead Conversion"); the next request is another transaction."""
    bayeux = Bayeux(org).start("/data/LeadChangeEvent")
    sales = org.sf("sales")
    records = [
        {"attributes": {"type": "Lead"}, "LastName": f"T{i}", "Company": "T"} for i in range(20)
    ]
    sales.restful("composite/sobjects", method="POST", json={"records": records})
    sales.restful("composite/sobjects", method="POST", json={"records": records[:1]})
    events = bayeux.collect(lambda evs: len(evs) >= 21)
    payloads = [e["data"]["payload"] for e in events]
    headers = [p["ChangeEventHeader"] for p in payloads]
    request, later = headers[:20], headers[20]
    assert len({(h["transactionKey"], h["commitNumber"]) for h in request}) == 1
    assert [h["sequenceNumber"] for h in request] == list(range(1, 21))
    assert later["transactionKey"] != request[0]["transactionKey"]
    assert later["sequenceNumber"] == 1 and later["commitNumber"] > request[0]["commitNumber"]
    for header, payload in zip(headers, payloads, strict=True):
        modified = datetime.strptime(payload["LastModifiedDate"], "%Y-%m-%dT%H:%M:%S.%f%z")
        assert header["commitTimestamp"] == int(modified.timestamp() * 1000)


def test_a_restarted_org_keeps_the_replay_window(tmp_path: Any) -> None:
    with DevOrg(tmp_path / "org") as org:
        create_topic(org, "Leads", "SELECT Id, Email FROM Lead")
        org.sf("sales").Lead.create({"LastName": "P", "Company": "P", "Email": "p@x.com"})
        before = Bayeux(org).start("/topic/Leads", replay=-2).collect(lambda evs: len(evs) >= 1)
        org.restart()
        after = Bayeux(org).start("/topic/Leads", replay=-2).collect(lambda evs: len(evs) >= 1)
        assert [e["data"] for e in after] == [e["data"] for e in before]
        # the event of an acknowledged write is on disk: it survives even a SIGKILL right after
        org.sf("sales").Lead.create({"LastName": "Q", "Company": "Q", "Email": "q@x.com"})
        org.kill()
        org.start()
        newer = Bayeux(org).start("/topic/Leads", replay=before[0]["data"]["event"]["replayId"])
        (event,) = newer.collect(lambda evs: len(evs) >= 1)
        assert event["data"]["sobject"]["Email"] == "q@x.com"
        assert event["data"]["event"]["replayId"] > before[0]["data"]["event"]["replayId"]
        # and numbering goes on forward
        org.sf("sales").Lead.create({"LastName": "R", "Company": "R", "Email": "r@x.com"})
        (last,) = newer.collect(lambda evs: len(evs) >= 1)
        assert last["data"]["event"]["replayId"] > event["data"]["event"]["replayId"]


def test_a_filtered_subscription(org: DevOrg) -> None:
    create_topic(org, "Leads", "SELECT Id, Email, Company FROM Lead")
    channel = "/topic/Leads?Company='Acme'"
    bayeux = Bayeux(org).start(channel)
    sales = org.sf("sales")
    sales.Lead.create({"LastName": "F", "Company": "Other", "Email": "other@x.com"})
    sales.Lead.create({"LastName": "F", "Company": "Acme", "Email": "acme@x.com"})
    assert summary(bayeux.collect(lambda evs: len(evs) >= 1)) == [
        (channel, "created", "acme@x.com")
    ]
