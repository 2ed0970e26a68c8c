"""The local org for tests: one real `sfbridge devorg` process per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.devorg.testing import DevOrg


@pytest.fixture(scope="session")
def devorg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevOrg]:
    """The session's local org (package custom fields from force-app)."""
    org = DevOrg(tmp_path_factory.mktemp("devorg"))
    org.start()
    yield org
    org.close()


@pytest.fixture
def clean_devorg(devorg: DevOrg) -> Iterator[DevOrg]:
    """The session's local org, reset (records, faults, clock, stats) before and after."""
    devorg.control("reset")
    yield devorg
    devorg.control("reset")
