"""The API under the real gunicorn (`sfbridge web`): what gunicorn itself refuses comes back
as the API's JSON error, and an oversized chunked body is a 413 — raw HTTP over loopback."""

from __future__ import annotations

import contextlib
import json
import socket
from typing import Any

import pytest

from bridge.store import Store
from bridge.vocabulary import SCOPES
from tests.web.seed import Seeded, token

pytestmark = pytest.mark.e2e


def exchange(base: str, raw: bytes) -> tuple[int, dict[str, str], Any]:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        # the server may answer and close before reading all of it
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def _error(answer: tuple[int, dict[str, str], Any], status: int) -> dict[str, Any]:
    code, headers, body = answer
    assert code == status, body
    assert headers["content-type"].startswith("application/json")
    assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"]
    return dict(body["error"])


def test_gunicorns_own_errors_are_json(web_server: tuple[str, Seeded], sqlite_store: Store) -> None:
    base, _ = web_server
    secret = token(sqlite_store, list(SCOPES)).encode()
    long_line = b"GET /api/v1/entries?q=" + b"x" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    assert _error(exchange(base, long_line), 414)["code"] == "uri_too_long"
    _error(exchange(base, b"NOT AN HTTP REQUEST\r\n\r\n"), 400)
    bad_chunk = (
        b"POST /api/v1/entries HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + secret + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n"
    )
    _error(exchange(base, bad_chunk), 400)


def test_an_oversized_chunked_body_is_413(
    web_server: tuple[str, Seeded], sqlite_store: Store
) -> None:
    base, _ = web_server
    secret = token(sqlite_store, list(SCOPES)).encode()
    payload = b'{"org": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(payload[i : i + 65536]), payload[i : i + 65536])
        for i in range(0, len(payload), 65536)
    )
    request = (
        b"POST /api/v1/entries HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer "
        + secret
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunks
        + b"0\r\n\r\n"
    )
    error = _error(exchange(base, request), 413)
    assert error["code"] == "request_entity_too_large"
    deep = b"[" * 5000 + b"]" * 5000
    request = (
        b"POST /api/v1/entries HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s" % (secret, len(deep), deep)
    )
    assert _error(exchange(base, request), 400)["code"] == "too_deep"
