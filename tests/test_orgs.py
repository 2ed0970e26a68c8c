"""Stored org connections: encrypted secrets, one org per connection, `org connect`, rotation."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
from sqlalchemy import select, text

from bridge import orgs
from bridge.cli import main
from bridge.config import OrgConfig
from bridge.errors import PermanentError, UsageError
from bridge.salesforce import oauth
from bridge.salesforce.connection import OrgCredentials, SalesforceOrg, connect
from bridge.store import Store
from bridge.store.models import AuditLog, OrgConnection
from bridge.vault import Vault, generate_key
from tests import factories
from tests.sf_doubles import (
    CLIENT_ID,
    INSTANCE_URL,
    LOGIN_URL,
    ORG_ID,
    USER_ID,
    USERNAME,
    FakeSalesforce,
    new_rsa_key,
)

OTHER_ORG_ID = "00D5g00000OTHERAAA"


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    return new_rsa_key()


@pytest.fixture
def fake(rsa_keys: tuple[str, str]) -> Iterator[FakeSalesforce]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeSalesforce(rsps, public_key_pem=rsa_keys[1]).install()


@pytest.fixture
def vault() -> Vault:
    return Vault([generate_key()])


def org_config(**overrides: object) -> OrgConfig:
    login = {"login_url": LOGIN_URL, "client_id": CLIENT_ID, "username": USERNAME}
    return factories.org_config({"status_rules": []}, **{**login, **overrides})


def jwt_org(rsa_keys: tuple[str, str]) -> SalesforceOrg:
    return connect(
        OrgCredentials(LOGIN_URL, CLIENT_ID, username=USERNAME, private_key_pem=rsa_keys[0])
    )


def key_body(pem: str) -> list[str]:
    """The base64 lines of a PEM: what would leak if the key were stored or logged in part."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def test_a_jwt_connection_is_stored_with_the_key_encrypted(store: Store, vault, fake, rsa_keys):
    org = jwt_org(rsa_keys)
    orgs.save_connection(
        store, vault, "acme", org_config(), org, private_key_pem=rsa_keys[0], auth_method="jwt"
    )
    with store.session() as session:
        conn = session.scalars(select(OrgConnection)).one()
        assert (conn.name, conn.org_id, conn.integration_user_id) == ("acme", ORG_ID, USER_ID)
        assert (conn.instance_url, conn.username, conn.auth_method) == (
            INSTANCE_URL,
            USERNAME,
            "jwt",
        )
        assert conn.refresh_token_enc is None
        assert vault.decrypt(conn.private_key_enc) == rsa_keys[0]
        audit = session.scalars(select(AuditLog)).one()
        assert (audit.action, audit.detail["org_id"]) == ("org.connect", ORG_ID)

    # Every stored column, read back raw: no plaintext key, not even one line of it.
    with store.engine.connect() as db:
        row = db.execute(text("SELECT * FROM org_connections")).mappings().one()
    dump = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row.values())
    assert b"PRIVATE KEY" not in dump
    for line in key_body(rsa_keys[0]):
        assert line.encode() not in dump
        assert base64.b64encode(line.encode()) not in dump
    assert org.access_token.encode() not in dump


def test_a_refresh_token_is_stored_encrypted(store: Store, vault, fake):
    fake.refresh_tokens.add("5Aep861-plain-refresh-token")
    org = connect(OrgCredentials(LOGIN_URL, CLIENT_ID, refresh_token="5Aep861-plain-refresh-token"))
    orgs.save_connection(
        store,
        vault,
        "acme",
        org_config(),
        org,
        refresh_token="5Aep861-plain-refresh-token",
        auth_method="web",
    )
    with store.engine.connect() as db:
        row = db.execute(text("SELECT * FROM org_connections")).mappings().one()
    dump = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row.values())
    assert b"5Aep861-plain-refresh-token" not in dump
    assert row["private_key_enc"] is None
    assert vault.decrypt(bytes(row["refresh_token_enc"])) == "5Aep861-plain-refresh-token"
    # A web connection learns its username from the org itself.
    assert row["username"] == USERNAME


def test_one_org_cannot_be_connected_under_two_names(store: Store, vault, fake, rsa_keys):
    org = jwt_org(rsa_keys)
    orgs.save_connection(
        store, vault, "acme", org_config(), org, private_key_pem=rsa_keys[0], auth_method="jwt"
    )
    with pytest.raises(UsageError) as raised:
        orgs.save_connection(
            store, vault, "acme-2", org_config(), org, private_key_pem=rsa_keys[0],
            auth_method="jwt",
        )  # fmt: skip
    assert raised.value.code == "org_already_connected"
    assert f"org {ORG_ID} is already connected as 'acme'" in raised.value.message
    with store.session() as session:
        assert session.scalars(select(OrgConnection.name)).all() == ["acme"]


def test_reconnecting_the_same_name_and_org_updates_it(store: Store, vault, fake, rsa_keys):
    org = jwt_org(rsa_keys)
    orgs.save_connection(
        store, vault, "acme", org_config(), org, private_key_pem=rsa_keys[0], auth_method="jwt"
    )
    fake.refresh_tokens.add("5Aep861-web-refresh")
    web = connect(OrgCredentials(LOGIN_URL, CLIENT_ID, refresh_token="5Aep861-web-refresh"))
    orgs.save_connection(
        store, vault, "acme", org_config(ca_bundle="/etc/ssl/acme-ca.pem"), web,
        refresh_token="5Aep861-web-refresh", auth_method="web",
    )  # fmt: skip
    with store.session() as session:
        conn = session.scalars(select(OrgConnection)).one()
        assert (conn.auth_method, conn.ca_bundle) == ("web", "/etc/ssl/acme-ca.pem")
        assert conn.private_key_enc is None  # the switched-away secret is not kept
        assert vault.decrypt(conn.refresh_token_enc) == "5Aep861-web-refresh"
        actions = session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
        assert actions == ["org.connect", "org.reconnect"]


def test_a_name_cannot_be_repointed_at_another_org(store: Store, vault, rsa_keys):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        FakeSalesforce(rsps, rsa_keys[1]).install()
        first = jwt_org(rsa_keys)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        FakeSalesforce(rsps, rsa_keys[1], org_id=OTHER_ORG_ID).install()
        second = jwt_org(rsa_keys)
    orgs.save_connection(
        store, vault, "acme", org_config(), first, private_key_pem=rsa_keys[0], auth_method="jwt"
    )
    with pytest.raises(UsageError) as raised:
        orgs.save_connection(
            store, vault, "acme", org_config(), second, private_key_pem=rsa_keys[0],
            auth_method="jwt",
        )  # fmt: skip
    assert raised.value.code == "org_mismatch"
    assert OTHER_ORG_ID in raised.value.message and ORG_ID in raised.value.message


def test_open_org_uses_the_stored_secret(sqlite_store: Store, vault, fake, rsa_keys):
    orgs.save_connection(
        sqlite_store, vault, "acme", org_config(), jwt_org(rsa_keys),
        private_key_pem=rsa_keys[0], auth_method="jwt",
    )  # fmt: skip
    # No key file in the config: the stored, encrypted key is what authenticates.
    org = orgs.open_org(sqlite_store, vault, "acme", org_config(private_key_file=None))
    assert (org.org_id, org.user_id) == (ORG_ID, USER_ID)
    assert len(fake.assertions) == 2


def test_open_org_refuses_when_credentials_now_reach_another_org(
    sqlite_store: Store, vault, rsa_keys
):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        FakeSalesforce(rsps, rsa_keys[1]).install()
        orgs.save_connection(
            sqlite_store, vault, "acme", org_config(), jwt_org(rsa_keys),
            private_key_pem=rsa_keys[0], auth_method="jwt",
        )  # fmt: skip
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        FakeSalesforce(rsps, rsa_keys[1], org_id=OTHER_ORG_ID).install()
        with pytest.raises(UsageError, match="run `sfbridge org connect acme` again"):
            orgs.open_org(sqlite_store, vault, "acme", org_config())


def test_open_org_of_an_unknown_name_says_how_to_connect(sqlite_store: Store, vault):
    with pytest.raises(UsageError, match="run `sfbridge org connect acme`"):
        orgs.open_org(sqlite_store, vault, "acme", org_config())


def test_a_rotated_refresh_token_is_stored_before_the_old_one_dies(
    sqlite_store: Store, vault, fake, monkeypatch
):
    monkeypatch.setenv("ACME_CLIENT_SECRET", "s3cr3t-consumer")
    fake.client_secret = "s3cr3t-consumer"
    fake.refresh_tokens.add("5Aep861-first")
    fake.rotate_refresh_tokens = True
    config = org_config(client_secret_env="ACME_CLIENT_SECRET")
    first = connect(
        OrgCredentials(
            LOGIN_URL, CLIENT_ID, refresh_token="5Aep861-first", client_secret="s3cr3t-consumer"
        )
    )
    orgs.save_connection(
        sqlite_store, vault, "acme", config, first, refresh_token=first.refresh_token,
        auth_method="web",
    )  # fmt: skip
    org = orgs.open_org(sqlite_store, vault, "acme", config)  # rotates again
    with sqlite_store.session() as session:
        stored = session.scalars(select(OrgConnection)).one().refresh_token_enc
    assert vault.decrypt(stored) == org.refresh_token
    assert org.refresh_token in fake.refresh_tokens


def test_a_missing_client_secret_variable_is_a_config_error(sqlite_store: Store, vault, fake):
    config = org_config(client_secret_env="ACME_CLIENT_SECRET_UNSET")
    with pytest.raises(UsageError, match="ACME_CLIENT_SECRET_UNSET, which is not set"):
        orgs.client_secret(config)


# ---- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, sqlite_store: Store, rsa_keys, monkeypatch) -> dict[str, str]:
    key_file = tmp_path / "integration.key"
    key_file.write_text(rsa_keys[0])
    config = tmp_path / "sfbridge.yaml"
    config.write_text(
        f"""orgs:
  acme:
    login_url: {LOGIN_URL}
    client_id: {CLIENT_ID}
    username: {USERNAME}
    private_key_file: {key_file}
    programs: [{{key: main, name: Main}}]
    receiver: {{program: main}}
"""
    )
    return {
        "SFBRIDGE_DATABASE_URL": sqlite_store.url,
        "SFBRIDGE_CONFIG": str(config),
        "SFBRIDGE_ENCRYPTION_KEYS": generate_key(),
        "SFBRIDGE_INSTANCE_DIR": str(tmp_path / "instance"),
    }


def test_cli_org_connect_with_jwt(runner, cli_env, fake, sqlite_store):
    result = runner.invoke(main, ["org", "connect", "acme"], env=cli_env)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        f"connected 'acme': org {ORG_ID}, user {USERNAME} ({USER_ID}), instance {INSTANCE_URL}"
    )
    with sqlite_store.session() as session:
        assert session.scalars(select(OrgConnection.org_id)).all() == [ORG_ID]


def test_cli_org_connect_web_with_a_pasted_redirect(
    runner, cli_env, fake, sqlite_store, monkeypatch
):
    started: list[orgs.WebConnect] = []
    real_start = orgs.WebConnect.start.__func__  # type: ignore[attr-defined]

    def start(cls, *args, **kwargs):  # type: ignore[no-untyped-def]
        attempt = real_start(cls, *args, **kwargs)
        started.append(attempt)
        return attempt

    monkeypatch.setattr(orgs.WebConnect, "start", classmethod(start))
    # The person opens the printed URL, logs in, and pastes where the browser landed.
    monkeypatch.setattr(
        "click.prompt", lambda *a, **k: fake.authorize(started[0].flow.authorize_url)
    )
    fake.username = "admin@acme.example"  # a person logs in, not the integration user
    result = runner.invoke(main, ["org", "connect", "acme", "--web", "--paste"], env=cli_env)
    assert result.exit_code == 0, result.output
    assert started[0].flow.authorize_url in result.output
    assert f"connected 'acme': org {ORG_ID}, user admin@acme.example ({USER_ID})" in result.output
    with sqlite_store.session() as session:
        conn = session.scalars(select(OrgConnection)).one()
    assert conn.auth_method == "web"
    assert conn.username == "admin@acme.example"


def test_cli_org_connect_refuses_a_second_name_for_the_same_org(runner, cli_env, fake, tmp_path):
    config = Path(cli_env["SFBRIDGE_CONFIG"])
    acme = config.read_text().split("\n", 1)[1]
    config.write_text("orgs:\n" + acme + acme.replace("  acme:", "  acme-eu:", 1))
    assert runner.invoke(main, ["org", "connect", "acme"], env=cli_env).exit_code == 0
    result = runner.invoke(main, ["org", "connect", "acme-eu"], env=cli_env)
    assert result.exit_code == 1
    assert f"error: org {ORG_ID} is already connected as 'acme'" in result.output
    assert "Traceback" not in result.output


def test_cli_org_connect_of_an_unknown_org_lists_the_known_ones(runner, cli_env):
    result = runner.invoke(main, ["org", "connect", "globex"], env=cli_env)
    assert result.exit_code == 1
    assert "org 'globex' is not in the config file" in result.output
    assert "(orgs defined: acme)" in result.output


def test_cli_org_connect_reports_a_refused_login_without_traceback(runner, cli_env, fake):
    fake.username = "someone.else@acme.example"
    result = runner.invoke(main, ["org", "connect", "acme"], env=cli_env)
    assert result.exit_code == 1
    assert "error: user hasn't approved this consumer" in result.output
    assert "Traceback" not in result.output


def test_secrets_rotate_reencrypts_with_the_newest_key(runner, cli_env, sqlite_store, fake):
    old_key = cli_env["SFBRIDGE_ENCRYPTION_KEYS"]
    assert runner.invoke(main, ["org", "connect", "acme"], env=cli_env).exit_code == 0
    with sqlite_store.session() as session:
        before = session.scalars(select(OrgConnection)).one().private_key_enc

    new_key = generate_key()
    both = {**cli_env, "SFBRIDGE_ENCRYPTION_KEYS": f"{new_key},{old_key}"}
    # Before rotating, the old key still decrypts (listed second) and the new one alone cannot.
    assert Vault([new_key, old_key]).decrypt(before).startswith("-----BEGIN PRIVATE KEY-----")
    with pytest.raises(PermanentError):
        Vault([new_key]).decrypt(before)

    result = runner.invoke(main, ["secrets", "rotate"], env=both)
    assert result.exit_code == 0, result.output
    assert "re-encrypted 1 secret(s)" in result.output

    with sqlite_store.session() as session:
        after = session.scalars(select(OrgConnection)).one().private_key_enc
    assert after != before
    # The old key can now be removed: the newest alone decrypts, and the org still opens.
    only_new = Vault([new_key])
    assert only_new.decrypt(after) == Vault([old_key]).decrypt(before)
    org = orgs.open_org(sqlite_store, only_new, "acme", org_config())
    assert org.org_id == ORG_ID


def test_read_private_key_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.key"
    with pytest.raises(UsageError, match=f"{missing}: cannot read the private key"):
        orgs.read_private_key(missing)
    wrong = tmp_path / "cert.pem"
    wrong.write_text("hello")
    with pytest.raises(UsageError, match=f"{wrong}: the private key is not a PEM private key"):
        orgs.read_private_key(wrong)


def test_token_url_is_under_the_login_url():
    assert oauth.token_url("https://acme.my.salesforce.com/") == (
        "https://acme.my.salesforce.com/services/oauth2/token"
    )


def test_cli_org_connect_on_an_unmigrated_database_says_to_upgrade(runner, cli_env, tmp_path):
    env = {**cli_env, "SFBRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    result = runner.invoke(main, ["org", "connect", "acme"], env=env)
    assert result.exit_code == 1
    assert "has no sfbridge tables yet: run `sfbridge db upgrade`" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["org", "check", "acme"],
        ["org", "topics", "acme"],
        ["secrets", "rotate"],
        ["tokens", "list"],
        ["tokens", "revoke", "1"],
        ["tokens", "create", "--user", "a@example.com", "--name", "ci", "--scope", "entries:read"],
        ["users", "add", "a@example.com", "--role", "admin", "--password-stdin"],
        ["config", "check", "--connected"],
        ["poll", "--org", "acme"],
    ],
)
def test_cli_commands_on_an_unmigrated_database_say_to_upgrade(runner, cli_env, tmp_path, args):
    env = {**cli_env, "SFBRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    result = runner.invoke(main, args, env=env, input="correct horse battery\n")
    assert result.exit_code == 1, result.output
    assert "has no sfbridge tables yet: run `sfbridge db upgrade`" in result.output


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "error: SFBRIDGE_DATABASE_URL: Could not parse"),
        ("postgresql://u:pw-hidden@127.0.0.1:1/x", "error: the database (SFBRIDGE_DATABASE_URL)"),
    ],
)
def test_cli_with_a_bad_or_unreachable_database_says_so(runner, cli_env, url, message):
    result = runner.invoke(main, ["tokens", "list"], env={**cli_env, "SFBRIDGE_DATABASE_URL": url})
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output and "pw-hidden" not in result.output


def test_cli_with_redis_unreachable_says_so(runner):
    import redis

    from bridge.cli import _Group

    group = _Group("sfbridge")

    @group.command()
    def work() -> None:
        redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=2).ping()

    result = runner.invoke(group, ["work"])
    assert result.exit_code == 1, result.output
    assert "error: Redis (SFBRIDGE_REDIS_URL) cannot be reached: " in result.output
    assert "Traceback" not in result.output


def test_cli_users_add_checks_the_database_before_asking_for_the_password(
    runner, cli_env, tmp_path
):
    env = {**cli_env, "SFBRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    result = runner.invoke(main, ["users", "add", "a@example.com", "--role", "admin"], env=env)
    assert result.exit_code == 1, result.output
    assert "Password" not in result.output
    assert "run `sfbridge db upgrade`" in result.output


def test_secrets_rotate_keeps_a_refresh_token_rotated_meanwhile(
    postgres_store: Store, vault: Vault
):
    """A worker stores Salesforce's new refresh token while `secrets rotate` runs: the new
    token must survive (the old one no longer works), not be overwritten by the old one.
    PostgreSQL only: SQLite has no row locks (and one writer at a time)."""
    import threading

    store = postgres_store
    with store.session() as session:
        session.add(
            OrgConnection(
                name="acme",
                login_url=LOGIN_URL,
                auth_method="web",
                refresh_token_enc=vault.encrypt("old-refresh-token"),
            )
        )
    save = orgs._refresh_token_saver(store, vault, "acme")
    worker = threading.Thread(target=save, args=("new-refresh-token",))
    real_rotate = vault.rotate

    def rotate_while_a_worker_saves(token: bytes) -> bytes:
        worker.start()
        worker.join(timeout=1)  # on PostgreSQL it waits for the rotation's row lock
        return real_rotate(token)

    vault.rotate = rotate_while_a_worker_saves  # type: ignore[method-assign]
    orgs.rotate_secrets(store, vault)
    worker.join(timeout=10)
    with store.session() as session:
        stored = session.scalars(select(OrgConnection)).one().refresh_token_enc
    assert vault.decrypt(stored) == "new-refresh-token"
