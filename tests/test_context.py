"""The worker context: one store, one config and one login per org for every job."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from bridge import context, orgs
from bridge.config import BridgeConfig, OrgConfig
from bridge.context import WorkerContext
from bridge.errors import TransientError
from bridge.store import Store
from bridge.store.models import OrgConnection
from bridge.vault import Vault, generate_key

ORG = OrgConfig.model_validate(
    {"programs": [{"key": "main", "name": "Main"}], "receiver": {"program": "main"}}
)
CONFIG = BridgeConfig(orgs={"acme": ORG, "globex": ORG})
V1 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
V2 = datetime(2026, 1, 6, 9, 30, tzinfo=UTC)


class FakeOrg:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def close(self) -> None:
        self.closed = True


class Opener:
    """Stands in for bridge.orgs.open_org: one login per call."""

    def __init__(self) -> None:
        self.logins: list[str] = []
        self.fail: Exception | None = None

    def __call__(self, name: str, _config: OrgConfig) -> FakeOrg:
        if self.fail is not None:
            raise self.fail
        self.logins.append(name)
        return FakeOrg(name)


@pytest.fixture
def opener() -> Opener:
    return Opener()


def ctx_with(opener: Opener) -> WorkerContext:
    return WorkerContext(store=None, config=CONFIG, open_org=opener)  # type: ignore[arg-type]


def test_each_org_is_logged_in_to_once_per_connection_version(opener: Opener) -> None:
    ctx = ctx_with(opener)
    first = ctx.org("acme", V1)
    assert ctx.org("acme", V1) is first  # the next job, inbound or outbound
    assert ctx.org("globex", V1) is not first
    assert opener.logins == ["acme", "globex"]


def test_a_reconnect_is_picked_up_and_the_old_login_released(opener: Opener) -> None:
    ctx = ctx_with(opener)
    old = ctx.org("acme", V1)
    # `sfbridge org connect acme` again: the stored connection's updated_at moved on.
    new = ctx.org("acme", V2)
    assert new is not old and old.closed and not new.closed
    assert ctx.org("acme", V2) is new
    assert opener.logins == ["acme", "acme"]


def test_a_failed_login_is_not_kept(opener: Opener) -> None:
    ctx = ctx_with(opener)
    opener.fail = TransientError("org unreachable")
    with pytest.raises(TransientError):
        ctx.org("acme", V1)
    opener.fail = None
    assert ctx.org("acme", V1).name == "acme"  # the next job tries again
    assert opener.logins == ["acme"]


def test_jobs_read_the_context_the_process_set(opener: Opener) -> None:
    ctx = ctx_with(opener)
    context.set_context(ctx)
    try:
        assert context.current() is ctx
    finally:
        context.set_context(None)


def test_a_rotated_refresh_token_does_not_make_a_new_connection_version(store: Store) -> None:
    """Salesforce may rotate the refresh token on use; storing it must not look like a
    reconnect, or every job would log in again (and rotate it again)."""
    vault = Vault([generate_key()])
    with store.session() as s:
        s.add(
            OrgConnection(
                name="acme",
                login_url="https://login.example.test",
                auth_method="web",
                refresh_token_enc=vault.encrypt("5Aep-first"),
            )
        )
    version = orgs.load_connection(store, "acme").updated_at
    orgs._refresh_token_saver(store, vault, "acme")("5Aep-second")
    with store.session() as s:
        conn = s.scalars(select(OrgConnection)).one()
        assert vault.decrypt(conn.refresh_token_enc or b"") == "5Aep-second"
        assert conn.updated_at == version
