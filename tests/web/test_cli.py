"""`sfbridge users add` and `sfbridge tokens create|revoke|list`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bridge.cli import main
from bridge.store import Store
from bridge.store.models import ApiToken, User
from bridge.users import find_token


@pytest.fixture
def env(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("SFBRIDGE_DATABASE_URL", sqlite_store.url)
    return sqlite_store


def test_users_add_reads_the_password_from_stdin(runner: CliRunner, env: Store) -> None:
    result = runner.invoke(
        main,
        ["users", "add", "Rita@Example.com", "--role", "reviewer", "--password-stdin"],
        input="a very good password\n",
    )
    assert result.exit_code == 0, result.output
    assert "added rita@example.com (reviewer)" in result.output
    with env.session() as s:
        user = s.scalars(select(User)).one()
        assert user.password_hash.startswith("scrypt:") and user.role == "reviewer"
    again = runner.invoke(
        main,
        ["users", "add", "rita@example.com", "--role", "admin", "--password-stdin"],
        input="another good password\n",
    )
    assert again.exit_code == 1 and "already exists" in again.output
    short = runner.invoke(
        main,
        ["users", "add", "sam@example.com", "--role", "admin", "--password-stdin"],
        input="short\n",
    )
    assert short.exit_code == 1 and "at least 10 characters" in short.output
    assert "Traceback" not in short.output


def test_tokens_create_list_revoke(runner: CliRunner, env: Store) -> None:
    runner.invoke(
        main,
        ["users", "add", "ops@example.com", "--role", "admin", "--password-stdin"],
        input="a very good password\n",
    )
    result = runner.invoke(
        main,
        [
            "tokens",
            "create",
            "--user",
            "ops@example.com",
            "--name",
            "crm",
            "--scope",
            "entries:read entries:write",
        ],
    )
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[-1]
    assert secret.startswith("sfb_")
    with env.session() as s:
        token = find_token(s, secret)
        assert token is not None and token.scopes == ["entries:read", "entries:write"]
        assert secret not in token.token_hash  # only the SHA-256 is stored
        token_id = token.id
    listing = runner.invoke(main, ["tokens", "list"])
    assert "crm" in listing.output and secret not in listing.output
    revoked = runner.invoke(main, ["tokens", "revoke", str(token_id)])
    assert revoked.exit_code == 0 and "revoked token" in revoked.output
    with env.session() as s:
        assert find_token(s, secret) is None
        assert s.get(ApiToken, token_id).revoked_at is not None  # type: ignore[union-attr]
    bad = runner.invoke(
        main,
        ["tokens", "create", "--user", "ops@example.com", "--name", "x", "--scope", "everything"],
    )
    assert bad.exit_code == 1 and "unknown scope" in bad.output
    nouser = runner.invoke(
        main,
        ["tokens", "create", "--user", "who@example.com", "--name", "x", "--scope", "entries:read"],
    )
    assert nouser.exit_code == 1 and "no user" in nouser.output
