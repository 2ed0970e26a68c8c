"""Known data for web tests and the browser test: one org, a program, referrals, entries in
every outcome, pushes in every state, a reviewer and an admin."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bridge.config import OrgConfig, check_config_text
from bridge.receiver import service
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
      override_denied: true
      status_rules:
        - status: qualified
          object: Lead
          field: Status
          op: equals
          value: Qualified
      process:
        auto_process_fuzzy: false
        review_when_no_member: false
"""


def org_config() -> OrgConfig:
    cfg, problems = check_config_text(CONFIG_YAML, "seed.yaml")
    assert cfg is not None, problems
    return cfg.orgs["acme"]


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

        org = org_config()
        integration_user = "005000000000001AAA"
        conn.integration_user_id = integration_user

        def entry(key: str, sobject: str, record: dict[str, Any], days_ago: int = 0) -> None:
            """A streamed change, decided by the real receiver with the config above."""
            records: dict[str, Any] = {
                "Lead": None,
                "Contact": None,
                "Account": None,
                "Opportunity": None,
            }
            records[sobject] = record
            e = SalesEntry(
                org_connection_id=conn.id,
                program_id=main.id,
                source="stream",
                sobject_type=sobject,
                record_id=record["Id"],
                change_type="updated",
                raw={"sobject": record},
                records=records,
                outcome="new",
                created_at=now - timedelta(days=days_ago),
            )
            s.add(e)
            s.flush()
            service.process_entry(s, e, org)
            out.ids[key] = e.id

        # fuzzy (email) match, and the rules ask a person to confirm fuzzy matches
        entry("review_fuzzy", "Lead", _lead("Bob", "Buyer", "bob@buyer.test", Status="Qualified"))
        # a denied referral that this change would qualify
        entry(
            "review_denied",
            "Lead",
            _lead(
                "Dan",
                "Denied",
                "dan@denied.test",
                Status="Qualified",
                Referral_ID__c=refs[2].public_id,
            ),
            days_ago=1,
        )
        # a Contact that matches Carol by email (fuzzy): waits too; filed under `partners`
        entry(
            "review_partner",
            "Contact",
            {
                "Id": "003000000000001AAA",
                "FirstName": "Carol",
                "LastName": "Client",
                "Email": "carol@client.test",
            },
            days_ago=2,
        )
        # names a member by a mistyped code: no referral, no member -> failed (unmatched)
        entry(
            "failed",
            "Lead",
            _lead("Eve", "Error", "eve@error.test", Status="Qualified", Referral_Code__c="ALISE"),
            days_ago=1,
        )
        # carries Carol's referral id: processed directly
        entry(
            "processed",
            "Lead",
            _lead(
                "Carol",
                "Client",
                "carol@client.test",
                Status="Qualified",
                Referral_ID__c=refs[1].public_id,
            ),
            days_ago=3,
        )
        # the bridge's own write
        entry(
            "skipped",
            "Lead",
            _lead("Ida", "Integration", "ida@int.test", LastModifiedById=integration_user),
            days_ago=4,
        )
        s.get(SalesEntry, out.ids["review_partner"]).program_id = partners.id  # type: ignore[union-attr]
        expected = {
            "review_fuzzy": "review",
            "review_denied": "review",
            "review_partner": "review",
            "failed": "failed",
            "processed": "processed",
            "skipped": "skipped",
        }
        got = {k: s.get(SalesEntry, out.ids[k]).outcome for k in expected}  # type: ignore[union-attr]
        assert got == expected, got

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
        # token names are unique among live tokens: number them
        name = f"test-{secrets.token_hex(4)}"
        return create_token(s, user, name, scopes, actor="test").secret
