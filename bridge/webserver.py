"""Run the web app under gunicorn (used by `sfbridge web` and `sfbridge demo web`).

The control socket is off: gunicorn would otherwise create one under the home directory.
Without SFBRIDGE_REDIS_URL an embedded Redis is started here, before the workers fork, and its
URL is passed to them through the environment, so every worker shares one server.

Proxy trust: gunicorn by default believes X-Forwarded-Proto (and the other "secure scheme"
headers) from 127.0.0.1, so anything on the same host could claim HTTPS. Without
SFBRIDGE_TRUST_PROXY it trusts no peer (`forwarded_allow_ips` is empty); with it, every peer —
the bridge must then be reachable only through the proxy (see docs/web.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication

from bridge import create_app, trust_proxy
from bridge.config import Settings
from bridge.redis_embedded import EmbeddedRedis
from bridge.store import Store


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own answers (a request line over 4094 bytes, bad headers, a malformed chunk)
    as the API's JSON error instead of an HTML page. They come before any path is known, so
    every path gets JSON: an API client can read it, and a browser shows it as text."""
    code = reason.lower().replace(" ", "_") or "bad_request"
    body = json.dumps({"error": {"code": code, "message": mesg or reason}}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nCache-Control: no-store\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    gunicorn_util.write_nonblock(sock, head + body)


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict[str, Any], app_config: Mapping[str, Any] | None = None):
        self.options = options
        self.app_config = app_config
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # In the worker (the app is not preloaded): gunicorn's workers write their errors
        # through this module function, which has no hook of its own.
        gunicorn_util.write_error = write_json_error
        return create_app(config=self.app_config)


def gunicorn_options(
    host: str, port: int, workers: int, trust_proxy: bool = False
) -> dict[str, Any]:
    return {
        "bind": f"{host}:{port}",
        "forwarded_allow_ips": "*" if trust_proxy else "",
        "workers": workers,
        "control_socket_disable": True,
        "accesslog": "-",
        "errorlog": "-",
        "timeout": 60,
        "graceful_timeout": 5,
        "preload_app": False,
        "proc_name": "sfbridge-web",
    }


def serve(host: str, port: int, workers: int, app_config: Mapping[str, Any] | None = None) -> None:
    """Serve `create_app(config=app_config)` (each worker builds its own app after the fork)."""
    settings = Settings.from_env()
    store = Store(settings.database_url)
    store.upgrade()  # idempotent; a fresh embedded database is ready at once
    store.dispose()
    embedded = None
    if not settings.redis_url:
        embedded = EmbeddedRedis(Path(settings.instance_dir) / "redis").start()
        os.environ["SFBRIDGE_REDIS_URL"] = embedded.url
    try:
        options = gunicorn_options(host, port, workers, trust_proxy())
        _Gunicorn(options, app_config).run()
    finally:
        if embedded is not None:
            embedded.stop()
