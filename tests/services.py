"""Find or start the services the suite needs: PostgreSQL and Redis.

Order: URLs in SFBRIDGE_TEST_POSTGRES_URL / SFBRIDGE_TEST_REDIS_URL; then a server already
running on the default loopback port; then one we start (a throwaway PostgreSQL cluster when the
binaries exist; the embedded Redis). Under CI=true nothing may be skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bridge.ports import free_port

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class ThrowawayPostgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sfbridge-pg-"))
        self.port = free_port()

    @staticmethod
    def binaries() -> Path | None:
        initdb = shutil.which("initdb")
        if initdb:
            return Path(initdb).parent
        for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
            if (candidate / "initdb").exists():
                return candidate
        return None

    def start(self) -> str:
        bindir = self.binaries()
        assert bindir
        env = dict(os.environ)
        run_as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run it as nobody-like postgres user
            run_as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres")
        data = self.dir / "data"
        subprocess.run(
            [*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
            check=True,
            capture_output=True,
            env=env,
        )
        subprocess.run(
            [
                *run_as,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-w",
                "-l",
                str(self.dir / "log"),
                "-o",
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                "start",
            ],
            check=True,
            capture_output=True,
            env=env,
        )
        self._run_as, self._bindir, self._data = run_as, bindir, data
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        subprocess.run(
            [
                *self._run_as,
                str(self._bindir / "pg_ctl"),
                "-D",
                str(self._data),
                "-m",
                "fast",
                "stop",
            ],
            capture_output=True,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


def find_postgres() -> tuple[str | None, str, object | None]:
    """(server URL or None, how it was found, owner to stop)."""
    url = os.environ.get("SFBRIDGE_TEST_POSTGRES_URL")
    if url:
        return url, "from SFBRIDGE_TEST_POSTGRES_URL", None
    if _port_open("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/test", "running on 127.0.0.1:5432", None
    if ThrowawayPostgres.binaries():
        pg = ThrowawayPostgres()
        try:
            return pg.start(), "throwaway cluster started by the suite", pg
        except (subprocess.CalledProcessError, OSError) as exc:
            return None, f"could not start a throwaway cluster: {exc}", None
    return None, "no PostgreSQL server running and no PostgreSQL binaries installed", None


def find_redis() -> tuple[str, str, object | None]:
    url = os.environ.get("SFBRIDGE_TEST_REDIS_URL")
    if url:
        return url, "from SFBRIDGE_TEST_REDIS_URL", None
    if _port_open("127.0.0.1", 6379):
        try:
            redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping()
            return "redis://127.0.0.1:6379", "running on 127.0.0.1:6379", None
        except redis.RedisError:
            pass
    from bridge.redis_embedded import EmbeddedRedis

    server = EmbeddedRedis(tempfile.mkdtemp(prefix="sfbridge-redis-")).start()
    return server.url.rsplit("/", 1)[0], "embedded Redis started by the suite", server


def claim_redis_db(base_url: str) -> tuple[str, redis.Redis]:
    """Claim a Redis database index no other running test session uses."""
    control = redis.Redis.from_url(base_url + "/0")
    for index in range(1, 16):
        if control.set(f"sfbridge-test-claim:{index}", os.getpid(), nx=True, ex=3600):
            url = f"{base_url}/{index}"
            client = redis.Redis.from_url(url)
            return url, client
    raise RuntimeError("every Redis database index 1-15 is claimed by another test session")


def release_redis_db(base_url: str, url: str) -> None:
    index = url.rsplit("/", 1)[1]
    redis.Redis.from_url(base_url + "/0").delete(f"sfbridge-test-claim:{index}")


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
    on_timeout: Callable[[], str] | None = None,
) -> Any:
    """Poll `predicate` until it returns a truthy value; fail with `what` after `timeout`
    (and with `on_timeout()`'s text, e.g. a process log, to show why)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{on_timeout()}" if on_timeout else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)
