"""`sfbridge web` as a real gunicorn process on loopback, for end-to-end tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests import services
from tests.web.seed import CONFIG_YAML


@contextmanager
def running_web(
    database_url: str, tmp_path: Path, workers: int = 1, **env_extra: str
) -> Iterator[str]:
    """Serve the app with `sfbridge web`; yields its base URL and stops it afterwards."""
    config = tmp_path / "sfbridge.yaml"
    config.write_text(CONFIG_YAML, encoding="utf-8")
    port = services.free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SFBRIDGE_")},
        "SFBRIDGE_DATABASE_URL": database_url,
        "SFBRIDGE_CONFIG": str(config),
        "SFBRIDGE_SECRET_KEY": "e2e-secret",
        "SFBRIDGE_INSTANCE_DIR": str(tmp_path / "instance"),
        **env_extra,
    }
    env.pop("FORWARDED_ALLOW_IPS", None)  # gunicorn's own default must not decide the test
    sfbridge = shutil.which("sfbridge", path=str(Path(sys.executable).parent)) or "sfbridge"
    log_path = tmp_path / f"web-{port}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sfbridge, "web", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, log_path.read_text()
        try:
            return requests.get(base + "/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    try:
        services.wait_for(up, timeout=60, what="gunicorn to serve /healthz")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def csrf_of(session: requests.Session, base: str) -> str:
    import re

    page = session.get(base + "/auth/login", timeout=10).text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1)
