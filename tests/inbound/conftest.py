"""Fixtures for the inbound tests: a connected org row in the store."""

from __future__ import annotations

import pytest

from bridge.store import Store
from bridge.store.models import OrgConnection

INTEGRATION_USER = "005000000000001AAA"
SALES_USER = "005000000000002AAA"


@pytest.fixture
def org_id(store: Store) -> int:
    with store.session() as session:
        conn = OrgConnection(
            name="acme",
            login_url="https://login.example.test",
            auth_method="jwt",
            integration_user_id=INTEGRATION_USER,
        )
        session.add(conn)
        session.flush()
        return conn.id
