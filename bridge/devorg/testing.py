"""`DevOrg`: run the local org as a real `sfbridge devorg` process, for tests and benchmarks.

with DevOrg() as org:
    sf = org.sf("sales")            # simple-salesforce, logged in with the password grant
    sf.Lead.create({...})
    org.control("clock", {"advance_seconds": 3600})
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bridge.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def _command() -> list[str]:
    script = Path(sys.executable).parent / "sfbridge"
    if script.exists():
        return [str(script), "devorg"]
    found = shutil.which("sfbridge")
    if found:
        return [found, "devorg"]
    return [sys.executable, "-c", "from bridge.cli import main; main()", "devorg"]


class DevOrg:
    """A `sfbridge devorg` subprocess on a free loopback port with its own data dir."""

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        port: int | None = None,
        package_dir: str | Path | None = None,
        startup_timeout: float = 20.0,
        latency: str | None = None,
        pubsub: bool = False,
    ) -> None:
        self.pubsub_port = free_port() if pubsub else None  # `--pubsub-port`
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="sfbridge-devorg-"))
        self.port = port or free_port()
        default_package = REPO_ROOT / "force-app"
        self.package_dir = Path(package_dir) if package_dir is not None else default_package
        self.startup_timeout = startup_timeout
        self.latency = latency  # `--latency` (None: the command's default)
        self.process: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self._log = self.data_dir / "devorg.log"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> DevOrg:
        if self.process is not None and self.process.poll() is None:
            return self
        cmd = [
            *_command(),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--data-dir", str(self.data_dir),
            "--package-dir", str(self.package_dir),
            *(["--latency", self.latency] if self.latency else []),
            *(["--pubsub-port", str(self.pubsub_port)] if self.pubsub_port else []),
        ]  # fmt: skip
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self._log, "ab")  # noqa: SIM115 - handed to the child process
        try:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        finally:
            log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        info_path = self.data_dir / "devorg.json"
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"sfbridge devorg exited with {self.process.returncode}:\n{self.log_text()}"
                )
            if info_path.exists():
                try:
                    info = json.loads(info_path.read_text(encoding="utf-8"))
                    if info.get("instance_url", "").endswith(f":{self.port}"):
                        self.info = info
                        r = self.session().get(f"{self.base_url}/__devorg__/health", timeout=2)
                        if r.status_code == 200:
                            return
                except (ValueError, OSError, requests.RequestException) as exc:
                    last_error = exc
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"sfbridge devorg not ready ({last_error}):\n{self.log_text()}")

    def log_text(self) -> str:
        try:
            return self._log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> DevOrg:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> DevOrg:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- clients ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return str(self.info["instance_url"])

    @property
    def ca_path(self) -> str:
        return str(self.info["ca_path"])

    def session(self) -> requests.Session:
        """A requests session that trusts the org's CA (and ignores REQUESTS_CA_BUNDLE)."""
        s = requests.Session()
        s.trust_env = False
        s.verify = self.ca_path
        return s

    def user(self, user: str = "sales") -> dict[str, str]:
        return dict(self.info["users"][user])

    def token(self, user: str = "sales") -> dict[str, Any]:
        """A token response from the password grant for "sales" or "integration"."""
        u = self.user(user)
        r = self.session().post(
            f"{self.base_url}/services/oauth2/token",
            data={
                "grant_type": "password",
                "client_id": self.info["client_id"],
                "client_secret": self.info["client_secret"],
                "username": u["username"],
                "password": u["password"],
            },
            timeout=10,
        )
        r.raise_for_status()
        return dict(r.json())

    def sf(self, user: str = "sales", version: str | None = None) -> Any:
        """A simple-salesforce client logged in as that user."""
        from simple_salesforce import Salesforce

        tok = self.token(user)
        return Salesforce(
            instance_url=tok["instance_url"],
            session_id=tok["access_token"],
            session=self.session(),
            version=version or self.info["api_version"],
        )

    def control(self, path: str, json: Any = None, method: str = "POST") -> Any:
        """Call the control API (`/__devorg__/<path>`); returns the decoded JSON."""
        r = self.session().request(
            method, f"{self.base_url}/__devorg__/{path.lstrip('/')}", json=json, timeout=10
        )
        r.raise_for_status()
        return r.json()
