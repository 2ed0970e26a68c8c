"""Fixtures for the web tests (the flaskr shape): `app`, `client`, `auth`, seeded data."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge import create_app
from bridge.config import Settings
from bridge.store import Store
from tests.web.seed import CONFIG_YAML, FAST_HASH, PASSWORD, Seeded, seed
from tests.web.webproc import running_web


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "sfbridge.yaml"
    path.write_text(CONFIG_YAML, encoding="utf-8")
    return path


def make_app(
    store: Store, config_file: Path, tmp_path: Path, redis_url: str | None = None, **config: Any
) -> Flask:
    settings = Settings(
        database_url=store.url,
        redis_url=redis_url,
        config_path=str(config_file),
        secret_key="test-secret",
        encryption_keys=(),
        instance_dir=str(tmp_path / "instance"),
    )
    return create_app(settings, {"PASSWORD_HASH_METHOD": FAST_HASH, **config})


@pytest.fixture
def seeded(sqlite_store: Store) -> Seeded:
    return seed(sqlite_store)


@pytest.fixture
def app(sqlite_store: Store, seeded: Seeded, config_file: Path, tmp_path: Path) -> Iterator[Flask]:
    app = make_app(sqlite_store, config_file, tmp_path)
    yield app
    app.extensions["sfbridge"].store.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def form_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


class AuthActions:
    def __init__(self, client: FlaskClient):
        self.client = client

    def csrf(self, path: str = "/auth/login") -> str:
        return form_token(self.client.get(path).get_data(as_text=True))

    def login(
        self, email: str = "reviewer@example.com", password: str = PASSWORD, **kw: Any
    ) -> Any:
        token = self.csrf()
        return self.client.post(
            "/auth/login", data={"email": email, "password": password, "csrf_token": token}, **kw
        )

    def post(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
        """POST a form with the session's CSRF token, as the browser would."""
        token = self.csrf("/")
        return self.client.post(path, data={**(data or {}), "csrf_token": token}, **kw)


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    return AuthActions(client)


@pytest.fixture
def app_factory(config_file: Path, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    made: list[Flask] = []

    def factory(store: Store, **kw: Any) -> Flask:
        app = make_app(store, config_file, tmp_path, **kw)
        made.append(app)
        return app

    yield factory
    for a in made:
        a.extensions["sfbridge"].store.dispose()


@pytest.fixture
def web_server(sqlite_store: Store, tmp_path: Path, redis_url: str) -> Iterator[tuple[str, Seeded]]:
    """`sfbridge web` (gunicorn, one worker) on a free loopback port over the seeded store."""
    seeded = seed(sqlite_store)
    with running_web(sqlite_store.url, tmp_path, SFBRIDGE_REDIS_URL=redis_url) as base:
        yield base, seeded
