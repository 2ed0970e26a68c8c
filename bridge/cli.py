"""`sfbridge`: thin commands over the bridge's modules."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bridge.config import Settings, check_config_text
from bridge.errors import BridgeError, ConfigError

if TYPE_CHECKING:
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
