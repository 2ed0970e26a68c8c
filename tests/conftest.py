"""Shared fixtures: the store on SQLite and PostgreSQL, a clean Redis database, the CLI runner."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import text

from bridge.store import Store
from bridge.store.models import Base
from tests import factories, services

pytest_plugins = ["tests.conftest_devorg"]

_found: dict[str, tuple[str | None, str]] = {}


def _found_service(config: pytest.Config, name: str, url: str | None, how: str) -> None:
    """Note which server the suite used for `name` (or why none), for the summary; an xdist
    worker also sends it to the controlling process, which prints the summary."""
    _found[name] = (url, how)
    if hasattr(config, "workeroutput"):
        config.workeroutput.setdefault("services", {})[name] = (url, how)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """An xdist worker finished: take over what it found."""
    for name, (url, how) in getattr(node, "workeroutput", {}).get("services", {}).items():
        _found[name] = (url, how)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say which PostgreSQL and Redis the suite used, or why it skipped them."""
    for name, (url, how) in sorted(_found.items()):
        where = f" ({url.rsplit('@', 1)[-1]})" if url else ""
        terminalreporter.write_line(f"services: {name}: {how}{where}")


# ---- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server(pytestconfig: pytest.Config) -> Iterator[str]:
    """The URL of a PostgreSQL database created for this test session (dropped after); each
    xdist worker is a session of its own, with a database of its own."""
    url, how, owner = services.find_postgres()
    _found_service(pytestconfig, "postgresql", url, how)
    if url is None:
        if services.IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {how}")
        pytest.skip(f"PostgreSQL tests skipped: {how}")
    admin = Store(url, isolation_level="AUTOCOMMIT")
    name = f"sfbridge_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = url.rsplit("/", 1)[0] + "/" + name
    template = Store(db_url)
    template.upgrade()
    template.dispose()
    yield db_url
    with admin.engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    if owner is not None:
        owner.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    store.dispose()
    return path


def _truncate_all(store: Store) -> None:
    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with store.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated, empty store: once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "sfbridge.db"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        s = Store(f"sqlite:///{path}")
    else:
        s = Store(request.getfixturevalue("postgres_server"))
        _truncate_all(s)
    yield s
    s.dispose()


@pytest.fixture
def postgres_store(postgres_server: str) -> Iterator[Store]:
    """A migrated, empty PostgreSQL store (for behaviour only a server database has)."""
    s = Store(postgres_server)
    _truncate_all(s)
    yield s
    s.dispose()


@pytest.fixture
def sqlite_store(tmp_path: Path, _sqlite_template: Path) -> Iterator[Store]:
    """A migrated, empty SQLite store (for tests that need only one backend)."""
    path = tmp_path / "sfbridge.db"
    shutil.copy(_sqlite_template, path)
    s = Store(f"sqlite:///{path}")
    yield s
    s.dispose()


# ---- Redis ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(pytestconfig: pytest.Config) -> Iterator[str]:
    """A Redis database index of our own on the suite's Redis server (one per xdist worker)."""
    base, how, owner = services.find_redis()
    _found_service(pytestconfig, "redis", base, how)
    url, _client = services.claim_redis_db(base)
    yield url
    services.release_redis_db(base, url)
    if owner is not None:
        owner.stop()  # type: ignore[attr-defined]


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The Redis URL, its database flushed before the test."""
    redis.Redis.from_url(redis_server).flushdb()
    return redis_server


@pytest.fixture
def redis_client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


# ---- CLI ------------------------------------------------------------------------------------


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


# ---- CI skips nothing -----------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI=true a skipped test is a failure: CI must run every part of the suite."""
    outcome = yield
    report = outcome.get_result()
    if services.IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where nothing may be skipped: {reason}"


# ---- rows most store tests start from -------------------------------------------------------


@pytest.fixture
def org_id(store: Store) -> int:
    """A connected org in the store."""
    with store.session() as session:
        return factories.connected_org(session).id
