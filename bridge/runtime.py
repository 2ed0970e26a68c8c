"""The pieces a process needs (settings, store, config, Redis), built once from the environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import redis

from bridge.config import BridgeConfig, Settings, load_config
from bridge.errors import ConfigError
from bridge.redis_embedded import EmbeddedRedis
from bridge.store import Store
from bridge.vault import Vault


@dataclass
class Runtime:
    settings: Settings
    _embedded_redis: object | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls) -> Runtime:
        return cls(Settings.from_env())

    @cached_property
    def store(self) -> Store:
        return Store(self.settings.database_url)

    @cached_property
    def config(self) -> BridgeConfig:
        if not self.settings.config_path:
            raise ConfigError("SFBRIDGE_CONFIG is not set: point it at your YAML config file")
        return load_config(self.settings.config_path)

    @cached_property
    def vault(self) -> Vault:
        return Vault(self.settings.encryption_keys)

    @property
    def redis_url(self) -> str:
        if self.settings.redis_url:
            return self.settings.redis_url
        if self._embedded_redis is None:
            self._embedded_redis = EmbeddedRedis(Path(self.settings.instance_dir) / "redis").start()
        return self._embedded_redis.url  # type: ignore[attr-defined]

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)
