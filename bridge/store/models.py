"""The bridge's tables. Alembic migrations in `migrations/` create the same schema.

Longer than most modules on purpose: every table in one place, so the schema reads as one and
the migrations are checked against one metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.orm.attributes import PASSIVE_NO_INITIALIZE, get_history
from sqlalchemy.types import TypeDecorator

from bridge.matchkeys import member_keys, referral_keys


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: Row ids and the foreign keys to them: 64-bit on PostgreSQL (the API takes ids up to 2^63-1,
#: so a 32-bit column would overflow, a 500); SQLite's INTEGER PRIMARY KEY is 64-bit already
#: and must stay INTEGER to remain the rowid.
ROW_ID = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class OrgConnection(Base):
    """A connected Salesforce org; one org id belongs to one connection only."""

    __tablename__ = "org_connections"

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)  # the key under `orgs:` in config
    org_id: Mapped[str | None] = mapped_column(String(18), unique=True)
    instance_url: Mapped[str | None] = mapped_column(String(255))
    login_url: Mapped[str] = mapped_column(String(255))
    auth_method: Mapped[str] = mapped_column(String(16))  # jwt | web
    client_id: Mapped[str | None] = mapped_column(String(255))
    username: Mapped[str | None] = mapped_column(String(255))
    integration_user_id: Mapped[str | None] = mapped_column(String(18))
    private_key_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    refresh_token_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    ca_bundle: Mapped[str | None] = mapped_column(String(500))
    api_version: Mapped[str] = mapped_column(String(8), default="63.0")
    # The integration's on/off switch per direction (`sfbridge org pause/resume`): paused
    # outbound holds pushes as pending; paused inbound stores events without taking them in.
    outbound_paused: Mapped[bool] = mapped_column(Boolean, default=False)
    inbound_paused: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Program(Base):
    __tablename__ = "programs"

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    org_connection_id: Mapped[int | None] = mapped_column(ROW_ID, ForeignKey("org_connections.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Member(Base):
    """A referring member of a program (the person who refers)."""

    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("program_id", "external_id"),
        UniqueConstraint("program_id", "referral_code"),
        Index("ix_members_program_email", "program_id", "email_key"),
    )

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    program_id: Mapped[int] = mapped_column(ROW_ID, ForeignKey("programs.id"))
    external_id: Mapped[str | None] = mapped_column(String(255))
    referral_code: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255), default="")
    email: Mapped[str | None] = mapped_column(String(255))
    email_key: Mapped[str | None] = mapped_column(String(255))  # normalized email
    phone: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str | None] = mapped_column(String(500))
    # custom member fields (`referral_add.member_fields` maps them to Salesforce fields)
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def fill_keys(self) -> None:
        """Recompute the normalized matching keys from the member's fields."""
        for column, value in member_keys(email=self.email).items():
            setattr(self, column, value)


def _id_indexes() -> list[Index]:
    """(program_id, external_id | sf_*_id) for the candidate pool's direct lookups, partial
    (NOT NULL): most referrals have no such id, and an index of only the ids has statistics
    that say what a lookup costs (a full one counts the NULLs as one huge group, and SQLite
    then preferred a full scan, or for the external id, which its unique index holds NULLs
    and all, a read of the whole program through ``ix_referrals_program``)."""
    out = []
    for name, column in (
        ("external", "external_id"),
        ("sf_lead", "sf_lead_id"),
        ("sf_contact", "sf_contact_id"),
        ("sf_account", "sf_account_id"),
        ("sf_opportunity", "sf_opportunity_id"),
    ):
        present = text(f"{column} IS NOT NULL")
        out.append(
            Index(
                f"ix_referrals_program_{name}",
                "program_id",
                column,
                sqlite_where=present,
                postgresql_where=present,
            )
        )
    return out


class Referral(Base):
    """A referred person; statuses pending → qualified → approved, or denied."""

    __tablename__ = "referrals"
    __table_args__ = (
        # The email alone (not program first): the API looks referrals up by email in every
        # program, and the pool's per-key ranking (row_number over email_key, id) reads it
        # in index order.
        Index("ix_referrals_email", "email_key"),
        Index("ix_referrals_program_name", "program_id", "name_key"),
        Index("ix_referrals_program_phone", "program_id", "phone_key"),
        Index("ix_referrals_program_name_block", "program_id", "name_block"),
        Index("ix_referrals_program_name_rblock", "program_id", "name_rblock"),
        Index("ix_referrals_program_name_ablock", "program_id", "name_ablock"),
        Index("ix_referrals_program_name_pblock", "program_id", "name_pblock"),
        *_id_indexes(),
        # The API's lists, newest first, by status or by program.
        Index("ix_referrals_status", "status"),
        Index("ix_referrals_program", "program_id"),
        # The routing sweep's due referrals.
        Index("ix_referrals_send_due", "send_due_at"),
    )

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(64), unique=True)  # written to Referral_ID__c
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    program_id: Mapped[int] = mapped_column(ROW_ID, ForeignKey("programs.id"))
    member_id: Mapped[int | None] = mapped_column(ROW_ID, ForeignKey("members.id"))
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(255))
    company: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(64))
    email_key: Mapped[str | None] = mapped_column(String(255))
    name_key: Mapped[str | None] = mapped_column(String(255))
    # Fuzzy-name blocking keys (bridge.matchkeys.name_blocks): the surname's Soundex,
    # reverse Soundex, first+last two letters and first three letters, each with ":" and the
    # first name's Soundex.
    name_block: Mapped[str | None] = mapped_column(String(16))
    name_rblock: Mapped[str | None] = mapped_column(String(16))
    name_ablock: Mapped[str | None] = mapped_column(String(16))
    name_pblock: Mapped[str | None] = mapped_column(String(16))
    company_key: Mapped[str | None] = mapped_column(String(255))
    phone_key: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    ever_qualified: Mapped[bool] = mapped_column(Boolean, default=False)
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)  # referral_fields from rules
    sf_lead_id: Mapped[str | None] = mapped_column(String(18))
    sf_contact_id: Mapped[str | None] = mapped_column(String(18))
    sf_account_id: Mapped[str | None] = mapped_column(String(18))
    sf_opportunity_id: Mapped[str | None] = mapped_column(String(18))
    # Lead routing (bridge.writeback.gate): the score the criteria judge, when it first met
    # the minimum, the conversation's close, the due time of a held referral add, and the
    # reps who touched the conversation (meeting booked on, last routed to, closed by).
    score: Mapped[float | None] = mapped_column(Float)
    qualified_at: Mapped[datetime | None] = mapped_column()
    conversation_closed_at: Mapped[datetime | None] = mapped_column()
    send_due_at: Mapped[datetime | None] = mapped_column()
    meeting_owner: Mapped[str | None] = mapped_column(String(255))
    routed_owner: Mapped[str | None] = mapped_column(String(255))
    closed_by: Mapped[str | None] = mapped_column(String(255))
    # The sales engagement (bridge.writeback.phases, .ownership): the lead phase (a name of
    # writeback.sales.phases) and the rep who owns the person, both kept in the field history.
    phase: Mapped[str | None] = mapped_column(String(64))
    owner: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    member: Mapped[Member | None] = relationship()
    history: Mapped[list[ReferralStatusChange]] = relationship(
        back_populates="referral", order_by="ReferralStatusChange.id"
    )

    def fill_keys(self) -> None:
        """Recompute the normalized matching keys from the person's fields."""
        for column, value in referral_keys(
            first_name=self.first_name,
            last_name=self.last_name,
            email=self.email,
            company=self.company,
            phone=self.phone,
        ).items():
            setattr(self, column, value)


class ReferralStatusChange(Base):
    __tablename__ = "referral_status_changes"

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    referral_id: Mapped[int] = mapped_column(ROW_ID, ForeignKey("referrals.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    entry_id: Mapped[int | None] = mapped_column(ROW_ID, ForeignKey("sales_entries.id"))
    actor: Mapped[str] = mapped_column(String(255), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    referral: Mapped[Referral] = relationship(back_populates="history")


class FieldChange(Base):
    """A referral's or member's field changed by two-way sync or a local edit, or a value that
    lost a `read_write` conflict (`outcome` lost): the field history of the referral."""

    __tablename__ = "field_changes"
    __table_args__ = (
        Index("ix_field_changes_referral", "referral_id", "field"),
        Index("ix_field_changes_member", "member_id", "field"),
    )

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    referral_id: Mapped[int | None] = mapped_column(ROW_ID, ForeignKey("referrals.id"))
    member_id: Mapped[int | None] = mapped_column(ROW_ID, ForeignKey("members.id"))
    field: Mapped[str] = mapped_column(String(128))  # local name: company, member.email
    source: Mapped[str] = mapped_column(String(16))  # local | salesforce
    outcome: Mapped[str] = mapped_column(String(16))  # applied | lost | refused
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    previous: Mapped[Any] = mapped_column(JSON, nullable=True)
    entry_id: Mapped[int | None] = mapped_column(ROW_ID, ForeignKey("sales_entries.id"))
    actor: Mapped[str] = mapped_column(String(255), default="system")
    at: Mapped[datetime] = mapped_column(default=utcnow)


class InboundEvent(Base):
    """One change captured from Salesforce, stored before the replay cursor moves.

    `change_key` (org + record + SystemModstamp, or the replay id for deletes) lets streaming
    and polling deliver the same change without it being processed twice.
    """

    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint("org_connection_id", "channel", "replay_id"),
        UniqueConstraint("org_connection_id", "change_key"),
        Index("ix_inbound_events_state", "state", "id"),
    )

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    org_connection_id: Mapped[int] = mapped_column(ROW_ID, ForeignKey("org_connections.id"))
    channel: Mapped[str] = mapped_column(String(255))
    replay_id: Mapped[int | None] = mapped_column(BigInteger)
    change_key: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))  # stream | poll | api
    sobject_type: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[str | None] = mapped_column(String(18))
    change_type: Mapped[str] = mapped_column(String(16))  # created | updated | deleted | undeleted
    event_created_at: Mapped[datetime | None] = mapped_column()
    payload: Mapped[dict[str, Any]] = mapped_column()
    # new | processing | done | skipped | failed
    state: Mapped[str] = mapped_column(String(16), default="new")
    reason: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set when the sweeper hands a still-new event to the queue again (so it waits before the next).
    queued_at: Mapped[datetime | None] = mapped_column()
    # A batch job claims events (state new -> processing) with a token; a claim older than the
    # claim timeout belongs to a dead worker and may be taken over.
    claimed_at: Mapped[datetime | None] = mapped_column()
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    processed_at: Mapped[datetime | None] = mapped_column()


class SyncCursor(Base):
    """Where a channel has got to: a replay id for streaming, a modstamp for polling.

    Pub/Sub API replay ids are opaque bytes (`replay_bytes`); CometD's are numbers."""

    __tablename__ = "sync_cursors"

    org_connection_id: Mapped[int] = mapped_column(
        ROW_ID, ForeignKey("org_connections.id"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(255), primary_key=True)
    replay_id: Mapped[int | None] = mapped_column(BigInteger)
    replay_bytes: Mapped[bytes | None] = mapped_column(LargeBinary)
    modstamp: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SalesEntry(Base):
    """A Salesforce change turned into a sales entry, with its explanation."""

    __tablename__ = "sales_entries"
    __table_args__ = (
        Index("ix_sales_entries_outcome", "outcome", "id"),
        Index("ix_sales_entries_created", "created_at"),
        # The previous entry of the same record (the receiver's "before" for changed_to).
        Index("ix_sales_entries_record", "record_id", "sobject_type", "id"),
        # The API's entry list by object, newest first.
        Index("ix_sales_entries_sobject", "sobject_type"),
    )

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    org_connection_id: Mapped[int | None] = mapped_column(ROW_ID, ForeignKey("org_connections.id"))
    program_id: Mapped[int | None] = mapped_column(ROW_ID, ForeignKey("programs.id"))
    inbound_event_id: Mapped[int | None] = mapped_column(
        ROW_ID, ForeignKey("inbound_events.id"), unique=True
    )
    source: Mapped[str] = mapped_column(String(16))  # stream | poll | api
    sobject_type: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[str | None] = mapped_column(String(18))
    change_type: Mapped[str] = mapped_column(String(16))
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    records: Mapped[dict[str, Any]] = mapped_column(default=dict)  # Object -> record or null
    previous: Mapped[dict[str, Any]] = mapped_column(default=dict)  # prior values, for changed_to
    candidates: Mapped[list[Any]] = mapped_column(default=list)
    decision: Mapped[dict[str, Any]] = mapped_column(default=dict)
    outcome: Mapped[str] = mapped_column(String(16), default="new")
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[str | None] = mapped_column(Text)
    referral_id: Mapped[int | None] = mapped_column(ROW_ID, ForeignKey("referrals.id"), index=True)
    member_id: Mapped[int | None] = mapped_column(ROW_ID, ForeignKey("members.id"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column()
    decided_by: Mapped[str | None] = mapped_column(String(255))  # rules | user email
    # Review notification (sent after the commit that put the entry in review).
    notify_state: Mapped[str | None] = mapped_column(String(16))  # pending | sent | failed
    notify_error: Mapped[str | None] = mapped_column(Text)
    notified_at: Mapped[datetime | None] = mapped_column()


class Push(Base):
    """One write to Salesforce (referral, activity, field update, sale, demo), saved before it
    is sent."""

    __tablename__ = "pushes"
    __table_args__ = (
        Index("ix_pushes_state", "state", "id"),
        Index("ix_pushes_org_state", "org_connection_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    org_connection_id: Mapped[int | None] = mapped_column(ROW_ID, ForeignKey("org_connections.id"))
    kind: Mapped[str] = mapped_column(String(32))  # vocabulary.PUSH_KINDS
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    sobject_type: Mapped[str] = mapped_column(String(64))
    external_id_field: Mapped[str | None] = mapped_column(String(128))
    external_id: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sent|failed|skipped
    sf_id: Mapped[str | None] = mapped_column(String(18))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_fields: Mapped[list[Any]] = mapped_column(default=list)
    # usage | transient | permanent: who can fix the error (transient ones are retried)
    error_class: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    referral_id: Mapped[int | None] = mapped_column(ROW_ID, ForeignKey("referrals.id"))
    # The drain's claim: a push claimed until a time in the future is being sent (or waits
    # for its retry) and no other drain takes it; an expired claim is free again.
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()


class _SalesEvent:
    """What a sale and a demo share: a client's event about a referral, saved once per client
    id and org (the same id with another body is a conflict), sent as one push."""

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    org_connection_id: Mapped[int] = mapped_column(ROW_ID, ForeignKey("org_connections.id"))
    client_id: Mapped[str] = mapped_column(String(100))
    referral_id: Mapped[int] = mapped_column(ROW_ID, ForeignKey("referrals.id"), index=True)
    digest: Mapped[str] = mapped_column(String(64))  # of the validated body
    body: Mapped[dict[str, Any]] = mapped_column(default=dict)
    push_id: Mapped[int | None] = mapped_column(ROW_ID, ForeignKey("pushes.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Sale(_SalesEvent, Base):
    """A sale a rep made for a referral (`POST /sales`): its items become line items."""

    __tablename__ = "sales"
    __table_args__ = (UniqueConstraint("org_connection_id", "client_id"),)

    closed_at: Mapped[datetime] = mapped_column()


class Demo(_SalesEvent, Base):
    """A demo set, rescheduled or cancelled for a referral (`POST /demos`)."""

    __tablename__ = "demos"
    __table_args__ = (UniqueConstraint("org_connection_id", "client_id"),)

    state: Mapped[str] = mapped_column(String(16))  # set | rescheduled | cancelled
    scheduled_at: Mapped[datetime] = mapped_column()


class PushAttempt(Base):
    """One send of a push and what came of it: the history a repush keeps."""

    __tablename__ = "push_attempts"
    __table_args__ = (Index("ix_push_attempts_push", "push_id", "id"),)

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    push_id: Mapped[int] = mapped_column(ROW_ID, ForeignKey("pushes.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # the push's state after this send
    sf_id: Mapped[str | None] = mapped_column(String(18))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_class: Mapped[str | None] = mapped_column(String(16))
    via: Mapped[str] = mapped_column(String(16), default="collections")  # or bulk
    at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # reviewer | admin
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_login_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A bearer token for the JSON API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    user_id: Mapped[int] = mapped_column(ROW_ID, ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()  # None: until revoked


class WebSession(Base):
    """A signed-in browser session. The cookie carries a random session id; only its SHA-256 is
    stored, so a copy of this table signs nobody in. Ended sessions stay as the record."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    id_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ROW_ID, ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()  # the absolute lifetime
    ended_at: Mapped[datetime | None] = mapped_column()
    # signed_out | idle | expired | ended_by_admin | deactivated | password_changed | ...
    end_reason: Mapped[str | None] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(String(64))


class SignInThrottle(Base):
    """Sign-in attempts per account, client address or device (bridge.web.throttle): each
    attempt is taken with a compare-and-set on `attempts`, so parallel guesses cannot share one."""

    __tablename__ = "sign_in_throttles"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)  # kind:value
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[datetime] = mapped_column(default=utcnow)
    not_before: Mapped[datetime | None] = mapped_column()  # the next attempt waits until then


class UserMapping(Base):
    """The last resolution of one rep of the config's `users:` to a Salesforce user, per org
    (bridge.writeback.users): for the admin page and the ownership syncs."""

    __tablename__ = "user_mappings"
    __table_args__ = (UniqueConstraint("org_connection_id", "rep", name="uq_user_mappings_rep"),)

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    org_connection_id: Mapped[int] = mapped_column(ROW_ID, ForeignKey("org_connections.id"))
    rep: Mapped[str] = mapped_column(String(255))
    salesforce_user_id: Mapped[str | None] = mapped_column(String(18))  # None: see problem
    problem: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


def overlong_values(model: type[Base], values: dict[str, Any]) -> list[str]:
    """What in `values` is longer than its column of `model` holds, in words (empty: it fits)."""
    columns = model.__table__.columns
    out = []
    for name, value in values.items():
        length = getattr(columns[name].type, "length", None) if name in columns else None
        if isinstance(value, str) and length and len(value) > length:
            out.append(f"{name} has {len(value)} characters, {length} fit")
    return out


# Every ORM write of a referral or member keeps its matching keys in step with its fields, so
# nothing that creates referrals can forget them. (Bulk Core inserts call referral_keys().)
@event.listens_for(Referral, "before_insert")
@event.listens_for(Member, "before_insert")
def _fill_keys(_mapper: Any, _connection: Any, target: Referral | Member) -> None:
    target.fill_keys()


_KEYED_BY = {
    Referral: ("first_name", "last_name", "email", "company", "phone"),
    Member: ("email",),
}
"""The fields each model's matching keys are made of."""


def refill_keys(target: Referral | Member) -> None:
    """Recompute the matching keys of a changed referral or member before it is written, only
    when a field they are made of changed (a status change or a link-back, most updates,
    leaves them as they are)."""
    # Each attribute's history alone (`inspect(target).attrs` builds a view of them all),
    # without loading one that is not loaded.
    keyed_by = _KEYED_BY[type(target)]
    if any(get_history(target, n, PASSIVE_NO_INITIALIZE).has_changes() for n in keyed_by):
        target.fill_keys()


@event.listens_for(Referral, "before_update")
@event.listens_for(Member, "before_update")
def _refill_keys(_mapper: Any, _connection: Any, target: Referral | Member) -> None:
    refill_keys(target)
