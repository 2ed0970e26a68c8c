"""`sfbridge demo`: the whole product on embedded defaults, for a first look.

Starts an embedded Redis, the local org (`sfbridge devorg`), then connects the bridge to it
(JWT), creates the PushTopics, seeds a program, members, referrals and two accounts, and runs
the web app (`sfbridge demo web`: the app with the demo's changes button), a worker and the
stream subscriber as child processes. Everything lives under the
instance dir (SQLite database, Redis data, the org's data in `devorg/`, logs in `logs/`), so a
second start resumes where the first stopped.

The demo config makes direct matches process on their own and sends fuzzy matches, denied
referrals that would qualify again, and people nobody referred to review. "Make changes in the
org as a sales user" (a dashboard button, or `sfbridge demo changes`) edits and creates Leads
as the org's ordinary sales user; their change events stream in and become entries.

Ctrl-C (or SIGTERM) stops every child process, waits for it, and stops Redis.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import requests
from simple_salesforce import format_soql
from sqlalchemy import func, select

from bridge.config import find_instance_dir
from bridge.devorg.testing import REPO_ROOT, DevOrg
from bridge.errors import UsageError
from bridge.ports import free_port
from bridge.receiver.service import new_public_id
from bridge.redis_embedded import EmbeddedRedis
from bridge.runtime import Runtime
from bridge.store import Store
from bridge.store.models import Member, OrgConnection, Program, Referral, SyncCursor, User
from bridge.users import create_token, create_user, revoke_token
from bridge.vault import generate_key
from bridge.vocabulary import ADMIN as ADMIN_ROLE
from bridge.vocabulary import REVIEWER as REVIEWER_ROLE
from bridge.vocabulary import TOPIC_NAMES

ORG = "demo"
PROGRAM = "demo"
REVIEWER = "reviewer@example.com"
ADMIN = "admin@example.com"

# Referrals the demo seeds, and whether their Lead in the org carries the referral id
# (a direct match, processed by the rules) or only the same email (a fuzzy match: review).
SEED_REFERRALS: list[dict[str, Any]] = [
    {"first_name": "Grace", "last_name": "Hopper", "email": "grace@hopper.example",
     "company": "Cobol Works", "member": "ANNA", "direct": True},
    {"first_name": "Alan", "last_name": "Turing", "email": "alan@turing.example",
     "company": "Bletchley Ltd", "member": "BEN", "direct": True},
    {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@lovelace.example",
     "company": "Analytical Engines", "member": "ANNA", "direct": False},
    {"first_name": "Linus", "last_name": "Pauling", "email": "linus@pauling.example",
     "company": "Vitamin C Co", "member": "BEN", "direct": False},
    {"first_name": "Marie", "last_name": "Curie", "email": "marie@curie.example",
     "company": "Radium Institute", "member": "ANNA", "direct": True, "status": "denied"},
]  # fmt: skip
SEED_MEMBERS = [
    {"name": "Anna Advocate", "email": "anna@members.example", "referral_code": "ANNA",
     "external_id": "member-anna"},
    {"name": "Ben Booster", "email": "ben@members.example", "referral_code": "BEN",
     "external_id": "member-ben"},
]  # fmt: skip

CONFIG_TEMPLATE = """\
# Written by `sfbridge demo` for the local org; edit freely, it is not overwritten.
orgs:
  {org}:
    login_url: {login_url}
    client_id: {client_id}
    username: {username}
    private_key_file: {private_key_file}
    ca_bundle: {ca_bundle}
    api_version: "{api_version}"
    programs:
      - key: {program}
        name: Demo referral programme
    receiver:
      program: {program}
      override_denied: true
      status_rules:
        - status: qualified
          object: Lead
          field: Status
          op: equals
          value: Working - Contacted
        - status: denied
          object: Lead
          field: Status
          op: equals
          value: Closed - Not Converted
      process:
        auto_process_direct: true
        auto_process_fuzzy: false      # fuzzy matches wait for a reviewer
        review_when_no_member: true    # so do people nobody referred
        review_denied_upgrade: true
    writeback:
      sales:
        sites: {{}}                    # a sale's locations as Customer Sites of its Account
"""


# ---- the state kept between runs -----------------------------------------------------------


@dataclass
class DemoState:
    path: Path
    encryption_key: str = ""
    reviewer_password: str = ""
    admin_password: str = ""
    org_seeded: bool = False
    examples_seeded: bool = False

    @classmethod
    def load(cls, path: Path) -> DemoState:
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(path, **data)
        state = cls(path, generate_key(), _password(), _password())
        state.save()
        return state

    def save(self) -> None:
        data = {k: v for k, v in self.__dict__.items() if k != "path"}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)


def _password() -> str:
    return "-".join(secrets.token_hex(3) for _ in range(3))


# ---- changes in the org as the sales user ---------------------------------------------------

_FIRST = ["Nora", "Omar", "Priya", "Quentin", "Rosa", "Tariq", "Uma", "Viktor", "Wendy",
          "Xavier", "Yara", "Zoltan"]  # fmt: skip
_LAST = ["Newton", "Okafor", "Patel", "Quill", "Ramirez", "Sato", "Tanaka", "Ulrich",
         "Varga", "Whitfield", "Xu", "Yilmaz"]  # fmt: skip


def _new_person() -> dict[str, str]:
    """Someone new (random names; the email is unique), so new Leads rarely match each other."""
    first, last = secrets.choice(_FIRST), secrets.choice(_LAST)
    tag = secrets.token_hex(2)
    return {
        "FirstName": first,
        "LastName": last,
        "Email": f"{first}.{last}.{tag}@example.org".lower(),
    }


def _devorg(devorg_dir: Path) -> DevOrg:
    org = DevOrg(devorg_dir)
    try:
        org.info = json.loads((devorg_dir / "devorg.json").read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(
            f"the local org has not run in {devorg_dir}: start `sfbridge demo`"
        ) from exc
    return org


def make_changes(devorg_dir: str | os.PathLike[str]) -> str:
    """Work the seeded Leads one step further and add two new ones, as the sales user."""
    sf = _devorg(Path(devorg_dir)).sf("sales")
    emails = [r["email"] for r in SEED_REFERRALS]
    leads = sf.query_all(
        format_soql("SELECT Id, Email, Status FROM Lead WHERE Email IN {}", emails)
    )["records"]
    worked = closed = 0
    for lead in leads:
        if lead["Status"] == "Open - Not Contacted":
            sf.Lead.update(lead["Id"], {"Status": "Working - Contacted"})
            worked += 1
        elif lead["Status"] == "Working - Contacted" and lead["Email"].startswith("linus"):
            sf.Lead.update(lead["Id"], {"Status": "Closed - Not Converted"})
            closed += 1
    referred, stranger = _new_person(), _new_person()
    sf.Lead.create(
        {
            **referred,
            "Company": "Fresh Leads Ltd",
            "Status": "Working - Contacted",
            "Referral_Code__c": "ANNA",
        }
    )
    sf.Lead.create(
        {
            **stranger,
            "Company": "Nobody Knows Inc",
            "Status": "Working - Contacted",
            "Referral_Code__c": "FRIEND-42",
        }
    )
    parts = []
    if worked:
        parts.append(f"{worked} Lead(s) moved to Working - Contacted")
    if closed:
        parts.append(f"{closed} Lead(s) closed")
    parts.append(
        f"new Leads {referred['FirstName']} {referred['LastName']} (referred by member ANNA) "
        f"and {stranger['FirstName']} {stranger['LastName']} (an unknown referral code)"
    )
    return "; ".join(parts)


def web_config(devorg_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The web app's config under the demo: the dashboard offers "Make changes in the org as a
    sales user", which calls `make_changes` on the demo's local org."""
    return {"DEMO_CHANGES": functools.partial(make_changes, devorg_dir)}


# ---- seeding --------------------------------------------------------------------------------


def seed_bridge(store: Store, state: DemoState) -> dict[str, str]:
    """Program, members, referrals and the two accounts (once). Returns email -> public id."""
    with store.session() as s:
        conn = s.scalar(select(OrgConnection).where(OrgConnection.name == ORG))
        program = s.scalar(select(Program).where(Program.key == PROGRAM))
        if program is None:
            program = Program(
                key=PROGRAM,
                name="Demo referral programme",
                org_connection_id=conn.id if conn else None,
            )
            s.add(program)
            s.flush()
        members = {}
        for m in SEED_MEMBERS:
            member = s.scalar(
                select(Member).where(
                    Member.program_id == program.id, Member.referral_code == m["referral_code"]
                )
            )
            if member is None:
                member = Member(program_id=program.id, **m)
                s.add(member)
                s.flush()
            members[m["referral_code"]] = member.id
        ids = {}
        for r in SEED_REFERRALS:
            referral = s.scalar(
                select(Referral).where(
                    Referral.program_id == program.id, Referral.email == r["email"]
                )
            )
            if referral is None:
                referral = Referral(
                    public_id=new_public_id(),
                    program_id=program.id,
                    member_id=members[r["member"]],
                    first_name=r["first_name"],
                    last_name=r["last_name"],
                    email=r["email"],
                    company=r["company"],
                    status=r.get("status", "pending"),
                )
                s.add(referral)
                s.flush()
            ids[r["email"]] = referral.public_id
        for email, role, password in (
            (REVIEWER, REVIEWER_ROLE, state.reviewer_password),
            (ADMIN, ADMIN_ROLE, state.admin_password),
        ):
            if s.scalar(select(User).where(User.email == email)) is None:
                create_user(s, email, password, role, name=role.title(), actor="demo")
    return ids


def seed_org(devorg_dir: Path, public_ids: dict[str, str]) -> None:
    """The seeded referrals' Leads, created before the topics exist (so they make no entries)."""
    sf = _devorg(devorg_dir).sf("sales")
    for r in SEED_REFERRALS:
        lead = {
            "FirstName": r["first_name"],
            "LastName": r["last_name"],
            "Email": r["email"],
            "Company": r["company"],
            "Status": "Open - Not Contacted",
        }
        if r["direct"]:
            lead["Referral_ID__c"] = public_ids[r["email"]]
        sf.Lead.create(lead)


# The demo org's one validation rule, as an admin would add it: the push of a referral sent
# without a phone fails with FIELD_CUSTOM_VALIDATION_EXCEPTION on Phone (fix and repush it with
# a phone). Values that cannot fit a field are refused by the bridge's API at the door instead.
PHONE_RULE = {
    "object": "Lead",
    "name": "Referred_Lead_Needs_Phone",
    "formula": "AND(ISNEW(), NOT(ISBLANK(Referral_ID__c)), ISBLANK(Phone))",
    "message": "A referred lead needs a phone number.",
    "error_field": "Phone",
}


def seed_examples(url: str, store: Store, devorg_dir: Path) -> str:
    """One failed entry and one failed push (once), so every page has something to show. Both
    go through the bridge's own API, as a Flow and a referral platform would send them."""
    _devorg(devorg_dir).control(
        "strict", {"validation_rules": [PHONE_RULE], "duplicate_rules": "off"}
    )
    with store.session() as s:
        admin = s.scalars(select(User).where(User.email == ADMIN)).one()
        token = create_token(
            s, admin, f"demo-examples-{secrets.token_hex(2)}",
            ["entries:write", "referrals:write"], actor="demo",
        )  # fmt: skip
    http = requests.Session()
    http.trust_env = False
    http.headers["Authorization"] = f"Bearer {token.secret}"
    try:
        # A Flow that sends a Lead without the Status field the status rules read: the entry
        # fails with "missing data" until a reviewer adds the field and retries.
        entry = http.post(
            url + "/api/v1/entries",
            json={
                "org": ORG,
                "sobject_type": "Lead",
                "record": {
                    "Id": "00Q" + secrets.token_hex(6).upper() + "AAA",
                    "FirstName": "Fiona",
                    "LastName": "Flow",
                    "Email": "fiona@flow.example",
                    "Company": "Half Sent Ltd",
                },
            },
            timeout=30,
        )
        entry.raise_for_status()
        # A referral without a phone: the push that creates its Lead fails on the org's
        # validation rule (PHONE_RULE).
        referral = http.post(
            url + "/api/v1/referrals",
            json={
                "program": PROGRAM,
                "first_name": "Maria",
                "last_name": "Nophone",
                "email": "maria@nophone.example",
                "company": "Quiet Line GmbH",
                "member": {"referral_code": "BEN"},
            },
            timeout=30,
        )
        referral.raise_for_status()
    finally:
        with store.session() as s:
            revoke_token(s, token.token.id, actor="demo")
    return (
        f"entry {entry.json()['id']} fails (a Lead sent without Status), and the push of a "
        "referral without a phone fails on the org's validation rule (fix and repush it)"
    )


def cli_command(instance_dir: Path, cwd: Path) -> str:
    """The CLI as a user types it to reach this demo's instance from `cwd`: `.venv/bin/sfbridge`
    from the project folder; with SFBRIDGE_INSTANCE_DIR when the lookup would not find it."""
    script = Path(sys.executable).parent / "sfbridge"
    exe = os.path.relpath(script, cwd) if script.is_relative_to(cwd) else str(script)
    if find_instance_dir(cwd) == instance_dir.resolve():
        return exe
    return f"SFBRIDGE_INSTANCE_DIR={shlex.quote(str(instance_dir.resolve()))} {exe}"


# ---- processes ------------------------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pick_port(wanted: int, what: str, echo: Callable[[str], None]) -> int:
    if _port_free(wanted):
        return wanted
    port = free_port()
    echo(f"port {wanted} is in use; the {what} uses {port} instead")
    return port


def _sfbridge() -> list[str]:
    script = Path(sys.executable).parent / "sfbridge"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from bridge.cli import main; main()"]


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Demo:
    instance_dir: Path
    web_port: int = 8000
    org_port: int = 8410
    initial_changes: bool = True
    echo: Callable[[str], None] = click.echo
    children: list[Child] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    _redis: Any = None
    _devorg: Any = None
    _stopping: bool = False

    @property
    def devorg_dir(self) -> Path:
        return self.instance_dir / "devorg"

    @property
    def logs(self) -> Path:
        return self.instance_dir / "logs"

    def run(self) -> None:
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def stop(signum: int, _frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            self.start()
            self.watch()
        except KeyboardInterrupt:
            self.echo("\nstopping...")
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def start(self) -> None:
        t0 = time.monotonic()
        self.instance_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        state = DemoState.load(self.instance_dir / "demo.json")
        env = dict(os.environ)
        env.update(
            SFBRIDGE_INSTANCE_DIR=str(self.instance_dir),
            SFBRIDGE_DATABASE_URL=env.get("SFBRIDGE_DATABASE_URL")
            or f"sqlite:///{self.instance_dir / 'sfbridge.db'}",
            SFBRIDGE_ENCRYPTION_KEYS=env.get("SFBRIDGE_ENCRYPTION_KEYS") or state.encryption_key,
            # The demo serves on loopback only: let this machine read /metrics and /readyz.
            SFBRIDGE_MONITOR_NETWORKS=env.get("SFBRIDGE_MONITOR_NETWORKS") or "127.0.0.1,::1",
            PYTHONUNBUFFERED="1",
        )

        if not env.get("SFBRIDGE_REDIS_URL"):
            self._redis = EmbeddedRedis(self.instance_dir / "redis").start()
            env["SFBRIDGE_REDIS_URL"] = self._redis.url
        self.echo(f"redis        {env['SFBRIDGE_REDIS_URL']}")

        org_port = _pick_port(self.org_port, "local org", self.echo)
        self._devorg = DevOrg(
            self.devorg_dir, port=org_port, package_dir=REPO_ROOT / "force-app"
        ).start()
        info = self._devorg.info
        self.echo(f"local org    {info['instance_url']}  (data in {self.devorg_dir})")

        config_path = self.instance_dir / "demo.yaml"
        if not config_path.exists():
            config_path.write_text(
                CONFIG_TEMPLATE.format(
                    org=ORG,
                    program=PROGRAM,
                    login_url=info["login_url"],
                    client_id=info["client_id"],
                    username=info["users"]["integration"]["username"],
                    private_key_file=info["jwt_private_key_path"],
                    ca_bundle=info["ca_path"],
                    api_version=info["api_version"],
                ),
                encoding="utf-8",
            )
        else:  # the org may listen on another port this time
            text = config_path.read_text(encoding="utf-8")
            text = re.sub(
                r"login_url: https://127\.0\.0\.1:\d+", f"login_url: {info['login_url']}", text
            )
            config_path.write_text(text, encoding="utf-8")
        env["SFBRIDGE_CONFIG"] = str(config_path)
        self.env = env
        os.environ.update(env)  # this process opens the store and vault with the same settings

        rt = Runtime.from_env()
        rt.store.upgrade()
        self.run_step("connect", "org", "connect", ORG)
        public_ids = seed_bridge(rt.store, state)
        if not state.org_seeded:
            seed_org(self.devorg_dir, public_ids)
            state.org_seeded = True
            state.save()
        self.run_step("topics", "org", "topics", ORG, "--apply")

        web_port = _pick_port(self.web_port, "web app", self.echo)
        self.spawn("worker", "worker")
        self.spawn("stream", "stream")
        self.spawn(
            "web", "demo", "web", "--host", "127.0.0.1", "--port", str(web_port), "--workers", "2"
        )
        url = f"http://127.0.0.1:{web_port}"
        self.wait_until(lambda: _http_ok(url + "/healthz"), 30, "the web app")
        self.wait_until(
            lambda: _subscribed(rt.store) >= len(TOPIC_NAMES),
            30,
            "the stream subscriber to subscribe",
        )
        if not state.examples_seeded:
            self.echo("examples     " + seed_examples(url, rt.store, self.devorg_dir))
            state.examples_seeded = True
            state.save()
        rt.store.dispose()
        if self.initial_changes:
            self.echo("changes      " + make_changes(self.devorg_dir))
        cli = cli_command(self.instance_dir, Path.cwd())
        self.echo("")
        self.echo(f"sfbridge demo is running (ready in {time.monotonic() - t0:.0f}s)")
        self.echo(f"  web UI     {url}/")
        self.echo(f"  sign in    {REVIEWER} / {state.reviewer_password}   (reviewer)")
        self.echo(f"             {ADMIN} / {state.admin_password}   (admin)")
        self.echo(f"  API        {url}/api  (reference; the document: {url}/api/v1/openapi.json)")
        self.echo(
            f"  API token  {cli} tokens create --user {ADMIN} --name my-token "
            '--scope "referrals:write entries:read"'
        )
        self.echo(f"  health     {url}/readyz   metrics {url}/metrics")
        self.echo(
            f"  local org  {info['instance_url']}  (sales user "
            f"{info['users']['sales']['username']})"
        )
        self.echo(f"  logs       {self.logs}/")
        self.echo(
            "Entries arrive in a few seconds: some are processed by the rules, some wait "
            "for review."
        )
        self.echo(
            'More changes: the dashboard\'s "Make changes in the org as a sales user" '
            f"button, or `{cli} demo changes`. Ctrl-C stops everything."
        )

    def run_step(self, name: str, *args: str) -> None:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            code = subprocess.call(
                [*_sfbridge(), *args], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        if code != 0:
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise UsageError(f"`sfbridge {' '.join(args)}` failed (log {log}):\n{tail}")

    def spawn(self, name: str, *args: str) -> None:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            # A session of its own: Ctrl-C reaches only the demo, which stops each child in turn.
            proc = subprocess.Popen(
                [*_sfbridge(), *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children.append(Child(name, proc, log))

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            self.check_children()
            if time.monotonic() > deadline:
                raise UsageError(
                    f"timed out after {timeout:.0f}s waiting for {what}; "
                    f"see the logs in {self.logs}"
                )
            time.sleep(0.2)

    def check_children(self) -> None:
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                tail = child.log.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise UsageError(f"{child.name} exited with code {code} (log {child.log}):\n{tail}")
        if self._devorg is not None and self._devorg.process.poll() is not None:
            raise UsageError(f"the local org exited:\n{self._devorg.log_text()[-2000:]}")

    def watch(self) -> None:
        while True:
            self.check_children()
            time.sleep(0.5)

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        # A second Ctrl-C while the children stop must not leave the org or Redis running.
        with _signals_ignored():
            self._stop_all()

    def _stop_all(self) -> None:
        for child in reversed(self.children):
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGTERM)
        for child in reversed(self.children):
            try:
                child.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.echo(f"{child.name} did not stop in 15s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
        if self._devorg is not None:
            self._devorg.stop()
        if self._redis is not None:
            self._redis.stop()
        self.echo("stopped: web, worker, stream, local org and Redis")


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM for the block (only the main thread may change handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _http_ok(url: str) -> bool:
    try:
        session = requests.Session()
        session.trust_env = False
        return session.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _subscribed(store: Store) -> int:
    with store.session() as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(SyncCursor)
                .where(SyncCursor.channel.like("/topic/%"))
            )
            or 0
        )
