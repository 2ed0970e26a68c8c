"""`sfbridge`: thin commands over the bridge's modules.

Each command imports what it runs inside its own body, so `sfbridge --help` and the quick
commands do not load the web app, the local org or the Salesforce client. Longer than most
modules because it is the CLI's table of contents: one short command per documented one."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import redis.exceptions
import sqlalchemy.exc

from bridge.config import (
    DATABASE_FILE,
    BridgeConfig,
    Settings,
    instance_candidates,
    read_config_text,
    validate_config_text,
)
from bridge.errors import BridgeError, ConfigError, UsageError
from bridge.vocabulary import ROLES, STREAMED_OBJECTS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from datetime import datetime

    from bridge.config import OrgConfig
    from bridge.imports.csvfile import Kind
    from bridge.runtime import Runtime
    from bridge.salesforce.connection import SalesforceOrg


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
        except sqlalchemy.exc.ArgumentError as exc:  # a malformed SFBRIDGE_DATABASE_URL
            click.echo(f"error: SFBRIDGE_DATABASE_URL: {exc}", err=True)
            sys.exit(1)
        except sqlalchemy.exc.OperationalError as exc:  # server down, wrong password, ...
            reason = " ".join(str(exc.orig).split()) if exc.orig else "unknown error"
            click.echo(f"error: the database (SFBRIDGE_DATABASE_URL) failed: {reason}", err=True)
            sys.exit(1)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            click.echo(f"error: Redis (SFBRIDGE_REDIS_URL) cannot be reached: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.version_option(package_name="sfbridge")
def main() -> None:
    """sfbridge: Salesforce referral and sales-engagement bridge."""
    from bridge import logsafe

    logsafe.install()  # no token, key or password in any log line of any command


def _runtime(*, db: bool = False) -> Runtime:
    """The process runtime; with `db`, refuse an unmigrated database with a clear message."""
    from bridge.runtime import Runtime

    rt = Runtime.from_env()
    if db:
        from bridge.orgs import check_store

        _refuse_a_new_database(rt.settings)
        check_store(rt.store)
        ctx = click.get_current_context(silent=True)
        if ctx is not None:  # close the database connections when the command ends
            ctx.call_on_close(rt.store.dispose)
    return rt


def _refuse_a_new_database(settings: Settings) -> None:
    """A command that works on an existing instance never creates an empty SQLite database
    somewhere else (e.g. when run outside the project folder): it says where it looked."""
    if os.environ.get("SFBRIDGE_DATABASE_URL"):
        return
    db_file = Path(settings.instance_dir) / DATABASE_FILE
    if db_file.is_file():
        return
    if os.environ.get("SFBRIDGE_INSTANCE_DIR"):
        looked = f"SFBRIDGE_INSTANCE_DIR ({settings.instance_dir}) has no {DATABASE_FILE}"
    else:
        places = instance_candidates(Path.cwd(), settings.config_path)
        looked = "no sfbridge database in " + ", ".join(str(p) for p in places[:4])
        looked += " or the folders above" if len(places) > 4 else ""
    raise ConfigError(
        f"{looked}. Run the command in the folder sfbridge was set up in (where `sfbridge "
        "demo` or `sfbridge db upgrade` ran), or set SFBRIDGE_INSTANCE_DIR or "
        "SFBRIDGE_DATABASE_URL; `sfbridge db upgrade` creates a new database."
    )


# ---- config ---------------------------------------------------------------------------------


@main.group(cls=_Group)
def config() -> None:
    """Validate the YAML config."""


@config.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--connected",
    is_flag=True,
    help="Also check fields and picklist values against each connected org's describe.",
)
def config_check(file: str | None, connected: bool) -> None:
    """Print every problem in FILE (default $SFBRIDGE_CONFIG) with file, line and key."""
    path = file or Settings.from_env().config_path
    if not path:
        raise ConfigError("no config file: pass FILE or set SFBRIDGE_CONFIG")
    text = read_config_text(path)
    result = validate_config_text(text, path)
    cfg, problems = result.config, list(result.problems)
    checkable = cfg or result.partial  # with schema problems: the parts that validated
    if checkable is not None:
        from bridge.receiver.configcheck import check_config_rules

        describes = _describe_connected_orgs(checkable) if connected and cfg else None
        reported = {p.key for p in problems}
        problems += [
            p for p in check_config_rules(checkable, text, path, describes) if p.key not in reported
        ]
        problems.sort(key=lambda p: (p.line or 0, p.key))
    if problems:
        for p in problems:
            click.echo(str(p), err=True)
        click.echo(f"{len(problems)} problem(s) found in {path}", err=True)
        sys.exit(1)
    assert cfg is not None
    orgs = ", ".join(cfg.orgs)
    click.echo(f"{path}: OK ({len(cfg.orgs)} org(s): {orgs})")


def _describe_connected_orgs(cfg: BridgeConfig) -> dict[str, dict[str, Any]]:
    """Org name -> {object: describe} for every org of `cfg` that has a stored connection."""
    from bridge.orgs import open_org

    rt = _runtime(db=True)
    out: dict[str, dict[str, Any]] = {}
    for name, org_config in cfg.orgs.items():
        try:
            sf_org = open_org(rt.store, rt.vault, name, org_config)
        except UsageError as exc:
            if exc.code != "org_not_connected":
                raise
            click.echo(f"org {name}: not connected; its fields were not checked", err=True)
            continue
        out[name] = {obj: sf_org.call(getattr(sf_org.sf, obj).describe) for obj in STREAMED_OBJECTS}
    return out


# ---- db, users, secrets ---------------------------------------------------------------------


@main.group(cls=_Group)
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations (SFBRIDGE_DATABASE_URL; default SQLite under instance/)."""
    rt = _runtime()
    url = rt.store.engine.url
    fresh = url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file()
    rt.store.upgrade(revision)
    where = url.render_as_string(hide_password=True)
    click.echo(
        f"created a new database at {where}" if fresh else f"database at {where} is up to date"
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

    rt = _runtime(db=True)
    count = rotate_secrets(rt.store, rt.vault)
    click.echo(f"re-encrypted {count} secret(s) with the newest key")


# ---- web, users, tokens (review helper) -----------------------------------------------------


@main.command("web")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
def web_command(host: str, port: int, workers: int) -> None:
    """Serve the reviewer UI, the JSON API and health/metrics under gunicorn."""
    from bridge.webserver import serve

    serve(host, port, workers)


@main.group(cls=_Group)
def users() -> None:
    """Reviewer and admin accounts."""


@users.command("add")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--name", default="")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_add(email: str, role: str, name: str, password_stdin: bool) -> None:
    """Add a user who signs in to the web UI with EMAIL."""
    from bridge.users import create_user

    rt = _runtime(db=True)  # before asking for the password, not after
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with rt.store.session() as s:
        user = create_user(s, email, password, role, name=name, actor="cli")
        click.echo(f"added {user.email} ({user.role})")


@users.command("list")
def users_list() -> None:
    """List accounts: email, role, active or deactivated, last sign-in."""
    from sqlalchemy import select

    from bridge.store.models import User

    rt = _runtime(db=True)
    with rt.store.session() as s:
        for u in s.scalars(select(User).order_by(User.email)):
            state = "active" if u.active else "deactivated"
            last = u.last_login_at.isoformat(timespec="seconds") if u.last_login_at else "never"
            click.echo(f"{u.id}\t{u.email}\t{u.role}\t{state}\t{last}")


def _change_user(email: str, change: Callable[[Any, Any], str]) -> None:
    """Run `change(session, user)` for the user with EMAIL and print what it says."""
    from bridge.users import find_user

    rt = _runtime(db=True)
    with rt.store.session() as s:
        click.echo(change(s, find_user(s, email)))


@users.command("deactivate")
@click.argument("email")
def users_deactivate(email: str) -> None:
    """Deactivate EMAIL: their sessions end and their API tokens stop working."""
    from bridge.users import set_active

    _change_user(email, lambda s, u: f"deactivated {set_active(s, u, False, actor='cli').email}")


@users.command("reactivate")
@click.argument("email")
def users_reactivate(email: str) -> None:
    """Let EMAIL sign in again."""
    from bridge.users import set_active

    _change_user(email, lambda s, u: f"reactivated {set_active(s, u, True, actor='cli').email}")


@users.command("role")
@click.argument("email")
@click.argument("role", type=click.Choice(ROLES))
def users_role(email: str, role: str) -> None:
    """Give EMAIL the role ROLE."""
    from bridge.users import set_role

    _change_user(email, lambda s, u: f"{set_role(s, u, role, actor='cli').email} is now {role}")


@users.command("password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
def users_password(email: str, password_stdin: bool) -> None:
    """Reset EMAIL's password; their sessions end and any sign-in delay is lifted."""
    from bridge.users import find_user, set_password

    rt = _runtime(db=True)
    with rt.store.session() as s:
        user = find_user(s, email)  # before asking for the password, not after
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    with rt.store.session() as s:
        user = find_user(s, email)
        ended = set_password(s, user, password, actor="cli")
        click.echo(f"set a new password for {user.email}; {ended} session(s) ended")


@users.command("end-sessions")
@click.argument("email")
def users_end_sessions(email: str) -> None:
    """Sign EMAIL out everywhere."""
    from bridge import audit
    from bridge.users import end_sessions

    def change(s: Any, user: Any) -> str:
        ended = end_sessions(s, user.id, "ended_by_admin")
        audit.record(s, "cli", "user.sessions_end", "user", user.id, sessions_ended=ended)
        return f"ended {ended} session(s) of {user.email}"

    _change_user(email, change)


@users.command("unlock")
@click.argument("email")
def users_unlock(email: str) -> None:
    """Clear the sign-in delay of account EMAIL."""
    from bridge import audit, throttle

    def change(s: Any, user: Any) -> str:
        throttle.clear(s, throttle.account_key(user.email))
        audit.record(s, "cli", "user.unlock", "user", user.id)
        return f"cleared the sign-in delay of {user.email}"

    _change_user(email, change)


@users.command("clear-address")
@click.argument("address")
def users_clear_address(address: str) -> None:
    """Clear the sign-in delay of client ADDRESS (e.g. an office's proxy)."""
    from bridge import audit, throttle

    address = throttle.normal_address(address)
    rt = _runtime(db=True)
    with rt.store.session() as s:
        cleared = throttle.clear(s, throttle.address_key(address))
        audit.record(s, "cli", "address.clear", "client_ip", address, cleared=cleared)
    click.echo(f"cleared {address}" if cleared else f"{address} had no failed sign-ins on record")


@users.command("delays")
def users_delays() -> None:
    """List the accounts (by hash) and addresses whose next sign-in attempt must wait."""
    from bridge import throttle
    from bridge.store.models import utcnow

    rt = _runtime(db=True)
    with rt.store.session() as s:
        for row in throttle.delayed(s, utcnow()):
            until = row.not_before.isoformat(timespec="seconds") if row.not_before else ""
            click.echo(f"{row.key}\t{row.attempts} attempts\tuntil {until}")


@main.group(cls=_Group)
def tokens() -> None:
    """API tokens for /api/v1 (the secret is shown once)."""


@tokens.command("create")
@click.option("--user", "email", required=True, help="The user the token acts as.")
@click.option("--name", required=True, help="What uses the token.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="Repeat for each scope, e.g. --scope entries:read --scope entries:write.",
)
@click.option(
    "--expires-in",
    "expires_days",
    type=click.IntRange(1, 3650),
    help="Days until the token stops working (default: until revoked).",
)
def tokens_create(email: str, name: str, scopes: tuple[str, ...], expires_days: int | None) -> None:
    """Create a token; prints the secret once (only its SHA-256 is stored)."""
    from datetime import timedelta

    from sqlalchemy import select

    from bridge.store.models import User, utcnow
    from bridge.users import create_token

    expires_at = utcnow() + timedelta(days=expires_days) if expires_days else None

    rt = _runtime(db=True)
    with rt.store.session() as s:
        user = s.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            raise UsageError(f"no user {email}: add one with `sfbridge users add`")
        new = create_token(
            s,
            user,
            name,
            [x for sc in scopes for x in sc.split()],
            actor="cli",
            expires_at=expires_at,
        )
        click.echo(
            f"token {new.token.id} ({' '.join(new.token.scopes)}), shown only now:", err=True
        )
        click.echo(new.secret)


@tokens.command("revoke")
@click.argument("token_id", type=int)
def tokens_revoke(token_id: int) -> None:
    """Revoke token TOKEN_ID: it stops working at once."""
    from bridge.users import revoke_token

    rt = _runtime(db=True)
    with rt.store.session() as s:
        token = revoke_token(s, token_id, actor="cli")
        click.echo(f"revoked token {token.id} ({token.name})")


@tokens.command("list")
def tokens_list() -> None:
    """List tokens (never their secrets)."""
    from sqlalchemy import select

    from bridge.store.models import ApiToken, utcnow

    rt = _runtime(db=True)
    with rt.store.session() as s:
        for t in s.scalars(select(ApiToken).order_by(ApiToken.id)):
            state = "revoked" if t.revoked_at else "active"
            if t.expires_at and not t.revoked_at:
                expired = t.expires_at <= utcnow()
                state = f"{'expired' if expired else 'expires'} {t.expires_at:%Y-%m-%d %H:%M}"
            click.echo(f"{t.id}\t{t.prefix}…\t{t.name}\t{' '.join(t.scopes)}\t{state}")


# ---- org connect ----------------------------------------------------------------------------
# `org` is the group for every org command (connect here; check and topics attach to it).


@main.group(cls=_Group)
def org() -> None:
    """Salesforce orgs: connect, preflight check, PushTopics."""


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

    def redirect(attempt: orgs.WebConnect) -> str | dict[str, str]:
        url = attempt.flow.authorize_url
        if paste:
            click.echo(f"Open this URL in a browser, log in and allow access:\n{url}")
            return str(click.prompt("Paste the URL the browser was redirected to"))
        # Listening before the URL is shown: a fast browser cannot come back to a closed port.
        with oauth.CallbackListener(attempt.flow.redirect_uri) as listener:
            click.echo(f"Open this URL in a browser, log in and allow access:\n{url}")
            click.echo(f"Waiting for the redirect to {attempt.flow.redirect_uri} ...")
            return listener.wait(timeout)

    rt = _runtime()
    org_config = _org_config(rt, name)
    # rt.vault first: missing encryption keys fail before anyone logs in.
    if web:
        uri = redirect_uri or oauth.DEFAULT_REDIRECT_URI
        sf_org = orgs.connect_web(rt.store, rt.vault, name, org_config, redirect, uri)
    else:
        sf_org = orgs.connect_jwt(rt.store, rt.vault, name, org_config, private_key)
    click.echo(
        f"connected '{name}': org {sf_org.org_id}, user {sf_org.username} ({sf_org.user_id}), "
        f"instance {sf_org.instance_url}"
    )


# ---- org check and topics -------------------------------------------------------------------


def _open_org(rt: Runtime, name: str, org_config: OrgConfig) -> SalesforceOrg:
    from bridge.orgs import check_store, open_org

    check_store(rt.store)
    return open_org(rt.store, rt.vault, name, org_config)


def _switch(name: str, outbound: bool, inbound: bool, paused: bool) -> None:
    from bridge import switches

    rt = _runtime(db=True)
    directions: list[switches.Direction] = []
    if outbound:
        directions.append("outbound")
    if inbound:
        directions.append("inbound")
    result = switches.set_paused(
        rt.store,
        rt.redis if rt.settings.redis_url else None,
        name,
        directions,
        paused,
        actor="cli",
    )
    click.echo(f"org {name}: outbound {result['outbound']}, inbound {result['inbound']}")


@org.command("pause")
@click.argument("name")
@click.option("--outbound", is_flag=True, help="Hold pushes as pending (not sent).")
@click.option("--inbound", is_flag=True, help="Store events without taking them in.")
def org_pause(name: str, outbound: bool, inbound: bool) -> None:
    """Turn org NAME's integration off (both directions unless one is named)."""
    _switch(name, outbound, inbound, True)


@org.command("resume")
@click.argument("name")
@click.option("--outbound", is_flag=True, help="Send the pushes held while paused.")
@click.option("--inbound", is_flag=True, help="Take in the events stored while paused.")
def org_resume(name: str, outbound: bool, inbound: bool) -> None:
    """Turn org NAME's integration back on; what waited is sent / taken in."""
    _switch(name, outbound, inbound, False)


@org.command("check")
@click.argument("name")
def org_check(name: str) -> None:
    """Preflight org NAME: objects, package fields, mapping status, picklist values, topics.

    Exits 1 when any check reports an Issue.
    """
    from bridge import orgs
    from bridge.salesforce import check, fieldcache
    from bridge.writeback import routecheck, users
    from bridge.writeback.client import OrgWriter

    rt = _runtime()
    org_config = _org_config(rt, name)
    sf_org = _open_org(rt, name, org_config)
    findings = check.run_check(
        sf_org,
        name,
        org_config,
        keep=lambda d: fieldcache.save_field_names(rt.settings.instance_dir, name, d),
    )
    routed, mapping = routecheck.check_routing(OrgWriter.for_org(sf_org), org_config)
    findings += routed
    if org_config.users:
        users.save(rt.store, orgs.load_connection(rt.store, name).id, mapping)
    fieldcache.save_check(rt.settings.instance_dir, name, check.as_rows(findings))
    click.echo(check.format_findings(findings))
    if check.has_issues(findings):
        sys.exit(1)


@org.command("topics")
@click.argument("name")
@click.option("--apply", "do_apply", is_flag=True, help="Create or update the topics.")
@click.option("--apex", is_flag=True, help="Print the same as anonymous Apex (no connection).")
def org_topics(name: str, do_apply: bool, apex: bool) -> None:
    """Plan the PushTopics of org NAME from the config; with --apply, make the org match."""
    from bridge.salesforce import topics

    rt = _runtime()
    org_config = _org_config(rt, name)
    desired = topics.desired_topics(org_config)  # checked before anything is sent
    if apex:
        click.echo(topics.apex_script(desired), nl=False)
        return
    sf_org = _open_org(rt, name, org_config)
    actions, applied = topics.sync_topics(sf_org, org_config, dry_run=not do_apply)
    click.echo(topics.format_plan(actions))
    pending = [a for a in actions if a.action != "unchanged"]
    if not pending:
        click.echo("\nall topics are up to date")
    elif do_apply:
        done = [f"{a.action}d {a.name}" for a in applied if a.action != "unchanged"]
        click.echo(f"\napplied: {', '.join(done)}")
    else:
        click.echo(f"\n{len(pending)} change(s) planned; run again with --apply to make them")


# ---- import ---------------------------------------------------------------------------------


@main.group("import", cls=_Group)
def import_group() -> None:
    """Connect records that are in Salesforce already to local ones, from a CSV file."""


def _import_options(fn: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(
        [
            click.argument("file", type=click.Path(path_type=Path)),
            click.option("--org", "org_name", help="Org name from the config (needed if several)."),
            click.option("--program", help="Program key [default: the receiver's program]."),
            click.option("--dry-run", is_flag=True, help="Look everything up; save nothing."),
            click.option(
                "--errors",
                "errors_file",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Where the failed and skipped rows go [default: FILE.errors.csv beside it].",
            ),
        ]
    ):
        fn = option(fn)
    return fn


@import_group.command("leads")
@_import_options
def import_leads(**options: Any) -> None:
    """Connect Leads and Contacts to local referrals (created when none matches).

    Columns (docs/import.md): sf_lead_id, sf_contact_id, referral_id, external_id,
    first_name, last_name, email, phone, company; each row needs an id or an email.
    """
    _import("leads", push=False, **options)


@import_group.command("sales")
@_import_options
@click.option("--push", is_flag=True, help="Send the recorded sales through the outbound engine.")
def import_sales(**options: Any) -> None:
    """Record sales on local referrals, connected to their Account, Contact and Opportunity.

    Required columns: sale_id, business_name, closed_at and one of referral_id, external_id,
    email (docs/import.md). Sales are not sent again unless --push.
    """
    _import("sales", **options)


def _import(
    kind: Kind,
    *,
    file: Path,
    org_name: str | None,
    program: str | None,
    dry_run: bool,
    errors_file: Path | None,
    push: bool,
) -> None:
    from bridge.imports import csvfile, run
    from bridge.processes import pick_org

    data = csvfile.read(file, kind)  # a bad file fails before any login
    rt = _runtime(db=True)
    name, org_config = pick_org(rt.config.orgs, org_name)
    sf_org = _open_org(rt, name, org_config)
    total = len(data.rows)
    with _progress(f"{file.name}", total) as step:
        summary = run.run_import(
            rt.store, sf_org, name, org_config, data,
            program_key=program, dry_run=dry_run, push=push, report=errors_file, progress=step,
        )  # fmt: skip
    for line in summary.lines(data.kind, dry_run):
        click.echo(line)
    if summary.push_ids and not dry_run:
        click.echo(_queue_pushes(rt, summary.push_ids))
    if summary.failed:
        sys.exit(1)


def _queue_pushes(rt: Runtime, push_ids: list[int]) -> str:
    from bridge.writeback.jobs import request_drain_for

    if not rt.settings.redis_url:
        return f"{len(push_ids)} sale push(es) saved as pending (no SFBRIDGE_REDIS_URL)"
    request_drain_for(rt.store, rt.redis, push_ids)
    return f"{len(push_ids)} sale push(es) queued for sending"


@contextlib.contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal; elsewhere a line at each tenth of the rows."""
    if sys.stderr.isatty():
        with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
            yield bar.update
        return
    done = [0]

    def step(n: int) -> None:
        before, done[0] = done[0], done[0] + n
        if total and (done[0] * 10 // total > before * 10 // total or done[0] == total):
            click.echo(f"{label}: {done[0]} of {total} rows ({done[0] * 100 // total}%)", err=True)

    yield step


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
@click.option(
    "--latency",
    type=click.Choice(["zero", "realistic"]),
    default="zero",
    show_default=True,
    help="How long the org takes to answer: zero, or delays like a real org's (docs/devorg.md).",
)
@click.option(
    "--orgs",
    default=1,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Serve this many separate orgs, on consecutive ports, data in DATA_DIR/org-<n>.",
)
@click.option(
    "--pubsub-port",
    type=int,
    default=None,
    help="Also serve the Pub/Sub API (gRPC over TLS) on this port.",
)
def devorg(
    host: str,
    port: int,
    data_dir: Path,
    package_dir: Path,
    latency: str,
    orgs: int,
    pubsub_port: int | None,
) -> None:
    """Serve the local Salesforce org over HTTPS (OAuth, REST, streaming, control API)."""
    from bridge.devorg.server import run

    try:
        run(
            host,
            port,
            data_dir,
            package_dir=package_dir,
            latency=latency,
            orgs=orgs,
            pubsub_port=pubsub_port,
        )
    except OSError as exc:  # port taken, data dir not writable, ...
        where = exc.filename or f"{host}:{port}"
        raise UsageError(f"devorg cannot start: {where}: {exc.strerror or exc}") from None


# ---- inbound: stream, poll, worker ----------------------------------------------------------


def _log_to_stderr() -> None:
    import logging

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@main.command("stream")
@click.option("--org", "org_name", help="Org name from the config (needed if several).")
def stream(org_name: str | None) -> None:
    """Subscribe to the orgs' topics and store every change (one active subscriber per org).

    Without --org: every org of the config this process can take the lease of, up to
    stream.capacity; other stream processes share the rest and take over the orgs of one that
    dies; new orgs in the config are picked up without a restart. With --org: that org only;
    a second instance waits and takes over when the first stops or dies. SIGTERM stops it
    after the current batch.
    """
    from bridge import processes

    rt = _runtime(db=True)
    _log_to_stderr()
    processes.run_stream(rt, org_name)


@main.command("poll")
@click.option("--org", "org_name", help="Org name from the config (needed if several).")
@click.option("--every", type=click.IntRange(min=1), help="Poll every N seconds until stopped.")
@click.option(
    "--since",
    help="Backfill every change since this ISO date-time (e.g. 2026-01-05T10:00:00Z), once.",
)
@click.option(
    "--object",
    "objects",
    multiple=True,
    type=click.Choice(STREAMED_OBJECTS),
    help="Only these objects (repeatable) [default: all four].",
)
@click.option(
    "--values",
    is_flag=True,
    help="Run the formula-field value check once now (value_check in the config), and exit.",
)
def poll(
    org_name: str | None,
    every: int | None,
    since: str | None,
    objects: tuple[str, ...],
    values: bool,
) -> None:
    """Poll changes by SystemModstamp (once, or --every N seconds); --since backfills a gap.
    With --every, mapped formula fields are also read every value_check.every seconds."""
    from bridge import processes

    _log_to_stderr()
    rt = _runtime(db=True)
    when = _parse_since(since) if since else None
    processes.run_poll(
        rt,
        org_name,
        every=every,
        since=when,
        objects=objects or None,
        echo=click.echo,
        values=values,
    )


def _parse_since(text: str) -> datetime:
    from bridge.streaming.events import MalformedEvent, parse_sf_datetime

    try:
        when = parse_sf_datetime(text)
    except MalformedEvent:
        when = None
    if when is None:
        raise UsageError(f"--since '{text}' is not an ISO date-time such as 2026-01-05T10:00:00Z")
    return when


@main.command("worker")
@click.option("--burst", is_flag=True, help="Process what is queued, then exit.")
@click.option(
    "--queue",
    "queues",
    multiple=True,
    help="Queues to work on (repeatable) [default: inbound, outbound].",
)
@click.option(
    "--fork",
    is_flag=True,
    help="Run each job in a forked work horse (rq Worker) instead of in the worker process.",
)
@click.option(
    "--outbound-process",
    is_flag=True,
    help="Run the outbound queue in a process of its own (started and stopped with this one),"
    " so a drain waiting for the org never holds up inbound jobs.",
)
@click.option("--parent", type=int, hidden=True, help="End when this process ends.")
def worker(
    burst: bool, queues: tuple[str, ...], fork: bool, outbound_process: bool, parent: int | None
) -> None:
    """Run rq workers for the inbound and outbound queues (with the inbound sweeper)."""
    from bridge import processes

    _log_to_stderr()
    rt = _runtime(db=True)
    processes.run_worker(rt, burst=burst, queues=queues or None, fork=fork, parent=parent,
                         outbound_process=outbound_process)  # fmt: skip


# ---- demo (review helper) -------------------------------------------------------------------


@main.group("demo", cls=_Group, invoke_without_command=True)
@click.option("--port", default=8000, show_default=True, help="Port of the web app.")
@click.option("--org-port", default=8410, show_default=True, help="Port of the local org.")
@click.option(
    "--no-changes", is_flag=True, help="Do not make the first changes in the org at start."
)
@click.pass_context
def demo(ctx: click.Context, port: int, org_port: int, no_changes: bool) -> None:
    """Run everything on embedded defaults: local org, web, worker and stream (Ctrl-C stops)."""
    if ctx.invoked_subcommand is not None:
        return
    from bridge.devorg.demo import Demo

    Demo(_instance_dir(), web_port=port, org_port=org_port, initial_changes=not no_changes).run()


def _instance_dir() -> Path:
    return Path(Settings.from_env().instance_dir).resolve()


@demo.command("changes")
def demo_changes() -> None:
    """Edit and create Leads in the demo's local org as the ordinary sales user."""
    from bridge.devorg.demo import make_changes

    click.echo(make_changes(_instance_dir() / "devorg"))


@demo.command("web", hidden=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
def demo_web(host: str, port: int, workers: int) -> None:
    """`sfbridge web` with the dashboard's "make changes" button (started by `sfbridge demo`)."""
    from bridge.devorg.demo import web_config
    from bridge.webserver import serve

    serve(host, port, workers, web_config(_instance_dir() / "devorg"))
