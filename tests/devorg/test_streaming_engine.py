"""The Bayeux server in-process: the real org state and hub behind aiohttp's test server.

Fast protocol checks (no subprocess, no TLS, no sleeps: expiry is driven by calling the sweep
with a later time). The same behaviours are checked end to end in test_streaming_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.devorg import pushtopic, streaming
from bridge.devorg.schema import Schema
from bridge.devorg.state import DevOrgState, RecordChange, User

URL = "/cometd/63.0"


@dataclass
class Org:
    state: DevOrgState
    hub: streaming.StreamingHub
    client: TestClient[Any, Any]
    token: str
    user: User
    counter: int = 0

    async def post(
        self,
        *messages: dict[str, Any],
        token: str | None = "default",  # noqa: S107 - the org's token
        cookies: bool = True,
    ) -> tuple[int, list[dict[str, Any]]]:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {self.token if token == 'default' else token}"
        if not cookies:
            self.client.session.cookie_jar.clear()
        resp = await self.client.post(URL, json=list(messages), headers=headers)
        return resp.status, await resp.json()

    def advance_clock(self, hours: float) -> None:
        """Move the org clock; sessions last 2 hours, so log in again."""
        self.state.clock.advance(hours * 3600)
        self.token = self.state.issue_token(self.user, "access", self.state.client_id).token

    async def handshake(self) -> str:
        status, replies = await self.post(
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
                "id": "1",
            }
        )
        assert status == 200 and replies[0]["successful"], replies
        return str(replies[0]["clientId"])

    async def subscribe(
        self, client_id: str, channel: str, replay: int | str | None = None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "channel": "/meta/subscribe",
            "clientId": client_id,
            "subscription": channel,
        }
        if replay is not None:
            message["ext"] = {"replay": {channel: replay}}
        _, replies = await self.post(message)
        return replies[0]

    async def connect(
        self, client_id: str, **extra: Any
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        _, replies = await self.post(
            {
                "channel": "/meta/connect",
                "clientId": client_id,
                "connectionType": "long-polling",
                **extra,
            }
        )
        events = [r for r in replies if not r["channel"].startswith("/meta/")]
        (reply,) = [r for r in replies if r["channel"] == "/meta/connect"]
        return events, reply

    async def ready_client(self, channel: str = "/topic/Leads", replay: int | None = None) -> str:
        client_id = await self.handshake()
        assert (await self.subscribe(client_id, channel, replay))["successful"]
        return client_id  # its first connect answers at once, with whatever is queued

    def write(
        self,
        sobject: str,
        change_type: str,
        record: dict[str, Any],
        changed: set[str] | None = None,
    ) -> dict[str, Any]:
        record = dict(record)
        if "Id" not in record:
            self.counter += 1
            record["Id"] = self.state.new_id({"Lead": "00Q", "PushTopic": "0IF"}[sobject])
        if change_type == "deleted":
            record["IsDeleted"] = True
        change = RecordChange(
            sobject,
            change_type,
            record,
            None,
            set(changed if changed is not None else record),
            self.user.id,
            self.state.clock.now(),
        )
        with self.state.transaction() as tx:
            tx.put(sobject, record, change)
        return record

    def topic(
        self, name: str = "Leads", query: str = "SELECT Id, Email, Status FROM Lead", **fields: Any
    ) -> dict[str, Any]:
        return self.write(
            "PushTopic",
            "created",
            {"Name": name, "Query": query, "ApiVersion": 63.0, "IsActive": True, **fields},
        )


@asynccontextmanager
async def org(data_dir: Path) -> AsyncIterator[Org]:
    state = DevOrgState(data_dir, schema=Schema())
    state.initialize()
    user = User(
        state.new_id("005"),
        "sales@sfbridge.devorg",
        "pw",
        "Sally Sales",
        "sales@sfbridge.devorg",
        "sales",
    )
    state.add_user(user)
    token = state.issue_token(user, "access", state.client_id).token
    app = web.Application()
    hub = streaming.setup(app, state)
    assert hub.settings.connect_timeout_ms == 110_000  # Salesforce's advice by default
    hub.settings.connect_timeout_ms = 5_000  # a test that waits in vain fails sooner
    async with TestClient(TestServer(app)) as client:
        yield Org(state, hub, client, token, user)
    state.close()


def run(test: Callable[[Org], Coroutine[Any, Any, None]], tmp_path: Path) -> None:
    async def main() -> None:
        async with org(tmp_path) as o:
            await test(o)

    asyncio.run(main())


# ---- handshake, authentication, cookies ---------------------------------------------------


def test_handshake_requires_a_valid_token(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        hs = {
            "channel": "/meta/handshake",
            "version": "1.0",
            "supportedConnectionTypes": ["long-polling"],
        }
        status, (reply,) = await o.post(hs, token=None)
        assert status == 200  # Bayeux errors travel in the body
        assert reply["error"] == "403::Handshake denied"
        assert reply["ext"]["sfdc"]["failureReason"] == "401::Request requires authentication"
        assert reply["advice"]["reconnect"] == "none"
        status, (reply,) = await o.post(hs, token="00D!not-a-token")
        assert (
            status == 200 and reply["ext"]["sfdc"]["failureReason"] == "401::Authentication invalid"
        )
        status, (reply,) = await o.post(hs)
        assert status == 200 and reply["successful"] and reply["clientId"]
        assert reply["supportedConnectionTypes"] == ["long-polling"]
        assert reply["ext"]["replay"] is True
        assert any(c.key == "BAYEUX_BROWSER" for c in o.client.session.cookie_jar)

    run(scenario, tmp_path)


def test_requests_without_the_browser_cookie_are_refused(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        o.topic()
        client_id = await o.handshake()
        _, (reply,) = await o.post(
            {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/topic/Leads"},
            cookies=False,
        )
        assert not reply["successful"]
        assert reply["error"] == (
            f"400::Client {client_id} has established a session, "
            "but no BAYEUX_BROWSER cookie present"
        )

    run(scenario, tmp_path)


def test_expired_token_ends_the_stream_with_401(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        o.topic()
        client_id = await o.ready_client()
        o.state.expire_tokens()
        status, (reply,) = await o.post(
            {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}
        )
        assert status == 200  # in the body, for the client's /meta/connect listener
        assert reply["error"] == "401::Authentication invalid"
        assert reply["advice"] == {"reconnect": "none", "interval": 0}

    run(scenario, tmp_path)


def test_a_client_that_does_not_come_back_is_dropped(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        o.topic()
        stale = await o.ready_client()
        fresh = await o.handshake()
        # the sweep runs as if 41 s had passed since the stale client's last response
        o.hub.settings.client_timeout_ms = 40_000
        dropped = o.hub.expire_clients(time.monotonic() + 41)
        assert stale in dropped and fresh in dropped
        _, reply = await o.connect(stale)
        assert reply["successful"] is False
        assert reply["error"] == "403::Unknown client"
        assert reply["advice"]["reconnect"] == "handshake"
        # within the window a client stays
        kept = await o.handshake()
        assert o.hub.expire_clients(time.monotonic() + 39) == []
        assert kept in o.hub.clients

    run(scenario, tmp_path)


def test_unknown_and_malformed_channels(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        client_id = await o.handshake()
        reply = await o.subscribe(client_id, "/topic/Nope")
        assert (
            reply["error"]
            == "400::The channel you requested to subscribe to does not exist /topic/Nope"
        )
        assert reply["subscription"] == "/topic/Nope"
        assert (await o.subscribe(client_id, "topic/Nope"))["error"] == (
            "400::Channel subscriptions must start with a leading '/'"
        )
        assert (await o.subscribe(client_id, ""))["error"] == "400::Channel name not specified"
        assert (await o.subscribe(client_id, "/data/LeadChangeEvent"))["successful"]
        assert (await o.subscribe(client_id, "/data/WidgetChangeEvent"))["successful"] is False

    run(scenario, tmp_path)


def test_old_api_versions_are_refused(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        resp = await o.client.post("/cometd/36.0", json=[{"channel": "/meta/handshake"}])
        assert resp.status == 400
        assert "Only API versions '37.0' and later are supported" in (await resp.json())[0]["error"]

    run(scenario, tmp_path)


# ---- events, batching, replay -------------------------------------------------------------


def test_connect_returns_all_queued_events_in_one_response(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        o.topic()
        client_id = await o.ready_client()
        leads = [
            o.write("Lead", "created", {"Email": f"p{i}@x.com", "Status": "Open", "Company": "X"})
            for i in range(5)
        ]
        events, reply = await o.connect(client_id)
        assert reply["successful"] and reply["advice"] == {
            "reconnect": "retry",
            "interval": 0,
            "timeout": 5000,
        }
        assert [e["data"]["sobject"]["Id"] for e in events] == [lead["Id"] for lead in leads]
        assert {e["data"]["event"]["type"] for e in events} == {"created"}
        ids = [e["data"]["event"]["replayId"] for e in events]
        assert ids == sorted(ids) and len(set(ids)) == 5
        assert set(events[0]["data"]["sobject"]) == {"Id", "Email", "Status"}
        assert o.state.stats.events_by_channel["/topic/Leads"] == 5

    run(scenario, tmp_path)


def test_a_held_connect_returns_when_an_event_arrives(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        o.topic()
        client_id = await o.ready_client()
        events, reply = await o.connect(client_id)  # the first connect is answered at once
        assert events == [] and reply["successful"]
        poll = asyncio.create_task(o.connect(client_id))
        while not o.hub.clients[client_id].polling:  # the poll is being held
            await asyncio.sleep(0.01)
        lead = o.write("Lead", "created", {"Email": "a@x.com", "Status": "Open"})
        events, reply = await asyncio.wait_for(poll, 10)
        assert reply["successful"] and [e["data"]["sobject"]["Id"] for e in events] == [lead["Id"]]

    run(scenario, tmp_path)


def test_replay_all_resume_and_invalid_ids(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        o.topic()
        leads = [
            o.write("Lead", "created", {"Email": f"p{i}@x.com", "Status": "Open"}) for i in range(4)
        ]
        everything = await o.ready_client(replay=-2)
        events, _ = await o.connect(everything)
        assert [e["data"]["sobject"]["Id"] for e in events] == [lead["Id"] for lead in leads]
        ids = [e["data"]["event"]["replayId"] for e in events]

        resumed = await o.ready_client(replay=ids[1])
        events, _ = await o.connect(resumed)
        assert [e["data"]["event"]["replayId"] for e in events] == ids[2:]

        new_only = await o.ready_client(replay=-1)
        last = o.write("Lead", "created", {"Email": "new@x.com", "Status": "Open"})
        events, _ = await o.connect(new_only)
        assert [e["data"]["sobject"]["Id"] for e in events] == [last["Id"]]

        client_id = await o.handshake()
        for bad in (ids[-1] + 1000, 0, "abc"):
            reply = await o.subscribe(client_id, "/topic/Leads", bad)
            assert reply["successful"] is False
            assert reply["error"] == (
                f"400::The replayId {bad} you provided was invalid. Please provide a valid ID, "
                "-2 to replay all events, or -1 to replay only new events."
            )

    run(scenario, tmp_path)


def test_events_expire_after_24_hours_by_the_org_clock(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        o.topic()
        old = o.write("Lead", "created", {"Email": "old@x.com", "Status": "Open"})
        client_id = await o.ready_client(replay=-2)
        events, _ = await o.connect(client_id)
        old_id = events[0]["data"]["event"]["replayId"]
        o.advance_clock(23)
        assert (await o.subscribe(await o.handshake(), "/topic/Leads", old_id))["successful"]
        o.advance_clock(2)
        fresh = o.write("Lead", "created", {"Email": "fresh@x.com", "Status": "Open"})
        reply = await o.subscribe(await o.handshake(), "/topic/Leads", old_id)
        assert reply["error"].startswith(f"400::The replayId {old_id} you provided was invalid.")
        events, _ = await o.connect(await o.ready_client(replay=-2))
        assert [e["data"]["sobject"]["Id"] for e in events] == [fresh["Id"]]
        assert old["Id"] != fresh["Id"]

    run(scenario, tmp_path)


def test_restart_keeps_the_replay_window_and_numbers_forward(tmp_path: Path) -> None:
    async def first(o: Org) -> None:
        o.topic()
        for i in range(3):
            o.write("Lead", "created", {"Email": f"p{i}@x.com", "Status": "Open"})

    run(first, tmp_path)
    seen: list[int] = []

    async def second(o: Org) -> None:
        events, _ = await o.connect(await o.ready_client(replay=-2))
        seen.extend(e["data"]["event"]["replayId"] for e in events)
        assert len(seen) == 3
        o.hub.reset()  # forgets events, but numbering never goes back
        o.topic("Leads2")
        client_id = await o.ready_client("/topic/Leads2")
        o.write("Lead", "created", {"Email": "after@x.com", "Status": "Open"})
        events, _ = await o.connect(client_id)
        assert events[0]["data"]["event"]["replayId"] > max(seen)
        assert (await o.subscribe(client_id, "/topic/Leads", seen[0]))["successful"] is False

    run(second, tmp_path)


def test_unsubscribe_and_disconnect(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        o.topic()
        client_id = await o.ready_client()
        _, (reply,) = await o.post(
            {"channel": "/meta/unsubscribe", "clientId": client_id, "subscription": "/topic/Leads"}
        )
        assert reply["successful"]
        o.write("Lead", "created", {"Email": "a@x.com", "Status": "Open"})
        events, _ = await o.connect(client_id, advice={"timeout": 0})
        assert events == []
        _, (reply,) = await o.post({"channel": "/meta/disconnect", "clientId": client_id})
        assert reply["successful"]
        _, reply = await o.connect(client_id)
        assert reply["error"] == "403::Unknown client"

    run(scenario, tmp_path)


def test_topic_rules_apply_on_the_live_stream(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        o.topic(
            query="SELECT Id, Email FROM Lead WHERE status = 'Open'", NotifyForOperationDelete=False
        )
        client_id = await o.ready_client()
        lead = o.write("Lead", "created", {"Email": "a@x.com", "Status": "Open", "Company": "X"})
        o.write("Lead", "created", {"Email": "b@x.com", "Status": "Closed"})  # no match
        o.write("Lead", "updated", {**lead, "Company": "Y"}, {"Company"})  # field not referenced
        o.write("Lead", "updated", {**lead, "Email": "c@x.com"}, {"Email"})
        o.write("Lead", "updated", {**lead, "Status": "Closed"}, {"Status"})  # stops matching
        o.write("Lead", "deleted", {**lead, "Email": "c@x.com"})  # delete not notified
        events, _ = await o.connect(client_id)
        assert [(e["data"]["event"]["type"], e["data"]["sobject"]["Email"]) for e in events] == [
            ("created", "a@x.com"),
            ("updated", "c@x.com"),
        ]

    run(scenario, tmp_path)


def test_change_data_capture_channels(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        one = await o.ready_client("/data/LeadChangeEvent")
        every = await o.ready_client("/data/ChangeEvents")
        lead = o.write("Lead", "created", {"Email": "a@x.com", "Status": "Open"})
        o.write("Lead", "updated", {**lead, "Email": "b@x.com"}, {"Email", "LastModifiedDate"})
        for client_id in (one, every):
            events, _ = await o.connect(client_id)
            headers = [e["data"]["payload"]["ChangeEventHeader"] for e in events]
            assert [h["changeType"] for h in headers] == ["CREATE", "UPDATE"]
            assert headers[1]["changedFields"] == ["Email", "LastModifiedDate"]
            assert headers[0]["recordIds"] == [lead["Id"]] and headers[0]["commitUser"] == o.user.id
            assert events[1]["data"]["payload"]["Email"] == "b@x.com"

    run(scenario, tmp_path)


def test_injected_faults_on_the_cometd_path(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        o.topic()
        client_id = await o.ready_client()
        o.state.faults.add(kind="error", path="/cometd", error_code="INVALID_SESSION_ID", count=1)
        status, (reply,) = await o.post(
            {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}
        )
        assert status == 200 and reply["error"] == "401::Session expired or invalid"
        assert reply["channel"] == "/meta/connect" and reply["advice"]["reconnect"] == "none"
        o.state.faults.add(kind="status", path="/cometd", status=503, count=1)
        resp = await o.client.post(URL, json=[{"channel": "/meta/connect", "clientId": client_id}])
        assert resp.status == 503
        o.write("Lead", "created", {"Email": "a@x.com", "Status": "Open"})
        o.state.faults.add(kind="drop", path="/cometd", count=1)
        with pytest.raises(Exception):  # noqa: B017 - the connection just dies
            await o.connect(client_id)
        # nothing was taken from the queue by the dropped poll
        events, _ = await o.connect(client_id)
        assert len(events) == 1

    run(scenario, tmp_path)


def test_reset_forgets_clients(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        o.topic()
        client_id = await o.ready_client()
        o.state.reset()
        _, reply = await o.connect(client_id)
        assert reply["error"] == "403::Unknown client"
        assert json.loads(json.dumps(o.hub.settings.to_dict()))["client_timeout_ms"] == 40000

    run(scenario, tmp_path)


def test_delivered_messages_name_the_client_and_big_requests_are_refused(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        o.topic()
        first = await o.ready_client()
        second = await o.ready_client()
        o.write("Lead", "created", {"Email": "a@x.com", "Status": "Open"})
        for client_id in (first, second):
            (event,), _ = await o.connect(client_id)
            assert event["clientId"] == client_id and event["channel"] == "/topic/Leads"
        huge = {"channel": "/meta/subscribe", "clientId": first, "subscription": "/topic/Leads",
                "ext": {"replay": {f"/topic/T{i}": -1 for i in range(2000)}}}  # fmt: skip
        status, (reply,) = await o.post(huge)
        assert status == 413 and reply["error"] == "413::Maximum Request Size Exceeded"

    run(scenario, tmp_path)


def test_renaming_a_topic_keeps_live_subscriptions(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        topic = o.topic("Leads")
        live = await o.ready_client("/topic/Leads")
        o.write("PushTopic", "updated", {**topic, "Name": "Prospects"}, {"Name"})
        # new subscriptions must use the new name
        assert (await o.subscribe(await o.handshake(), "/topic/Leads"))["successful"] is False
        fresh = await o.ready_client("/topic/Prospects")
        lead = o.write("Lead", "created", {"Email": "a@x.com", "Status": "Open"})
        (old_channel,), _ = await o.connect(live)
        assert old_channel["channel"] == "/topic/Leads"
        assert old_channel["data"]["sobject"]["Id"] == lead["Id"]
        (new_channel,), _ = await o.connect(fresh)
        assert new_channel["channel"] == "/topic/Prospects"

    run(scenario, tmp_path)


def test_a_newer_poll_supersedes_a_held_one_without_losing_events(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        o.topic()
        client_id = await o.ready_client()
        await o.connect(client_id)  # the first connect is answered at once
        stale = asyncio.create_task(o.connect(client_id))  # e.g. on a connection since lost
        while not o.hub.clients[client_id].polling:
            await asyncio.sleep(0.01)
        newer = asyncio.create_task(o.connect(client_id))
        events, reply = await asyncio.wait_for(stale, 10)  # released at once, empty
        assert events == [] and reply["successful"]
        while not o.hub.clients[client_id].polling:
            await asyncio.sleep(0.01)
        lead = o.write("Lead", "created", {"Email": "a@x.com", "Status": "Open"})
        events, _ = await asyncio.wait_for(newer, 10)
        assert [e["data"]["sobject"]["Id"] for e in events] == [lead["Id"]]

    run(scenario, tmp_path)


def test_change_events_start_when_an_entity_is_selected(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        before = o.write("Lead", "created", {"Email": "before@x.com", "Status": "Open"})
        assert o.hub.cdc_selected == set()  # nothing selected yet: no change events
        client_id = await o.ready_client("/data/LeadChangeEvent", replay=-2)
        assert o.hub.cdc_selected == {"Lead"}
        after = o.write("Lead", "created", {"Email": "after@x.com", "Status": "Open"})
        o.write("Lead", "created", {**before, "Id": o.state.new_id("00Q")})
        events, _ = await o.connect(client_id)
        ids = [e["data"]["payload"]["ChangeEventHeader"]["recordIds"][0] for e in events]
        assert after["Id"] in ids and before["Id"] not in ids
        resp = await o.client.post("/__devorg__/streaming", json={"cdc_entities": ["Account"]})
        assert (await resp.json())["cdc_entities"] == ["Account"]
        resp = await o.client.post("/__devorg__/streaming", json={"cdc_entities": ["Widget"]})
        assert resp.status == 400

    run(scenario, tmp_path)


def test_change_event_text_is_the_documented_message_shape() -> None:
    payload = {"ChangeEventHeader": {"entityName": "Lead"}, "Email": "a@x.com"}
    text = streaming._cdc_builder("/data/LeadChangeEvent", "Lead", json.dumps(payload))(7)
    assert json.loads(text) == pushtopic.cdc_message("/data/LeadChangeEvent", payload, 7)


def test_filtered_subscriptions(tmp_path: Path) -> None:
    async def scenario(o: Org) -> None:
        o.topic(query="SELECT Id, Email, Status, Company FROM Lead")
        first = o.write(
            "Lead", "created", {"Email": "a@x.com", "Status": "Open", "Company": "Acme"}
        )
        # "&" acts as OR; values may be quoted; replay applies the filter too
        channel = "/topic/Leads?Company='Acme'&Status=Working"
        filtered = await o.ready_client(channel, replay=-2)
        plain = await o.ready_client("/topic/Leads")
        o.write("Lead", "created", {"Email": "b@x.com", "Status": "Open", "Company": "Other"})
        third = o.write(
            "Lead", "created", {"Email": "c@x.com", "Status": "Working", "Company": "Z"}
        )
        events, _ = await o.connect(filtered)
        assert [(e["channel"], e["data"]["sobject"]["Id"]) for e in events] == [
            (channel, first["Id"]),
            (channel, third["Id"]),
        ]
        events, _ = await o.connect(plain)
        assert len(events) == 2 and {e["channel"] for e in events} == {"/topic/Leads"}
        client_id = await o.handshake()
        reply = await o.subscribe(client_id, "/topic/Leads?Industry='Energy'")
        assert reply["error"] == "400::Query fields Industry do not exist on the topic entity"
        reply = await o.subscribe(client_id, "/topic/Leads?Company")
        assert reply["error"].startswith("400::The channel you requested to subscribe to does not")
        reply = await o.subscribe(client_id, "/data/LeadChangeEvent?Email=x")
        assert reply["successful"] is False

    run(scenario, tmp_path)


@pytest.mark.parametrize(
    ("expression", "sobject", "expected"),
    [
        ("Status='Open'", {"Status": "Open"}, True),
        ("Status=open", {"Status": "Open"}, True),
        ("Status='Open'&Company=Acme", {"Status": "Closed", "Company": "Acme"}, True),
        ("Status='Open'&Company=Acme", {"Status": "Closed", "Company": "Other"}, False),
        ("NumberOfEmployees=100", {"NumberOfEmployees": 100.0}, True),
        ("IsConverted=true", {"IsConverted": True}, True),
        ("Email='a@x.com'", {"Email": None}, False),
        ("email='a@x.com'", {"Email": "a@x.com"}, True),
    ],
)
def test_channel_filter_matching(expression: str, sobject: dict[str, Any], expected: bool) -> None:
    assert streaming.ChannelFilter.parse(expression).matches(sobject) is expected
