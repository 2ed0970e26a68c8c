"""A small synchronous Bayeux (CometD long-polling) client for the Salesforce Streaming API.

Why not aiocometd-ng / aiosfstream-ng: see docs/inbound.md. In short: this client is ~250 lines
on the same `requests` stack (CA bundle, no proxy env) as the rest of the bridge; the
subscriber decides when a replay position is safe to store (after the events are committed);
and every Salesforce-specific failure (401 re-auth, 403 unknown client, invalid replay id,
advice) is handled in one visible loop rather than in library callbacks.

Protocol: POST JSON arrays to ``{instance}/cometd/{version}`` with the OAuth bearer token; the
session keeps the cookies Salesforce sets on handshake (it refuses later messages without
them). The replay extension sends ``ext.replay = {channel: replayId}`` on subscribe.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from bridge import defaults
from bridge.errors import TransientError
from bridge.streaming.events import WireMessage

log = logging.getLogger(__name__)

META = "/meta/"


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def _after_space(text: str, at: int) -> int:
    return _SPACE.match(text, at).end()  # type: ignore[union-attr]  # it matches nothing too


def read_answer(text: str) -> Any:
    """The server's answer, parsed: a JSON array's messages become `WireMessage`s that keep
    their own text, so the events are stored without being encoded again; anything else
    (an object, an error page's JSON) as `json.loads` reads it. Raises ValueError."""
    at = _after_space(text, 0)
    if not text.startswith("[", at):
        return json.loads(text)
    messages: list[Any] = []
    at = _after_space(text, at + 1)
    end = at + 1
    while not text.startswith("]", at):
        value, end = _DECODER.raw_decode(text, at)
        messages.append(WireMessage(value, text[at:end]) if type(value) is dict else value)
        at = _after_space(text, end)
        if text.startswith(",", at):
            at = _after_space(text, at + 1)
        elif not text.startswith("]", at):
            raise ValueError(f"expected ',' or ']' at character {at} of the answer")
        end = at + 1
    if _after_space(text, end) != len(text):
        raise ValueError(f"extra data after the answer's array (character {end})")
    return messages


class BayeuxError(Exception):
    """A failed Bayeux exchange; `error` is the server's ``code::message`` text."""

    def __init__(self, error: str, *, channel: str = "", advice: dict[str, Any] | None = None):
        super().__init__(error)
        self.error = error
        self.channel = channel
        self.advice = dict(advice or {})


class AuthenticationInvalid(BayeuxError):
    """``401::Authentication invalid``: the token expired or was revoked; re-authenticate."""


class UnknownClient(BayeuxError):
    """``403::Unknown client`` or advice ``reconnect: handshake``: handshake and resubscribe."""


class InvalidReplayId(BayeuxError):
    """The replay id is outside the retention window (or never existed) for `subscription`."""

    def __init__(self, error: str, *, subscription: str, replay_id: int | None):
        super().__init__(error, channel="/meta/subscribe")
        self.subscription = subscription
        self.replay_id = replay_id


class SubscribeFailed(BayeuxError):
    """Any other subscribe failure (unknown topic, permissions)."""


class ServerSaysStop(BayeuxError):
    """Advice ``reconnect: none``: the server wants no further connects."""


@dataclass
class Advice:
    reconnect: str = "retry"  # retry | handshake | none
    interval_ms: int = 0
    timeout_ms: int = int(defaults.DEFAULT_LONG_POLL_SECONDS * 1000)

    def update(self, advice: dict[str, Any] | None) -> None:
        if not advice:
            return
        self.reconnect = str(advice.get("reconnect", self.reconnect))
        if "interval" in advice:
            self.interval_ms = int(advice["interval"])
        if "timeout" in advice:
            self.timeout_ms = int(advice["timeout"])


def _failure_text(reply: dict[str, Any]) -> str:
    """Salesforce puts the real reason in ext.sfdc.failureReason (e.g. 401 under a 403)."""
    ext = reply.get("ext") or {}
    sfdc = ext.get("sfdc") if isinstance(ext, dict) else None
    reason = sfdc.get("failureReason") if isinstance(sfdc, dict) else None
    return str(reason or reply.get("error") or "unknown error")


class BayeuxClient:
    """Handshake → subscribe → connect (repeat); one instance per streaming session."""

    def __init__(
        self,
        url: str,
        session: requests.Session,
        access_token: Callable[[], str],
        *,
        replay: bool = True,
    ):
        self.url = url
        self.session = session
        self.access_token = access_token
        self.replay = replay
        self.client_id: str | None = None
        self.advice = Advice()
        self._ids = itertools.count(1)
        self._pending: list[dict[str, Any]] = []

    # ---- transport ------------------------------------------------------------------------

    def _post(self, messages: list[dict[str, Any]], read_timeout: float) -> list[dict[str, Any]]:
        for msg in messages:
            msg["id"] = str(next(self._ids))
        try:
            resp = self.session.post(
                self.url,
                json=messages,
                headers={"Authorization": f"Bearer {self.access_token()}"},
                timeout=(10.0, read_timeout),
            )
        except requests.RequestException as exc:
            raise TransientError(f"streaming request failed: {type(exc).__name__}") from exc
        if resp.status_code == 401:
            raise AuthenticationInvalid("401::Authentication invalid")
        if resp.status_code >= 500 or resp.status_code == 429:
            raise TransientError(f"streaming endpoint answered HTTP {resp.status_code}")
        try:
            body = read_answer(resp.content.decode(resp.encoding or "utf-8"))
        except (ValueError, LookupError):  # not JSON, not text, or an unknown charset
            raise TransientError(
                f"streaming endpoint answered HTTP {resp.status_code} without JSON"
            ) from None
        if isinstance(body, dict):
            body = [body]
        if not isinstance(body, list):
            raise TransientError("streaming endpoint answered something other than a JSON array")
        if resp.status_code >= 400 and not any(
            isinstance(m, dict) and m.get("channel", "").startswith(META) for m in body
        ):
            raise TransientError(f"streaming endpoint answered HTTP {resp.status_code}")
        replies = []
        for msg in body:
            if not isinstance(msg, dict):
                continue
            if str(msg.get("channel", "")).startswith(META):
                replies.append(msg)
            else:
                self._pending.append(msg)
        return replies

    def _reply(self, replies: list[dict[str, Any]], channel: str) -> dict[str, Any]:
        for reply in replies:
            if reply.get("channel") == channel:
                self.advice.update(reply.get("advice"))
                return reply
        raise TransientError(f"no {channel} reply in the server's answer")

    def _raise_for(self, reply: dict[str, Any]) -> None:
        text = _failure_text(reply)
        advice = reply.get("advice") or {}
        channel = str(reply.get("channel", ""))
        if text.startswith("401"):
            raise AuthenticationInvalid(text, channel=channel, advice=advice)
        if text.startswith("403::Unknown client") or advice.get("reconnect") == "handshake":
            raise UnknownClient(text, channel=channel, advice=advice)
        if advice.get("reconnect") == "none":
            raise ServerSaysStop(text, channel=channel, advice=advice)
        raise BayeuxError(text, channel=channel, advice=advice)

    # ---- protocol ---------------------------------------------------------------------------

    def handshake(self) -> str:
        # Stale cookies from an earlier session would tie us to a client the server forgot.
        self.session.cookies.clear()
        self.client_id = None
        self.advice = Advice()
        msg: dict[str, Any] = {
            "channel": "/meta/handshake",
            "version": "1.0",
            "minimumVersion": "1.0",
            "supportedConnectionTypes": ["long-polling"],
        }
        if self.replay:
            msg["ext"] = {"replay": True}
        reply = self._reply(self._post([msg], 30.0), "/meta/handshake")
        if not reply.get("successful"):
            self._raise_for(reply)
        self.client_id = str(reply["clientId"])
        log.info("streaming: handshake ok")
        return self.client_id

    def subscribe(self, subscription: str, replay_id: int | None) -> None:
        msg: dict[str, Any] = {
            "channel": "/meta/subscribe",
            "clientId": self.client_id,
            "subscription": subscription,
        }
        if self.replay and replay_id is not None:
            msg["ext"] = {"replay": {subscription: replay_id}}
        reply = self._reply(self._post([msg], 30.0), "/meta/subscribe")
        if reply.get("successful"):
            log.info("streaming: subscribed to %s from replay id %s", subscription, replay_id)
            return
        text = _failure_text(reply)
        if "replayId" in text and "invalid" in text.lower():
            raise InvalidReplayId(text, subscription=subscription, replay_id=replay_id)
        if text.startswith(("401", "403::Unknown client")) or (reply.get("advice") or {}).get(
            "reconnect"
        ) in ("handshake", "none"):
            self._raise_for(reply)
        raise SubscribeFailed(text, channel=subscription, advice=reply.get("advice"))

    def connect(self) -> list[dict[str, Any]]:
        """One long poll; returns the data messages delivered (possibly none)."""
        if self._pending:
            # Messages that came with a handshake/subscribe answer are delivered first.
            out, self._pending = self._pending, []
            return out
        msg = {
            "channel": "/meta/connect",
            "clientId": self.client_id,
            "connectionType": "long-polling",
        }
        read_timeout = self.advice.timeout_ms / 1000 + defaults.CONNECT_TIMEOUT_MARGIN_SECONDS
        replies = self._post([msg], read_timeout)
        reply = self._reply(replies, "/meta/connect")
        if not reply.get("successful"):
            self._raise_for(reply)
        out, self._pending = self._pending, []
        if self.advice.reconnect == "none":
            raise ServerSaysStop("advice reconnect: none", channel="/meta/connect")
        if self.advice.reconnect == "handshake":
            self._pending = out  # keep them: the caller stores them after handshaking again
            raise UnknownClient("advice reconnect: handshake", channel="/meta/connect")
        return out

    def disconnect(self) -> None:
        if not self.client_id:
            return
        try:
            self._post([{"channel": "/meta/disconnect", "clientId": self.client_id}], 5.0)
        except (BayeuxError, TransientError) as exc:
            log.info("streaming: disconnect not acknowledged (%s)", exc)
        self.client_id = None
