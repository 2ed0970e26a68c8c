"""Admin pages for the org connections and the mapping: the connected orgs, the config file's
path and its `config check` result (read-only: the config stays in the YAML file), and per org
the mapping page — every field the config names with what the bridge does with it and its
status from the last `org check` (Ok / Issue and the reason), the write-back mappings with
their sync rules, and for picklists an Inspect view comparing our values with the org's active
values (from the describe cache, bridge.salesforce.fieldcache). `org check` runs from the page
(a POST); its findings are kept beside the describes, as the CLI keeps them."""

from __future__ import annotations

from typing import Any

import requests
from flask import Blueprint, abort, flash, g, redirect, render_template, url_for
from simple_salesforce.exceptions import SalesforceError
from sqlalchemy import select
from werkzeug.wrappers import Response

from bridge import audit
from bridge.config import OrgConfig, check_config_text, read_config_text
from bridge.errors import BridgeError, ConfigError
from bridge.orgs import open_org
from bridge.receiver.configcheck import check_config_rules
from bridge.salesforce import check, fieldcache
from bridge.store.models import OrgConnection
from bridge.vocabulary import STREAMED_OBJECTS
from bridge.web.auth import role_required
from bridge.web.extensions import store, web
from bridge.writeback import fieldsync

bp = Blueprint("orgs", __name__, url_prefix="/admin/orgs")

#: The sync rules in words (docs/writeback.md, "Field mappings and sync rules").
SYNC_WORDS = {
    "read_only": "Salesforce owns it: read into the bridge, never written",
    "read_write": "written when ours is set; read back when ours is blank",
    "salesforce_unless_blank": "written only into a blank Salesforce field; read whenever set",
    "ours": "the bridge owns it: written, never read back",
    "none": "neither written nor read",
}


def _config_result() -> tuple[str | None, list[str]]:
    """(the config file's path, the problems `config check` finds in it)."""
    path = web().settings.config_path
    if not path:
        return None, ["no config file: SFBRIDGE_CONFIG is not set"]
    try:
        text = read_config_text(path)
    except ConfigError as exc:
        return path, [exc.message]
    cfg, problems = check_config_text(text, path)
    if cfg is not None:
        problems = check_config_rules(cfg, text, path, None)
    return path, [str(p) for p in problems]


def _org_config(name: str) -> OrgConfig:
    try:
        cfg = web().config()
    except ConfigError:
        cfg = None
    if cfg is None or name not in cfg.orgs:
        abort(404)
    return cfg.orgs[name]


def _instance() -> str:
    return str(web().settings.instance_dir)


@bp.get("")
@role_required("admin")
def orgs() -> str:
    path, problems = _config_result()
    try:
        cfg = web().config()
    except ConfigError:
        cfg = None
    with store().session() as s:
        rows = {c.name: c for c in s.scalars(select(OrgConnection))}
        for c in rows.values():
            s.expunge(c)
    names = sorted(set(cfg.orgs if cfg else ()) | set(rows))
    checks = {n: fieldcache.load_check(_instance(), n) for n in names}
    return render_template(
        "orgs.html",
        path=path,
        problems=problems,
        names=names,
        configured=set(cfg.orgs if cfg else ()),
        rows=rows,
        checks=checks,
    )


def _inspect(use: check.FieldUse, picklists: dict[str, dict[str, list[str]]]) -> Any:
    """Our values beside the org's active ones, for a picklist field the config compares or
    writes; None when the field is no picklist in the cache (or no describe was kept)."""
    active = (picklists.get(use.sobject) or {}).get(use.field)
    if active is None:
        return None
    ours = [str(v) for v in use.values]
    return {
        "ours": [(v, v in active) for v in ours],
        "unused": [v for v in active if v not in ours],
    }


@bp.get("/<name>")
@role_required("admin")
def mapping(name: str) -> str:
    org = _org_config(name)
    last = fieldcache.load_check(_instance(), name)
    findings = (last or {}).get("findings", [])
    by_subject = {f["subject"]: f for f in findings if f.get("check") == "mapping"}
    picklists = fieldcache.load_picklists(_instance(), name)
    uses = [
        {
            "use": u,
            "why": check.ROLE_WHY[u.role],
            "finding": by_subject.get(f"{u.where}: {u.ref}"),
            "inspect": _inspect(u, picklists),
        }
        for u in check.field_uses(org)
    ]
    writeback = [(obj, m) for obj in STREAMED_OBJECTS for m in fieldsync.mappings_for(org, obj)]
    with store().session() as s:
        conn = s.scalar(select(OrgConnection).where(OrgConnection.name == name))
        if conn is not None:
            s.expunge(conn)
    return render_template(
        "org_mapping.html",
        name=name,
        conn=conn,
        last=last,
        others=sorted(
            (f for f in findings if f.get("check") != "mapping"),
            key=lambda f: f.get("status") != "Issue",  # the Issues first
        ),
        issues=sum(1 for f in findings if f.get("status") == "Issue"),
        uses=uses,
        writeback=writeback,
        sync_words=SYNC_WORDS,
        described=bool(picklists),
    )


@bp.post("/<name>/check")
@role_required("admin")
def run_check(name: str) -> Response:
    """Describe the org's objects, run every check, keep describes and findings; the page then
    shows them (post, redirect, get: a reload runs nothing)."""
    org = _org_config(name)
    try:
        sf_org = open_org(store(), web().runtime.vault, name, org)
        findings = check.run_check(
            sf_org, name, org, keep=lambda d: fieldcache.save_field_names(_instance(), name, d)
        )
    except (BridgeError, SalesforceError, requests.RequestException) as exc:
        why = exc.message if isinstance(exc, BridgeError) else f"{type(exc).__name__}: {exc}"
        flash(f"org check did not run: {why}", "error")
        return redirect(url_for("orgs.mapping", name=name))
    fieldcache.save_check(_instance(), name, check.as_rows(findings))
    issues = sum(1 for f in findings if f.status == "Issue")
    with store().session() as s:
        audit.record(s, g.user.email, "org.check", "org", name, checks=len(findings), issues=issues)
    flash(
        f"org check: {len(findings)} checks, {len(findings) - issues} Ok, {issues} Issue(s).",
        "success" if not issues else "warning",
    )
    return redirect(url_for("orgs.mapping", name=name))
