"""Org connections in the store: secrets kept encrypted, one connection per Salesforce org.

A connection is made once (`sfbridge org connect`: `connect_jwt` or `connect_web`) and opened
by every process afterwards (`open_org`). The private key (JWT bearer flow) or refresh token
(web-server flow) is stored only encrypted with the vault's newest key; the rest of the row is
what was verified when connecting: login URL, client id, username, org id and user id."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import inspect, select, update
from sqlalchemy.exc import IntegrityError

from bridge import audit
from bridge.config import OrgConfig
from bridge.errors import ConfigError, UsageError
from bridge.metrics import mount_call_counter
from bridge.salesforce import oauth
from bridge.salesforce.connection import (
    OrgCredentials,
    SalesforceOrg,
    build_session,
    connect,
    connect_with_token,
)
from bridge.store import Store
from bridge.store.models import OrgConnection
from bridge.vault import Vault
from bridge.vocabulary import AUTH_METHODS

log = logging.getLogger(__name__)


# ---- credentials from the config file --------------------------------------------------------


def client_secret(org_config: OrgConfig) -> str | None:
    """The connected app's consumer secret from the environment variable the config names."""
    if not org_config.client_secret_env:
        return None
    value = os.environ.get(org_config.client_secret_env, "")
    if not value:
        raise ConfigError(
            f"client_secret_env names {org_config.client_secret_env}, which is not set: "
            "export the connected app's consumer secret in it"
        )
    return value


def read_private_key(path: str | os.PathLike[str]) -> str:
    try:
        pem = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the private key: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a PEM file (binary content)") from None
    try:
        oauth.load_private_key(pem)  # a clear error now rather than a refused login later
    except UsageError as exc:
        raise UsageError(f"{path}: {exc.message}", code=exc.code) from None
    return pem


def _require(org_config: OrgConfig, name: str, key: str) -> str:
    value = getattr(org_config, key)
    if not value:
        raise ConfigError(f"orgs.{name}.{key} is required to connect this org")
    return str(value)


def jwt_credentials(name: str, org_config: OrgConfig, private_key_pem: str) -> OrgCredentials:
    return OrgCredentials(
        login_url=org_config.login_url,
        client_id=_require(org_config, name, "client_id"),
        username=_require(org_config, name, "username"),
        private_key_pem=private_key_pem,
        ca_bundle=org_config.ca_bundle,
        api_version=org_config.api_version,
    )


# ---- the web-server flow ---------------------------------------------------------------------


@dataclass(frozen=True)
class WebConnect:
    """A started web-server login: show `flow.authorize_url`, then `finish` with the redirect."""

    name: str
    org_config: OrgConfig
    flow: oauth.WebFlow

    @classmethod
    def start(
        cls, name: str, org_config: OrgConfig, redirect_uri: str = oauth.DEFAULT_REDIRECT_URI
    ) -> WebConnect:
        flow = oauth.WebFlow.start(
            login_url=org_config.login_url,
            client_id=_require(org_config, name, "client_id"),
            redirect_uri=redirect_uri,
        )
        return cls(name, org_config, flow)

    def finish(self, callback: str | Mapping[str, str]) -> SalesforceOrg:
        """Check the redirect, exchange the code (with the PKCE verifier) and open the org."""
        code = self.flow.code_from_callback(callback)
        secret = client_secret(self.org_config)
        http = build_session(self.org_config.login_url, self.org_config.ca_bundle)
        token = self.flow.exchange(http, code, client_secret=secret)
        if not token.refresh_token:
            raise UsageError(
                "Salesforce issued no refresh token: add the 'refresh_token, offline_access' "
                "scope to the connected app and set its refresh token policy to 'valid until "
                "revoked', then connect again",
                code="refresh_token_missing",
            )
        creds = OrgCredentials(
            login_url=self.org_config.login_url,
            client_id=self.flow.client_id,
            username=None,  # whoever logged in, not necessarily the configured user: ask the org
            refresh_token=token.refresh_token,
            client_secret=secret,
            ca_bundle=self.org_config.ca_bundle,
            api_version=self.org_config.api_version,
        )
        return connect_with_token(creds, token, http)


# ---- connecting (`sfbridge org connect`) -----------------------------------------------------


def connect_jwt(
    store: Store,
    vault: Vault,
    name: str,
    org_config: OrgConfig,
    private_key_path: str | os.PathLike[str] | None = None,
) -> SalesforceOrg:
    """Log in with the JWT bearer flow (the integration user's private key, from
    `private_key_path` or ``orgs.NAME.private_key_file``) and store the connection."""
    check_store(store)  # before anyone logs in
    key_path = private_key_path or org_config.private_key_file
    if not key_path:
        raise ConfigError(
            f"no private key: pass --private-key FILE or set orgs.{name}.private_key_file "
            "(or connect with --web)"
        )
    pem = read_private_key(key_path)
    sf_org = connect(jwt_credentials(name, org_config, pem))
    save_connection(store, vault, name, org_config, sf_org, private_key_pem=pem, auth_method="jwt")
    return sf_org


def connect_web(
    store: Store,
    vault: Vault,
    name: str,
    org_config: OrgConfig,
    redirect: Callable[[WebConnect], str | Mapping[str, str]],
    redirect_uri: str = oauth.DEFAULT_REDIRECT_URI,
) -> SalesforceOrg:
    """Log in as a person with the web-server flow and store the connection's refresh token.

    `redirect(attempt)` shows ``attempt.flow.authorize_url`` to the person and returns where
    their browser was sent back to (the callback URL, or its query parameters).
    """
    check_store(store)  # before anyone logs in
    attempt = WebConnect.start(name, org_config, redirect_uri)
    sf_org = attempt.finish(redirect(attempt))
    save_connection(
        store,
        vault,
        name,
        org_config,
        sf_org,
        refresh_token=sf_org.refresh_token,
        auth_method="web",
    )
    return sf_org


# ---- storing and opening connections ---------------------------------------------------------


def save_connection(
    store: Store,
    vault: Vault,
    name: str,
    org_config: OrgConfig,
    salesforce_org: SalesforceOrg,
    private_key_pem: str | None = None,
    refresh_token: str | None = None,
    *,
    auth_method: str,
    actor: str = "cli",
) -> OrgConnection:
    """Store (or update) the connection `name` for the org just connected.

    One Salesforce org belongs to one connection: an org id already stored under another name
    is refused, and so is re-pointing an existing name at a different org (its referrals,
    cursors and entries belong to the first one). Re-connecting the same name to the same org
    updates it (new key or token, new user).
    """
    if auth_method not in AUTH_METHODS:
        raise ValueError(f"auth_method must be one of {AUTH_METHODS}")
    if auth_method == "jwt" and not private_key_pem:
        raise UsageError("a JWT connection needs its private key")
    if auth_method == "web" and not refresh_token:
        raise UsageError("a web-server connection needs its refresh token")
    # Keep only the secret of the method in use: a switched-away secret is dead weight.
    if auth_method == "jwt":
        refresh_token = None
    else:
        private_key_pem = None
    org_id = salesforce_org.org_id
    username = salesforce_org.username  # may ask the org: do it before holding a transaction
    try:
        with store.session() as session:
            other = session.scalar(
                select(OrgConnection).where(
                    OrgConnection.org_id == org_id, OrgConnection.name != name
                )
            )
            if other is not None:
                raise _already_connected(org_id, other.name, name)
            conn = session.scalar(select(OrgConnection).where(OrgConnection.name == name))
            if conn is not None and conn.org_id and conn.org_id != org_id:
                raise UsageError(
                    f"connection '{name}' is org {conn.org_id}, but this login reached org "
                    f"{org_id}; log in to org {conn.org_id}, or use a new name for the other "
                    "org",
                    code="org_mismatch",
                )
            created = conn is None
            if conn is None:
                conn = OrgConnection(name=name)
                session.add(conn)
            creds = salesforce_org.credentials
            conn.org_id = org_id
            conn.instance_url = salesforce_org.instance_url
            conn.login_url = creds.login_url
            conn.auth_method = auth_method
            conn.client_id = creds.client_id
            conn.username = username
            conn.integration_user_id = salesforce_org.user_id
            conn.ca_bundle = org_config.ca_bundle
            conn.api_version = salesforce_org.api_version
            conn.private_key_enc = vault.encrypt(private_key_pem) if private_key_pem else None
            conn.refresh_token_enc = vault.encrypt(refresh_token) if refresh_token else None
            session.flush()
            audit.record(
                session,
                actor,
                "org.connect" if created else "org.reconnect",
                "org_connection",
                conn.id,
                name=name,
                org_id=org_id,
                user_id=salesforce_org.user_id,
                auth_method=auth_method,
            )
    except IntegrityError:
        # Another process stored the same org under another name between our check and commit.
        with store.session() as session:
            other = session.scalar(select(OrgConnection).where(OrgConnection.org_id == org_id))
        if other is not None and other.name != name:
            raise _already_connected(org_id, other.name, name) from None
        raise
    log.info("stored connection %s for org %s (%s)", name, org_id, auth_method)
    return conn


def _already_connected(org_id: str, existing: str, wanted: str) -> UsageError:
    return UsageError(
        f"org {org_id} is already connected as '{existing}'; one Salesforce org can be "
        f"connected to one account only. Reconnect it with `sfbridge org connect {existing}` "
        f"instead of '{wanted}'",
        code="org_already_connected",
    )


def check_store(store: Store) -> None:
    """Refuse early (before anyone logs in) when the database has not been migrated."""
    if not inspect(store.engine).has_table(OrgConnection.__tablename__):
        where = store.engine.url.render_as_string(hide_password=True)
        raise ConfigError(
            f"the database at {where} has no sfbridge tables yet: run `sfbridge db upgrade`"
        )


def load_connection(store: Store, name: str) -> OrgConnection:
    with store.session() as session:
        conn = session.scalar(select(OrgConnection).where(OrgConnection.name == name))
    if conn is None:
        raise UsageError(
            f"org '{name}' is not connected yet: run `sfbridge org connect {name}`",
            code="org_not_connected",
        )
    return conn


def stored_credentials(conn: OrgConnection, vault: Vault, org_config: OrgConfig) -> OrgCredentials:
    """Credentials for a stored connection.

    Identity (login URL, client id, username, secret) comes from the row, as verified when
    connecting; transport settings (CA bundle, API version) from the current config.
    """
    private_key = vault.decrypt(conn.private_key_enc) if conn.private_key_enc else None
    refresh = vault.decrypt(conn.refresh_token_enc) if conn.refresh_token_enc else None
    return OrgCredentials(
        login_url=conn.login_url,
        client_id=conn.client_id or org_config.client_id or "",
        username=conn.username,
        private_key_pem=private_key if conn.auth_method == "jwt" else None,
        refresh_token=refresh if conn.auth_method == "web" else None,
        client_secret=client_secret(org_config) if conn.auth_method == "web" else None,
        ca_bundle=org_config.ca_bundle or conn.ca_bundle,
        api_version=org_config.api_version,
    )


def open_org(store: Store, vault: Vault, name: str, org_config: OrgConfig) -> SalesforceOrg:
    """Open the stored connection `name`: authenticate and check it is still the same org."""
    conn = load_connection(store, name)
    creds = stored_credentials(conn, vault, org_config)
    org = connect(creds, on_refresh_token=_refresh_token_saver(store, vault, name))
    mount_call_counter(org.http, name)
    if conn.org_id and org.org_id != conn.org_id:
        raise UsageError(
            f"connection '{name}' is org {conn.org_id}, but its credentials now reach org "
            f"{org.org_id}; run `sfbridge org connect {name}` again",
            code="org_mismatch",
        )
    return org


def _refresh_token_saver(store: Store, vault: Vault, name: str) -> Callable[[str], None]:
    def save(new_token: str) -> None:
        with store.session() as session:
            # updated_at stays: it is the connection's version, and the worker logs in again
            # when it changes; a token Salesforce rotated is not a new connection.
            session.execute(
                update(OrgConnection)
                .where(OrgConnection.name == name)
                .values(
                    refresh_token_enc=vault.encrypt(new_token),
                    updated_at=OrgConnection.updated_at,
                )
            )
        log.info("stored the rotated refresh token of connection %s", name)

    return save


def rotate_secrets(store: Store, vault: Vault) -> int:
    """Re-encrypt every stored secret with the newest key; returns how many were rewritten."""
    count = 0
    with store.session() as session:
        # Locked: a worker storing a refresh token Salesforce just rotated waits for this
        # commit instead of having its new token overwritten by the old one re-encrypted.
        for org in session.scalars(select(OrgConnection).with_for_update()):
            if org.private_key_enc:
                org.private_key_enc = vault.rotate(org.private_key_enc)
                count += 1
            if org.refresh_token_enc:
                org.refresh_token_enc = vault.rotate(org.refresh_token_enc)
                count += 1
    return count
