"""`Demo.stop` stops everything it started, even when Ctrl-C is pressed again meanwhile."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from bridge.devorg.demo import Child, Demo


class _Child:
    """A child process that has exited; waiting for it delivers a second Ctrl-C."""

    pid = 0

    def poll(self) -> int:
        return 0

    def wait(self, timeout: float | None = None) -> int:
        os.kill(os.getpid(), signal.SIGINT)
        return 0


class _Stoppable:
    stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_a_second_ctrl_c_while_stopping_still_stops_the_org_and_redis(tmp_path: Path) -> None:
    said: list[str] = []
    demo = Demo(tmp_path, echo=said.append)
    proc: Any = _Child()
    demo.children.append(Child("web", proc, tmp_path / "web.log"))
    org, redis = _Stoppable(), _Stoppable()
    demo._devorg, demo._redis = org, redis
    before = signal.getsignal(signal.SIGINT)
    demo.stop()
    assert org.stopped and redis.stopped
    assert said == ["stopped: web, worker, stream, local org and Redis"]
    assert signal.getsignal(signal.SIGINT) is before
