"""Known data for web tests and the browser test: one org, a program, referrals, entries in
every outcome, pushes in every state, a reviewer and an admin."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bridge.store import Store
from bridge.store.models import (
    Member,
    OrgConnection,
    Program,
    Push,
    Referral,
    SalesEntry,
    utcnow,
)
from bridge.users import create_token, create_user

PASSWORD = "correct horse battery"
FAST_HASH = "pbkdf2:sha256:1000"  # tests only: real accounts use scrypt

CONFIG_YAML = """\
orgs:
  acme:
    login_url: https://login.salesforce.com
    programs:
      - key: main
        name: Main programme
      - key: partners
        name: Partners
    receiver:
      program: main
"""


@dataclass
class Seeded:
    ids: dict[str, int] = field(default_factory=dict)


def _lead(first: str, last: str, email: str, **extra: Any) -> dict[str, Any]:
    return {
        "Id": "00Q" + email[:12].ljust(15, "X"),
        "FirstName": first,
        "LastName": last,
        "Email": email,
        "Company": f"{last} Ltd",
        "Status": "Open",
        **extra,
    }


def seed(store: Store) -> Seeded:
    out = Seeded()
    now = utcnow()
    with store.session() as s:
        conn = OrgConnection(
            name="acme",
            org_id="00D000000000001AAA",
            login_url="https://x",
            instance_url="https://acme.example",
            auth_method="jwt",
        )
        s.add(conn)
        s.flush()
        main = Program(key="main", name="Main programme", org_connection_id=conn.id)
        partners = Program(key="partners", name="Partners", org_connection_id=conn.id)
        s.add_all([main, partners])
        s.flush()
        member = Member(
            program_id=main.id,
            external_id="m-1",
            referral_code="ALICE",
            name="Alice Member",
            email="alice@members.test",
            email_key="alice@members.test",
        )
        s.add(member)
        s.flush()
        refs = []
        for i, (first, last, email) in enumerate(
            [
                ("Bob", "Buyer", "bob@buyer.test"),
                ("Carol", "Client", "carol@client.test"),
                ("Dan", "Denied", "dan@denied.test"),
            ]
        ):
            r = Referral(
                public_id=f"ref_{i:04d}",
                program_id=main.id,
                member_id=member.id,
                first_name=first,
                last_name=last,
                email=email,
                email_key=email,
                name_key=f"{first} {last}".lower(),
                status="denied" if last == "Denied" else "pending",
            )
            s.add(r)
            refs.append(r)
        s.flush()
        out.ids.update(
            ref_bob=refs[0].id,
            ref_carol=refs[1].id,
            ref_dan=refs[2].id,
            member=member.id,
            program=main.id,
            org=conn.id,
        )

        def entry(
            key: str,
            outcome: str,
            program: Program,
            sobject: str,
            record: dict[str, Any],
            reasons: list[str],
            days_ago: int = 0,
            **kw: Any,
        ) -> None:
            records: dict[str, Any] = {
                "Lead": None,
                "Contact": None,
                "Account": None,
                "Opportunity": None,
            }
            records[sobject] = record
            e = SalesEntry(
                org_connection_id=conn.id,
                program_id=program.id,
                source="stream",
                sobject_type=sobject,
                record_id=record["Id"],
                change_type="updated",
                raw={"sobject": record},
                records=records,
                outcome=outcome,
                reasons=reasons,
                created_at=now - timedelta(days=days_ago),
                **kw,
            )
            s.add(e)
            s.flush()
            out.ids[key] = e.id

        entry(
            "review_fuzzy",
            "review",
            main,
            "Lead",
            _lead("Bob", "Buyer", "bob@buyer.test"),
            ["fuzzy_match", "review_fuzzy"],
            candidates=[
                {"referral_id": refs[0].id, "score": 0.91, "method": "email"},
                {"referral_id": refs[1].id, "score": 0.55, "method": "name"},
            ],
            decision={"target_status": "qualified", "referral": "ref_0000"},
            referral_id=refs[0].id,
        )
        entry(
            "review_denied",
            "review",
            main,
            "Lead",
            _lead("Dan", "Denied", "dan@denied.test"),
            ["denied_upgrade_needs_review"],
            days_ago=1,
            decision={"target_status": "qualified"},
            referral_id=refs[2].id,
        )
        entry(
            "review_partner",
            "review",
            partners,
            "Contact",
            {
                "Id": "003000000000001AAA",
                "FirstName": "Pat",
                "LastName": "Partner",
                "Email": "pat@partner.test",
            },
            ["no_match"],
            days_ago=2,
        )
        entry(
            "failed",
            "failed",
            main,
            "Lead",
            _lead("Eve", "Error", "eve@error"),
            ["no_match"],
            days_ago=1,
            error="Lead.Email 'eve@error' is not an email address; fix it and retry",
        )
        entry(
            "processed",
            "processed",
            main,
            "Opportunity",
            {"Id": "006000000000001AAA", "Name": "Big deal", "StageName": "Closed Won"},
            ["direct_match", "status_rule:1"],
            days_ago=3,
            referral_id=refs[1].id,
        )
        entry(
            "skipped",
            "skipped",
            main,
            "Lead",
            _lead("Ida", "Integration", "ida@int.test"),
            ["own_write"],
            days_ago=4,
        )

        pushes = [
            Push(
                org_connection_id=conn.id,
                kind="referral",
                idempotency_key="referral:ref_0000",
                sobject_type="Lead",
                external_id_field="Referral_ID__c",
                external_id="ref_0000",
                state="sent",
                sf_id="00Q000000000009AAA",
                attempts=1,
                referral_id=refs[0].id,
            ),
            Push(
                org_connection_id=conn.id,
                kind="referral",
                idempotency_key="referral:ref_0001",
                sobject_type="Lead",
                external_id_field="Referral_ID__c",
                external_id="ref_0001",
                state="failed",
                error_code="STRING_TOO_LONG",
                error_message="Company: data value too large",
                error_fields=["Company"],
                attempts=3,
                referral_id=refs[1].id,
            ),
            Push(
                org_connection_id=conn.id,
                kind="activity",
                idempotency_key="activity:acme:a1",
                sobject_type="Task",
                external_id_field="SFBridge_Activity_Id__c",
                external_id="a1",
                state="pending",
            ),
        ]
        s.add_all(pushes)
        s.flush()
        out.ids.update(push_sent=pushes[0].id, push_failed=pushes[1].id, push_pending=pushes[2].id)
        reviewer = create_user(
            s, "reviewer@example.com", PASSWORD, "reviewer", hash_method=FAST_HASH
        )
        admin = create_user(s, "admin@example.com", PASSWORD, "admin", hash_method=FAST_HASH)
        out.ids.update(reviewer=reviewer.id, admin=admin.id)
    return out


def token(store: Store, scopes: list[str], email: str = "admin@example.com") -> str:
    from sqlalchemy import select

    from bridge.store.models import User

    with store.session() as s:
        user = s.scalars(select(User).where(User.email == email)).one()
        return create_token(s, user, "test", scopes, actor="test").secret
