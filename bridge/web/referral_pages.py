"""The console's referral page: the referral, its Salesforce records and field history, and
an edit form — a local edit, pushed to Salesforce by the fields' sync rules (bridge.web.edits),
like `PATCH /api/v1/referrals/{id}`."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from bridge.store.models import Member, Referral
from bridge.web import actions, edits
from bridge.web.auth import login_required
from bridge.web.extensions import store
from bridge.writeback import fieldsync

bp = Blueprint("referrals", __name__)

EDITABLE = ("first_name", "last_name", "email", "company", "phone")


@bp.get("/referrals/<int:referral_id>")
@login_required
def referral(referral_id: int) -> str:
    with store().session() as s:
        r = s.get(Referral, referral_id)
        if r is None:
            abort(404)
        member = s.get(Member, r.member_id) if r.member_id else None
        return render_template(
            "referral.html",
            r=r,
            member=member,
            history=fieldsync.history(s, r),
            editable=EDITABLE,
        )


@bp.post("/referrals/<int:referral_id>/edit")
@login_required
def edit(referral_id: int) -> Response:
    """Only the fields the form changed are edited; an empty value clears (a last name stays)."""
    back = redirect(url_for("referrals.referral", referral_id=referral_id))
    with store().session() as s:
        r = s.get(Referral, referral_id)
        if r is None:
            abort(404)
        data: dict[str, Any] = {}
        for name in EDITABLE:
            if name not in request.form:
                continue
            value = request.form[name].strip() or None
            if value != getattr(r, name):
                data[name] = value
        extra = {}
        for key, value in request.form.items():
            if (
                key.startswith("field:")
                and key[6:]
                and (value.strip() or None) != (r.fields or {}).get(key[6:])
            ):
                extra[key[6:]] = value.strip() or None
        added = request.form.get("add_key", "").strip()
        if added:
            extra[added] = request.form.get("add_value", "").strip() or None
        if extra:
            data["fields"] = extra
        if not data:
            flash("Nothing changed.", "success")
            return back
        if "last_name" in data and data["last_name"] is None:
            flash("A referral keeps its last name.", "error")
            return back
        pushes = edits.edit_referral(s, r, data, actor=g.user.email)
        s.flush()
        ids = [p.id for p in pushes]
    note = actions.enqueue_pushes(ids)
    sent = (
        f" {len(ids)} write(s) to Salesforce {note}." if ids else " Nothing to send to Salesforce."
    )
    flash(f"Referral {referral_id} saved.{sent}", "success")
    return back
