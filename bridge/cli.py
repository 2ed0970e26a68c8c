"""`sfbridge`: thin commands over the bridge's modules."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bridge.config import Settings, check_config_text
from bridge.errors import BridgeError, ConfigError

if TYPE_CHECKING:
    from bridge.config import OrgConfig
    from bridge.runtime import Runtime


class _Group(click.Group):
    """Turns BridgeErrors into a clear message and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"error: {exc.message}", err=True)
            for problem in exc.problems:
                click.echo(f"  {problem}", err=True)
            sys.exit(1)
        except BridgeError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.version_option(package_name="sfbridge")
def main() -> None:
    """sfbridge: Salesforce referral and sales-engagement bridge."""
    from bridge import logsafe

    logsafe.install()  # no token, key or password in any log line of any command


def _runtime() -> Runtime:
    from bridge.runtime import Runtime

    return Runtime.from_env()


# ---- config ---------------------------------------------------------------------------------


@main.group(cls=_Group)
def config() -> None:
    """Validate the YAML config."""


@config.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
def config_check(file: str | None) -> None:
    """Print every problem in FILE (default $SFBRIDGE_CONFIG) with file, line and key."""
    path = file or Settings.from_env().config_path
    if not path:
        raise ConfigError("no config file: pass FILE or set SFBRIDGE_CONFIG")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    cfg, problems = check_config_text(text, path)
    if problems:
        for p in problems:
            click.echo(str(p), err=True)
        click.echo(f"{len(problems)} problem(s) found in {path}", err=True)
        sys.exit(1)
    assert cfg is not None
    orgs = ", ".join(cfg.orgs)
    click.echo(f"{path}: OK ({len(cfg.orgs)} org(s): {orgs})")


# ---- db, users, secrets ---------------------------------------------------------------------


@main.group(cls=_Group)
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations (SFBRIDGE_DATABASE_URL; default SQLite under instance/)."""
    rt = _runtime()
    rt.store.upgrade(revision)
    click.echo(
        f"database at {rt.store.engine.url.render_as_string(hide_password=True)} is up to date"
    )


@main.group(cls=_Group)
def secrets() -> None:
    """Encryption keys for secrets at rest."""


@secrets.command("new-key")
def secrets_new_key() -> None:
    """Print a new key to put first in SFBRIDGE_ENCRYPTION_KEYS."""
    from bridge.vault import generate_key

    click.echo(generate_key())


@secrets.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored secret with the newest key."""
    from bridge.orgs import rotate_secrets

    rt = _runtime()
    count = rotate_secrets(rt.store, rt.vault)
    click.echo(f"re-encrypted {count} secret(s) with the newest key")


# ---- org connect ----------------------------------------------------------------------------
# `org` is the group for every org command (connect here; check and topics attach to it).


@main.group(cls=_Group)
def org() -> None:
    """Salesforce org connections."""


def _org_config(rt: Runtime, name: str) -> OrgConfig:
    orgs = rt.config.orgs
    if name not in orgs:
        known = ", ".join(orgs) or "none"
        raise ConfigError(
            f"org '{name}' is not in the config file {rt.settings.config_path} "
            f"(orgs defined: {known})"
        )
    return orgs[name]


@org.command("connect")
@click.argument("name")
@click.option(
    "--web",
    is_flag=True,
    help="Log in as a person (OAuth web-server flow with PKCE); stores a refresh token.",
)
@click.option(
    "--private-key",
    type=click.Path(dir_okay=False),
    help="PEM private key for the JWT bearer flow [default: orgs.NAME.private_key_file].",
)
@click.option(
    "--redirect-uri",
    default=None,
    help="Callback URL registered on the connected app [default: "
    "http://localhost:1717/OauthRedirect].",
)
@click.option(
    "--paste",
    is_flag=True,
    help="With --web: do not listen for the redirect; paste the URL the browser ends on.",
)
@click.option(
    "--timeout", default=300, show_default=True, help="With --web: seconds to wait for login."
)
def org_connect(
    name: str,
    web: bool,
    private_key: str | None,
    redirect_uri: str | None,
    paste: bool,
    timeout: int,
) -> None:
    """Connect org NAME (from SFBRIDGE_CONFIG `orgs.NAME`) and store its credentials encrypted.

    Default: the JWT bearer flow with the integration user's private key. With --web: open
    the printed URL, log in and allow access; the bridge keeps the refresh token.
    """
    from bridge import orgs
    from bridge.salesforce import oauth
    from bridge.salesforce.connection import connect

    rt = _runtime()
    org_config = _org_config(rt, name)
    # Fail on missing encryption keys or an unmigrated database before anyone logs in.
    rt.vault  # noqa: B018
    orgs.check_store(rt.store)
    if web:
        attempt = orgs.WebConnect.start(
            name, org_config, redirect_uri or oauth.DEFAULT_REDIRECT_URI
        )
        callback: str | dict[str, str]
        if paste:
            click.echo("Open this URL in a browser, log in and allow access:")
            click.echo(attempt.flow.authorize_url)
            callback = click.prompt("Paste the URL the browser was redirected to")
        else:
            with oauth.CallbackListener(attempt.flow.redirect_uri) as listener:
                click.echo("Open this URL in a browser, log in and allow access:")
                click.echo(attempt.flow.authorize_url)
                click.echo(f"Waiting for the redirect to {attempt.flow.redirect_uri} ...")
                callback = listener.wait(timeout)
        sf_org = attempt.finish(callback)
        orgs.save_connection(
            rt.store,
            rt.vault,
            name,
            org_config,
            sf_org,
            refresh_token=sf_org.refresh_token,
            auth_method="web",
        )
    else:
        key_path = private_key or org_config.private_key_file
        if not key_path:
            raise ConfigError(
                f"no private key: pass --private-key FILE or set orgs.{name}.private_key_file "
                "(or connect with --web)"
            )
        pem = orgs.read_private_key(key_path)
        sf_org = connect(orgs.jwt_credentials(name, org_config, pem))
        orgs.save_connection(
            rt.store, rt.vault, name, org_config, sf_org, private_key_pem=pem, auth_method="jwt"
        )
    click.echo(
        f"connected '{name}': org {sf_org.org_id}, user {sf_org.username} ({sf_org.user_id}), "
        f"instance {sf_org.instance_url}"
    )


# ---- local org (devorg) ---------------------------------------------------------------------


@main.command("devorg")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8410, show_default=True, type=int)
@click.option(
    "--data-dir",
    default=".devorg",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the org keeps its records, users, tokens and certificates.",
)
@click.option(
    "--package-dir",
    default="force-app",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="SFDX package dir whose custom fields the org describes (skipped if missing).",
)
def devorg(host: str, port: int, data_dir: Path, package_dir: Path) -> None:
    """Serve the local Salesforce org over HTTPS (OAuth, REST, streaming, control API)."""
    from bridge.devorg.server import run
    from bridge.errors import UsageError

    try:
        run(host, port, data_dir, package_dir=package_dir)
    except OSError as exc:  # port taken, data dir not writable, ...
        where = exc.filename or f"{host}:{port}"
        raise UsageError(f"devorg cannot start: {where}: {exc.strerror or exc}") from None
