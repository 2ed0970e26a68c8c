"""The Bayeux client's protocol and Salesforce's failure answers, against HTTP doubles.

The real exchange with the local org is covered by the fault suite; here each answer
Salesforce documents is mapped to the exception the subscriber acts on.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses

from bridge.errors import TransientError
from bridge.streaming.bayeux import (
    AuthenticationInvalid,
    BayeuxClient,
    InvalidReplayId,
    ServerSaysStop,
    SubscribeFailed,
    UnknownClient,
)

URL = "https://org.example.test/cometd/63.0"


def client() -> BayeuxClient:
    session = requests.Session()
    session.trust_env = False
    return BayeuxClient(URL, session, lambda: "TOKEN")


def bodies(rsps: responses.RequestsMock) -> list[list[dict[str, Any]]]:
    return [json.loads(c.request.body) for c in rsps.calls]


def handshake_ok(rsps: responses.RequestsMock) -> None:
    rsps.post(
        URL,
        json=[
            {
                "channel": "/meta/handshake",
                "successful": True,
                "clientId": "c1",
                "advice": {"reconnect": "retry", "interval": 0, "timeout": 110000},
            }
        ],
        headers={"Set-Cookie": "BAYEUX_BROWSER=abc; Path=/"},
    )


def test_handshake_subscribe_connect_with_replay_and_cookie() -> None:
    with responses.RequestsMock() as rsps:
        handshake_ok(rsps)
        rsps.post(
            URL,
            json=[
                {
                    "channel": "/meta/subscribe",
                    "successful": True,
                    "subscription": "/topic/SFB_Lead",
                }
            ],
        )
        event = {"channel": "/topic/SFB_Lead", "data": {"event": {"replayId": 5}}}
        rsps.post(
            URL,
            json=[
                event,
                {
                    "channel": "/meta/connect",
                    "successful": True,
                    "advice": {"reconnect": "retry", "interval": 0},
                },
            ],
        )
        c = client()
        assert c.handshake() == "c1"
        c.subscribe("/topic/SFB_Lead", 4)
        assert c.connect() == [event]
        sent = bodies(rsps)
        assert sent[0][0]["ext"] == {"replay": True}
        assert sent[1][0]["ext"] == {"replay": {"/topic/SFB_Lead": 4}}
        assert sent[2][0]["connectionType"] == "long-polling"
        assert rsps.calls[1].request.headers["Authorization"] == "Bearer TOKEN"
        assert "BAYEUX_BROWSER=abc" in rsps.calls[2].request.headers["Cookie"]


def test_http_401_means_reauthenticate() -> None:
    with responses.RequestsMock() as rsps:
        rsps.post(
            URL,
            status=401,
            json=[
                {
                    "channel": "/meta/handshake",
                    "successful": False,
                    "error": "403::Handshake denied",
                    "ext": {"sfdc": {"failureReason": "401::Authentication invalid"}},
                }
            ],
        )
        with pytest.raises(AuthenticationInvalid):
            client().handshake()


def test_401_in_the_connect_reply() -> None:
    with responses.RequestsMock() as rsps:
        rsps.post(
            URL,
            json=[
                {
                    "channel": "/meta/connect",
                    "successful": False,
                    "error": "401::Authentication invalid",
                    "advice": {"reconnect": "none"},
                }
            ],
        )
        with pytest.raises(AuthenticationInvalid):
            client().connect()


def test_unknown_client_means_handshake_again() -> None:
    with responses.RequestsMock() as rsps:
        rsps.post(
            URL,
            json=[
                {
                    "channel": "/meta/connect",
                    "successful": False,
                    "error": "403::Unknown client",
                    "advice": {"reconnect": "handshake", "interval": 500},
                }
            ],
        )
        c = client()
        with pytest.raises(UnknownClient):
            c.connect()
        assert c.advice.interval_ms == 500


def test_events_delivered_with_advice_handshake_are_kept() -> None:
    with responses.RequestsMock() as rsps:
        event = {"channel": "/topic/SFB_Lead", "data": {"event": {"replayId": 9}}}
        rsps.post(
            URL,
            json=[
                event,
                {
                    "channel": "/meta/connect",
                    "successful": True,
                    "advice": {"reconnect": "handshake"},
                },
            ],
        )
        c = client()
        with pytest.raises(UnknownClient):
            c.connect()
        # The next connect hands them over first (the subscriber stores them after its
        # handshake), without asking the server.
        assert c.connect() == [event]


def test_invalid_replay_id() -> None:
    text = (
        "400::The replayId 12 you provided was invalid.  Please provide a valid ID, -2 to "
        "replay all events, or -1 to replay only new events."
    )
    with responses.RequestsMock() as rsps:
        rsps.post(
            URL,
            json=[
                {
                    "channel": "/meta/subscribe",
                    "successful": False,
                    "subscription": "/topic/SFB_Lead",
                    "error": text,
                }
            ],
        )
        with pytest.raises(InvalidReplayId) as info:
            client().subscribe("/topic/SFB_Lead", 12)
        assert (info.value.subscription, info.value.replay_id) == ("/topic/SFB_Lead", 12)


def test_unknown_channel_is_a_subscribe_failure() -> None:
    with responses.RequestsMock() as rsps:
        rsps.post(
            URL,
            json=[
                {
                    "channel": "/meta/subscribe",
                    "successful": False,
                    "error": "400::The channel you requested to subscribe to does "
                    "not exist /data/LeadChangeEvent",
                }
            ],
        )
        with pytest.raises(SubscribeFailed, match="does not exist"):
            client().subscribe("/data/LeadChangeEvent", -1)


def test_reconnect_none_stops() -> None:
    with responses.RequestsMock() as rsps:
        rsps.post(
            URL,
            json=[
                {"channel": "/meta/connect", "successful": True, "advice": {"reconnect": "none"}}
            ],
        )
        with pytest.raises(ServerSaysStop):
            client().connect()


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_and_broken_connections_are_transient(status: int) -> None:
    with responses.RequestsMock() as rsps:
        rsps.post(URL, status=status, body="oops")
        with pytest.raises(TransientError):
            client().connect()
    with responses.RequestsMock() as rsps:
        rsps.post(URL, body=requests.ConnectionError("reset by peer"))
        with pytest.raises(TransientError):
            client().connect()


def test_advised_timeout_sets_the_read_timeout() -> None:
    with responses.RequestsMock() as rsps:
        rsps.post(
            URL,
            json=[
                {
                    "channel": "/meta/connect",
                    "successful": True,
                    "advice": {"reconnect": "retry", "timeout": 20000},
                }
            ],
        )
        rsps.post(URL, json=[{"channel": "/meta/connect", "successful": True}])
        c = client()
        c.connect()
        c.connect()
        assert c.advice.timeout_ms == 20000
        # responses records the timeout requests was given: advised 20 s + margin
        assert rsps.calls[1].request.req_kwargs["timeout"][1] == pytest.approx(35.0)
