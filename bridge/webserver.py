"""Run the web app under gunicorn (used by `sfbridge web` and `sfbridge demo`).

The control socket is off: gunicorn would otherwise create one under the home directory.
Without SFBRIDGE_REDIS_URL an embedded Redis is started here, before the workers fork, and its
URL is passed to them through the environment, so every worker shares one server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from bridge.config import Settings


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict[str, Any]):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from bridge import create_app

        return create_app()


def gunicorn_options(host: str, port: int, workers: int) -> dict[str, Any]:
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "control_socket_disable": True,
        "accesslog": "-",
        "errorlog": "-",
        "timeout": 60,
        "graceful_timeout": 5,
        "preload_app": False,
        "proc_name": "sfbridge-web",
    }


def serve(host: str, port: int, workers: int) -> None:
    settings = Settings.from_env()
    from bridge.store import Store

    store = Store(settings.database_url)
    store.upgrade()  # idempotent; a fresh embedded database is ready at once
    store.dispose()
    embedded = None
    if not settings.redis_url:
        from bridge.redis_embedded import EmbeddedRedis

        embedded = EmbeddedRedis(Path(settings.instance_dir) / "redis").start()
        os.environ["SFBRIDGE_REDIS_URL"] = embedded.url
    try:
        _Gunicorn(gunicorn_options(host, port, workers)).run()
    finally:
        if embedded is not None:
            embedded.stop()
