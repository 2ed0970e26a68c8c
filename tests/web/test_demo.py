"""`sfbridge demo` end to end: it starts, entries arrive (some wait for review), the dashboard
button makes more changes, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from bridge.store import Store
from bridge.store.models import Push, SalesEntry
from tests import services

pytestmark = pytest.mark.e2e


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_demo_runs_and_stops_cleanly(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    env = {**os.environ, "SFBRIDGE_INSTANCE_DIR": str(instance)}
    for key in ("SFBRIDGE_DATABASE_URL", "SFBRIDGE_REDIS_URL", "SFBRIDGE_CONFIG"):
        env.pop(key, None)
    out = tmp_path / "demo.out"
    sfbridge = str(Path(sys.executable).parent / "sfbridge")
    with out.open("wb") as fh:
        proc = subprocess.Popen(
            [sfbridge, "demo", "--port", str(services.free_port()),
             "--org-port", str(services.free_port())],
            env=env, stdout=fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    store = Store(f"sqlite:///{instance / 'sfbridge.db'}")
    try:
        services.wait_for(
            lambda: proc.poll() is not None or "is running" in out.read_text(),
            timeout=60,
            what="the demo to start",
        )
        text = out.read_text()
        assert proc.poll() is None, text
        url = re.search(r"web UI\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        login = re.search(r"sign in\s+(\S+) / (\S+)", text)
        assert login and login.group(1) == "reviewer@example.com"

        def waiting() -> int:
            with store.session() as s:
                return int(
                    s.scalar(select(func.count()).where(SalesEntry.outcome == "review")) or 0
                )

        services.wait_for(lambda: waiting() >= 3, timeout=30, what="entries in review")
        with store.session() as s:
            assert s.scalar(select(func.count()).where(SalesEntry.outcome == "processed"))

        # Every page has something to show: a failed entry and a failed push.
        def failed() -> tuple[int, int]:
            with store.session() as s:
                entries = s.scalar(select(func.count()).where(SalesEntry.outcome == "failed"))
                pushes = s.scalars(select(Push).where(Push.state == "failed")).all()
                return int(entries or 0), len([p for p in pushes if p.error_code])

        services.wait_for(lambda: min(failed()) >= 1, timeout=30, what="a failed entry and push")
        with store.session() as s:
            push = s.scalars(select(Push).where(Push.state == "failed")).first()
            assert push is not None and push.error_code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
            assert push.error_fields == ["Phone"]

        # The CLI command the demo prints works as printed, with none of the demo's settings.
        line = re.search(r"API token\s+(.+)", text).group(1)  # type: ignore[union-attr]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SFBRIDGE_")}
        made = subprocess.run(
            ["bash", "-c", line], env=clean, capture_output=True, text=True, timeout=60
        )
        assert made.returncode == 0, made.stdout + made.stderr
        assert "sfb_" in made.stdout, made.stdout
        more = re.search(r"button, or `(.+ demo changes)`", text).group(1)  # type: ignore[union-attr]
        changed = subprocess.run(
            ["bash", "-c", more], env=clean, capture_output=True, text=True, timeout=60
        )
        assert changed.returncode == 0 and "new Leads" in changed.stdout, changed.stderr

        # Sign in as the printed reviewer and press the dashboard button.
        web = requests.Session()
        web.trust_env = False
        page = web.get(url + "auth/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        resp = web.post(
            url + "auth/login",
            data={"email": login.group(1), "password": login.group(2), "csrf_token": token},
        )
        assert "Make changes in the org as a sales user" in resp.text
        before = waiting()
        token = re.search(r'name="csrf_token" value="([^"]+)"', resp.text).group(1)  # type: ignore[union-attr]
        done = web.post(url + "demo/changes", data={"csrf_token": token})
        assert "Made changes in the org as the sales user" in done.text
        services.wait_for(
            lambda: waiting() > before, timeout=30, what="the new changes to reach the review queue"
        )
        assert web.get(url + "readyz").status_code == 200
        assert "checks" in web.get(url + "readyz").json()  # the demo lets loopback see details
        assert "sfbridge_up 1" in web.get(url + "metrics").text
    finally:
        family = _descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        try:
            # Under the suite's two workers on two cores the demo's stop (web, worker, stream,
            # local org, embedded Redis) once took over 40 s; alone it takes a few seconds.
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            for pid in [proc.pid, *family]:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
            raise
        store.dispose()
    assert "stopped: web, worker, stream, local org and Redis" in out.read_text()
    assert len(family) >= 6  # redis, org, worker (+ scheduler), stream, web (+ workers)
    assert [pid for pid in family if _alive(pid)] == []
