"""The domain's fixed lists, each spelled once here and used by config, API, OpenAPI, UI,
receiver, writeback and streaming alike.

Each list is a ``Literal`` type (for pydantic models and mypy) with its values as a tuple
(``get_args``) for membership checks, choices and enums; single values are named by unpacking
the tuple, so no value is written twice. A leaf module: it imports nothing of the bridge.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

# ---- Salesforce ------------------------------------------------------------------------------

StreamedObject = Literal["Lead", "Contact", "Account", "Opportunity"]
STREAMED_OBJECTS: tuple[StreamedObject, ...] = get_args(StreamedObject)

#: What the bridge writes to Salesforce (static values can be set on each).
WrittenObject = Literal["Lead", "Contact", "Account", "Opportunity", "Task", "Event"]
"""The objects whose changes become sales entries (SPEC §1), in the order shown to users."""

LEAD, CONTACT, ACCOUNT, OPPORTUNITY = STREAMED_OBJECTS

KEY_PREFIXES: dict[str, StreamedObject] = {
    "00Q": LEAD,
    "003": CONTACT,
    "001": ACCOUNT,
    "006": OPPORTUNITY,
}
"""Salesforce id key prefixes of the streamed objects (a PushTopic event does not name its
object; the record id does)."""

RECORD_ID_PATTERN: Final = r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$"
"""A Salesforce record id: 15 characters (case-sensitive) or 18 (with the checksum suffix)."""

FIELD_NAME_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9_]{0,79}$"
"""A Salesforce field's API name (custom ones end in ``__c``; at most 80 characters)."""

EMAIL_PATTERN: Final = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-][A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]*"
    r"@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
)
"""An email address as Salesforce accepts it in Email fields and usernames (Knowledge Article
000001145): the local part of letters, digits and ``!#$%&'*/=?^_+-`{|}~.`` not starting with a
dot (consecutive and trailing dots are allowed); the domain of letters, digits and dashes in
dot-separated labels."""

MIN_API_VERSION: Final = "42.0"
"""The oldest Salesforce API version the bridge works with: its writes use sObject Collections
(API 42.0 and later); Salesforce has retired 30.0 and below (Knowledge Article 000354473)."""

EMAIL_MAX_LENGTH: Final = 80
"""Salesforce's Email fields (Lead.Email, Contact.Email) hold at most 80 characters."""

TOPIC_NAMES: dict[StreamedObject, str] = {obj: f"SFB_{obj}" for obj in STREAMED_OBJECTS}
"""The PushTopic the bridge creates for each streamed object (names are at most 25 chars)."""

ChangeType = Literal["created", "updated", "deleted", "undeleted"]
CHANGE_TYPES: tuple[ChangeType, ...] = get_args(ChangeType)
"""PushTopic event types; CDC change types are mapped onto them."""

EntrySource = Literal["stream", "poll", "api"]
ENTRY_SOURCES: tuple[EntrySource, ...] = get_args(EntrySource)
"""How a change reached the bridge: streaming, SystemModstamp polling, or the JSON API."""


class ReplayFrom:
    """The replay presets of the Streaming and Pub/Sub APIs (any other value is a replay id)."""

    NEW_EVENTS: Final = -1
    """Only events published after the subscription."""
    ALL_RETAINED: Final = -2
    """Every event still in the retention window (24 hours for PushTopics, 3 days for CDC)."""


# ---- referrals and entries -------------------------------------------------------------------

ReferralStatus = Literal["pending", "qualified", "approved", "denied"]
REFERRAL_STATUSES: tuple[ReferralStatus, ...] = get_args(ReferralStatus)
"""SPEC §7: ``approved`` is terminal; ``denied`` ↔ ``pending`` may go back and forth."""

PENDING, QUALIFIED, APPROVED, DENIED = REFERRAL_STATUSES
QUALIFYING: frozenset[ReferralStatus] = frozenset({QUALIFIED, APPROVED})
"""Statuses that count as qualified (approved implies qualification)."""

RuleOp = Literal["equals", "not_equals", "in", "is_blank", "changed_to"]
RULE_OPS: tuple[RuleOp, ...] = get_args(RuleOp)
"""Status rule operators (SPEC §7.1)."""

EntryOutcome = Literal["review", "failed", "processed", "skipped", "new"]
ENTRY_OUTCOMES: tuple[EntryOutcome, ...] = get_args(EntryOutcome)
"""A sales entry's outcome, in the order of the review queue's tabs; ``new``: stored, not yet
decided."""

REVIEW, FAILED, PROCESSED, SKIPPED, NEW = ENTRY_OUTCOMES
OPEN_OUTCOMES: tuple[EntryOutcome, ...] = (REVIEW, FAILED)
"""Outcomes a person can still act on: approve, reject, edit fields, retry."""

NotifyState = Literal["pending", "sent", "failed"]
NOTIFY_STATES: tuple[NotifyState, ...] = get_args(NotifyState)
"""Of a review notification (sent after the commit that put the entry in review)."""

# ---- writeback -------------------------------------------------------------------------------

PushKind = Literal["referral", "activity", "field_update", "sale", "demo"]
PUSH_KINDS: tuple[PushKind, ...] = get_args(PushKind)

SalesKind = Literal["sale", "demo"]
SALES_KINDS: tuple[SalesKind, ...] = get_args(SalesKind)
"""Sales-engagement events: each is a push that connects or creates the Account and Contact
and writes the Opportunity (bridge.writeback.sales)."""

DemoState = Literal["set", "rescheduled", "cancelled"]
DEMO_STATES: tuple[DemoState, ...] = get_args(DemoState)

SyncTrigger = Literal["create_update", "demo_set", "sale"]
SYNC_TRIGGERS: tuple[SyncTrigger, ...] = get_args(SyncTrigger)
"""The events that send a field mapping (Sellfire's three): a referral's create or update, a
demo set, a sale."""

PushState = Literal["pending", "sent", "failed", "skipped"]
PUSH_STATES: tuple[PushState, ...] = get_args(PushState)
"""pending → sent | failed | skipped (see bridge.writeback.pushes)."""

REPUSHABLE: tuple[PushState, ...] = ("failed", "skipped")
"""Push states a user may send again; pending is already queued and sent is done."""

ActivityKind = Literal["email", "call", "linkedin_message", "linkedin_connection", "meeting"]
ACTIVITY_KINDS: tuple[ActivityKind, ...] = get_args(ActivityKind)

ReadSyncRule = Literal["read_only", "read_write", "salesforce_unless_blank"]
READ_SYNC_RULES: tuple[ReadSyncRule, ...] = get_args(ReadSyncRule)
"""Sync rules under which the bridge reads the Salesforce value."""

SyncRule = Literal[ReadSyncRule, "ours", "none"]
SYNC_RULES: tuple[SyncRule, ...] = get_args(SyncRule)
"""Per field mapping: who owns the value (SPEC §9)."""

SyncStrategy = Literal["override", "if_empty"]
SYNC_STRATEGIES: tuple[SyncStrategy, ...] = get_args(SyncStrategy)

SyncMode = Literal["create_update", "update_only", "disabled"]
SYNC_MODES: tuple[SyncMode, ...] = get_args(SyncMode)
"""Per object: create and update, only update existing records, or write nothing."""

# ---- people and tokens -----------------------------------------------------------------------

Role = Literal["reviewer", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)

REVIEWER, ADMIN = ROLES

Scope = Literal[
    "entries:read",
    "entries:write",
    "referrals:read",
    "referrals:write",
    "activities:write",
    "sales:write",
    "pushes:read",
    "pushes:write",
    "metrics:read",
]
SCOPES: tuple[Scope, ...] = get_args(Scope)
"""Every scope an API token can carry; ``*:write`` does not imply ``*:read``."""

SCOPE_WORDS: dict[Scope, str] = {
    "entries:read": "read sales entries and their decisions",
    "entries:write": "send sales entries (a Flow, a poller) and decide or retry them",
    "referrals:read": "read referrals, members and their status history",
    "referrals:write": "create and edit referrals (a referral platform)",
    "activities:write": "send activities to log on Salesforce records",
    "pushes:read": "read the writes to Salesforce and their attempts",
    "pushes:write": "repush failed writes (admins only)",
    "metrics:read": "scrape /metrics",
}
"""What each scope lets a token do, in words for the token page."""

ADMIN_SCOPES: frozenset[Scope] = frozenset({"pushes:write"})
"""Scopes only an admin's token may carry (the UI keeps the same actions to admins)."""

AuthMethod = Literal["jwt", "web"]
AUTH_METHODS: tuple[AuthMethod, ...] = get_args(AuthMethod)
"""How an org connection logs in: JWT bearer flow, or the web-server flow's refresh token."""
