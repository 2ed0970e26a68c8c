"""The resources a web request needs, kept in `app.extensions["sfbridge"]` (flaskr's init_app).

The store is opened once per process; the YAML config and Redis are optional for the web (the
UI still shows the queue without them) and their absence is reported by `/readyz`.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import redis
from flask import Flask, current_app

from bridge import orgs
from bridge.config import BridgeConfig, OrgConfig, Settings
from bridge.errors import UsageError
from bridge.runtime import Runtime
from bridge.store import Store
from bridge.writeback.describes import Describes


@dataclass
class WebContext:
    runtime: Runtime

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def store(self) -> Store:
        return self.runtime.store

    def config(self) -> BridgeConfig | None:
        """The YAML config, or None when SFBRIDGE_CONFIG is not set."""
        if not self.settings.config_path:
            return None
        return self.runtime.config

    @cached_property
    def describes(self) -> Describes:
        """The orgs' field rules, to check input before a push is saved (one per process)."""
        config = self.config()

        def open_connected(name: str) -> Any:
            if config is None or name not in config.orgs:
                raise UsageError(f"org '{name}' is not in the config file")
            return orgs.open_org(self.store, self.runtime.vault, name, config.orgs[name])

        return Describes(self.redis(), open_connected)

    def redis(self) -> redis.Redis | None:
        """Redis when SFBRIDGE_REDIS_URL is set; the web never starts an embedded server itself
        (`sfbridge web` and `sfbridge demo` start one and pass its URL down)."""
        if not self.settings.redis_url:
            return None
        return self.runtime.redis


def init_app(app: Flask, settings: Settings) -> None:
    # Views open short transactions with `store().session()`; nothing outlives a request.
    app.extensions["sfbridge"] = WebContext(Runtime(settings))


def web() -> WebContext:
    ctx: WebContext = current_app.extensions["sfbridge"]
    return ctx


def store() -> Store:
    return web().store


def org_config(name: str | None) -> OrgConfig:
    """The config of org `name`, or a UsageError saying what to fix."""
    cfg = web().config()
    if cfg is None:
        raise UsageError(
            "SFBRIDGE_CONFIG is not set: the receiver needs the config file to decide entries",
            code="config_missing",
        )
    if name is None:
        if len(cfg.orgs) == 1:
            return next(iter(cfg.orgs.values()))
        raise UsageError("this entry belongs to no org connection", code="org_unknown")
    try:
        return cfg.orgs[name]
    except KeyError:
        raise UsageError(
            f"org '{name}' is not in the config file (orgs: {', '.join(cfg.orgs)})",
            code="org_unknown",
        ) from None


def secret_key(settings: Settings) -> str:
    """SFBRIDGE_SECRET_KEY, or a random key kept in the instance dir so every worker shares it."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.instance_dir) / "secret_key"
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker wrote it first
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key)
    return key
