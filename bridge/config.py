"""Settings from the environment (SFBRIDGE_*) and the YAML config file (SPEC §9), validated once.

`load_config(path)` returns a typed `BridgeConfig` or raises `ConfigError` listing every
problem as ``file:line: key: what was found; what is allowed``.

Longer than most modules on purpose: the model and the loader that turns its validation
errors into file/line/key messages change together whenever a key is added.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bridge import defaults
from bridge.errors import ConfigError
from bridge.routingconfig import RepUser, Routing, check_fallbacks
from bridge.sitesconfig import Sites
from bridge.values import covers
from bridge.vocabulary import (
    EMAIL_PATTERN,
    MIN_API_VERSION,
    STREAMED_OBJECTS,
    SYNC_TRIGGERS,
    TOPIC_NAMES,
    ActivityKind,
    ReferralStatus,
    RuleOp,
    StreamedObject,
    SyncMode,
    SyncRule,
    SyncStrategy,
    SyncTrigger,
    WrittenObject,
)
from bridge.yamlguard import hostile

# --------------------------------------------------------------------------------------------
# Settings (environment)
# --------------------------------------------------------------------------------------------

DEFAULT_INSTANCE_DIR = "instance"


DATABASE_FILE = "sfbridge.db"


def instance_candidates(cwd: Path, config_path: str | None) -> list[Path]:
    """Where an existing instance is looked for when SFBRIDGE_INSTANCE_DIR is not set, in
    order: the folder of SFBRIDGE_CONFIG (the demo keeps its config in the instance) and the
    `instance/` beside it, then `instance/` in the current folder and each parent folder."""
    found: list[Path] = []
    if config_path:
        folder = Path(config_path).resolve().parent
        found += [folder, folder / DEFAULT_INSTANCE_DIR]
    found += [folder / DEFAULT_INSTANCE_DIR for folder in (cwd, *cwd.parents)]
    return found


def find_instance_dir(cwd: Path, config_path: str | None = None) -> Path:
    """The first of `instance_candidates` that holds a database, else `<cwd>/instance` (where
    `sfbridge db upgrade` or `sfbridge demo` creates one)."""
    for folder in instance_candidates(cwd, config_path):
        if (folder / DATABASE_FILE).is_file():
            return folder
    return cwd / DEFAULT_INSTANCE_DIR


@dataclass(frozen=True)
class Settings:
    """Process settings read from SFBRIDGE_* environment variables."""

    database_url: str
    redis_url: str | None  # None: start the embedded Redis
    config_path: str | None
    secret_key: str
    encryption_keys: tuple[str, ...]
    instance_dir: str = DEFAULT_INSTANCE_DIR
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        instance_dir = env.get("SFBRIDGE_INSTANCE_DIR") or str(
            find_instance_dir(Path.cwd(), env.get("SFBRIDGE_CONFIG"))
        )
        database_url = env.get("SFBRIDGE_DATABASE_URL") or (
            f"sqlite:///{Path(instance_dir).resolve() / DATABASE_FILE}"
        )
        keys = tuple(
            k.strip() for k in env.get("SFBRIDGE_ENCRYPTION_KEYS", "").split(",") if k.strip()
        )
        return cls(
            database_url=database_url,
            redis_url=env.get("SFBRIDGE_REDIS_URL") or None,
            config_path=env.get("SFBRIDGE_CONFIG") or None,
            secret_key=env.get("SFBRIDGE_SECRET_KEY", ""),
            encryption_keys=keys,
            instance_dir=instance_dir,
        )


# --------------------------------------------------------------------------------------------
# The YAML config model
# --------------------------------------------------------------------------------------------

_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@functools.lru_cache(maxsize=1024)
def parse_field_ref(value: str) -> tuple[str, str]:
    """Split ``Object.Field``; relationship paths (``Contact.Account.Name``) are refused."""
    parts = value.split(".")
    if len(parts) != 2 or not all(_IDENT.match(p) for p in parts):
        if len(parts) > 2:
            raise ValueError(
                f"'{value}' is a relationship path; name the related object directly, "
                f"e.g. '{parts[-2]}.{parts[-1]}' (related records follow the relational rules)"
            )
        raise ValueError(f"'{value}' is not of the form Object.Field")
    if parts[0] not in STREAMED_OBJECTS:
        raise ValueError(
            f"unknown object '{parts[0]}' in '{value}'; allowed: {', '.join(STREAMED_OBJECTS)}"
        )
    return parts[0], parts[1]


def _check_ref(value: str) -> str:
    parse_field_ref(value)
    return value


# Validated per item, so every bad reference is reported at its own key and line.
FieldRef = Annotated[
    str, AfterValidator(_check_ref), Field(description="Object.Field, e.g. Lead.Email")
]


class StatusRule(_Model):
    status: ReferralStatus
    object: StreamedObject
    field: str
    op: RuleOp
    value: Any = None

    @field_validator("field")
    @classmethod
    def _field_name(cls, v: str) -> str:
        if "." in v:
            obj, _, rest = v.rpartition(".")
            raise ValueError(
                f"'{v}' is a path; name a field of the rule's object only. For a field of a "
                f"related record, set the rule's object to it (e.g. object: {obj.split('.')[-1]}, "
                f"field: {rest}); related records follow the relational rules"
            )
        if not _IDENT.match(v):
            raise ValueError(f"'{v}' is not a valid field name")
        return v

    @model_validator(mode="after")
    def _value_fits_op(self) -> StatusRule:
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError("op 'in' needs a list value, e.g. value: [Won, Closed Won]")
        if self.op == "is_blank" and self.value not in (None, True, False):
            raise ValueError("op 'is_blank' takes no value (or true/false)")
        if self.op in ("equals", "not_equals", "changed_to") and (
            self.value is None or isinstance(self.value, (list, dict))
        ):
            raise ValueError(f"op '{self.op}' needs a single value")
        return self


class TargetMatch(_Model):
    direct_fields: list[FieldRef] = Field(
        default_factory=lambda: ["Lead.Referral_ID__c", "Contact.Referral_ID__c"]
    )
    fuzzy: bool = True
    fuzzy_threshold: float = Field(default=0.85, ge=0.5, le=1.0)


class MemberMatch(_Model):
    referral_code: list[FieldRef] = Field(
        default_factory=lambda: ["Lead.Referral_Code__c", "Contact.Referral_Code__c"]
    )
    member_email: list[FieldRef] = Field(
        default_factory=lambda: [
            "Lead.Referring_Member_Email__c",
            "Contact.Referring_Member_Email__c",
        ]
    )
    member_external_id: list[FieldRef] = Field(
        default_factory=lambda: [
            "Lead.Referring_Member_External_ID__c",
            "Contact.Referring_Member_External_ID__c",
        ]
    )


class Webhook(_Model):
    url: str
    secret_env: str = "SFBRIDGE_WEBHOOK_SECRET"  # noqa: S105 - the name of an env var

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://", v):
            raise ValueError(f"'{v}' is not an http(s) URL")
        return v


class NotifyOnReview(_Model):
    email: list[str] = Field(default_factory=list)
    webhook: Webhook | None = None

    @field_validator("email")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        for addr in v:
            if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", addr):
                raise ValueError(f"'{addr}' is not an email address")
        return v


class ProcessRules(_Model):
    auto_process_direct: bool = True
    auto_process_fuzzy: bool = True
    review_when_no_member: bool = True
    review_denied_upgrade: bool = True
    notify_on_review: NotifyOnReview | None = None


class Receiver(_Model):
    program: str
    status_rules: list[StatusRule] = Field(default_factory=list)
    override_denied: bool = False
    referral_fields: dict[str, FieldRef] = Field(default_factory=dict)
    target_match: TargetMatch = Field(default_factory=TargetMatch)
    member_match: MemberMatch = Field(default_factory=MemberMatch)
    contact_matching: Literal["trigger_record", "trigger_and_account_contacts"] = "trigger_record"
    process: ProcessRules = Field(default_factory=ProcessRules)

    @field_validator("referral_fields")
    @classmethod
    def _refs(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not _IDENT.match(key):
                raise ValueError(f"'{key}' is not a valid referral field name")
        return v

    @model_validator(mode="after")
    def _no_contradictions(self) -> Receiver:
        # The first matching rule decides, so a later rule whose every match is already taken
        # by an earlier rule with another status can never apply: the config contradicts itself.
        # (Same-status shadowing is only dead weight: `receiver.configcheck` reports it.)
        for i, later in enumerate(self.status_rules):
            for j, earlier in enumerate(self.status_rules[:i]):
                if earlier.status != later.status and covers(earlier, later):
                    raise ValueError(
                        f"status_rules[{i}]: contradicts status_rules[{j}]: every record with "
                        f"{_condition(later)} already matches {_condition(earlier)}, which "
                        f"gives '{earlier.status}', so this rule's '{later.status}' can never "
                        "apply; remove one rule or make their conditions differ"
                    )
        return self


def _condition(rule: StatusRule) -> str:
    value = "" if rule.op == "is_blank" else f" {rule.value!r}"
    return f"{rule.object}.{rule.field} {rule.op}{value}"


class ReferralAdd(_Model):
    create_as: Literal["Lead", "Contact"] = "Lead"
    # overwrite_leads (Signals' "overwrite"): an existing Lead with the email is updated with
    # every referral field, identity fields included; a Contact with it is never written.
    on_existing_email: Literal["update", "skip", "deny", "overwrite_leads"] = "update"
    # member attribute or custom member field -> Salesforce field
    member_fields: dict[str, str] = Field(default_factory=dict)
    # referral attribute or custom referral field (`fields`) -> Salesforce field
    field_mappings: dict[str, str] = Field(default_factory=dict)


class ActivityMapping(_Model):
    enabled: bool = True  # false: activities of this kind are not written (skipped)
    object: Literal["Task", "Event"] = "Task"
    static: dict[str, Any] = Field(default_factory=dict)  # e.g. {Type: Call, Status: Completed}
    subject_prefix: str | None = None  # e.g. "[LinkedIn] "; None: the kind's default prefix


class Activities(_Model):
    lead_resolution: Literal["email", "none"] = "email"
    kinds: dict[ActivityKind, ActivityMapping] = Field(default_factory=dict)


_LOCAL_NAME = re.compile(r"^(member\.|sale\.)?[A-Za-z_][A-Za-z0-9_]*$")
_MEMBER_ATTRIBUTES = ("name", "email", "phone", "url", "external_id", "referral_code")
_NOT_SYNCED = ("id", "public_id", "status", "program_id", "member_id", "created_at", "updated_at")


class FieldMapping(_Model):
    local: str
    salesforce: list[str] = Field(min_length=1)
    sync: SyncRule = "read_only"
    strategy: SyncStrategy = "override"
    # The events that send it (Sellfire's sync triggers): all three unless narrowed, e.g.
    # `on: [sale]` for a field written only when a sale is made.
    on: list[SyncTrigger] = Field(default_factory=lambda: list(SYNC_TRIGGERS), min_length=1)

    @model_validator(mode="after")
    def _sale_values_at_sale(self) -> FieldMapping:
        if self.local.startswith("sale.") and (self.on != ["sale"] or self.sync != "ours"):
            raise ValueError(
                f"'{self.local}' is a value of a sale: map it with sync: ours and on: [sale]"
            )
        return self

    @field_validator("local")
    @classmethod
    def _local_name(cls, v: str) -> str:
        if not _LOCAL_NAME.match(v):
            raise ValueError(
                f"'{v}' is not a local field: a referral attribute or fields key (company, "
                "plan), member.<attribute> or sale.<attribute>"
            )
        if v in _NOT_SYNCED:
            raise ValueError(f"'{v}' is kept by the bridge itself and cannot be synced")
        if v.startswith("member.") and v[len("member.") :] not in _MEMBER_ATTRIBUTES:
            raise ValueError(
                f"'{v}': a member has no such attribute (one of {', '.join(_MEMBER_ATTRIBUTES)})"
            )
        return v

    @field_validator("salesforce", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("salesforce")
    @classmethod
    def _plain_fields(cls, v: list[str]) -> list[str]:
        for name in v:
            if "." in name:
                raise ValueError(f"'{name}' is a path; name a field of this object only")
            if not _IDENT.match(name):
                raise ValueError(f"'{name}' is not a valid field name")
        return v


class ObjectSync(_Model):
    sync_mode: SyncMode = "create_update"
    dedupe: Literal["email", "root_domain", "none"] = "none"
    fields: list[FieldMapping] = Field(default_factory=list)


SELLFIRE_PHASES = (
    "ColdCallCold", "ColdCallWorkingNum", "ColdCallNDM", "ColdCallDM", "HeldPhase",
    "PostInitialHelPhaseDemoNotHeld", "PostHoldPhase", "RestingColdCall", "LongRestingColdCall",
    "Resting", "LongResting", "RetiredColdCall", "Retired", "Customer",
)  # fmt: skip
"""Sellfire's lead phases: the default local phase names (each sent as itself)."""


PhaseObject = Literal["Lead", "Contact"]


def _phase_fields() -> dict[PhaseObject, str]:
    return {"Lead": "Sales_Phase__c", "Contact": "Sales_Phase__c"}


class Phases(_Model):
    """Lead phases to a picklist on Lead/Contact and back (`writeback.sales.phases`,
    `bridge.writeback.phases`). `names` is a list (each phase is its own picklist value) or a
    map local phase -> picklist value."""

    field: dict[PhaseObject, str] = Field(default_factory=_phase_fields, min_length=1)
    names: dict[str, str] = Field(default_factory=lambda: {p: p for p in SELLFIRE_PHASES})
    # a Salesforce change of the picklist is taken only when it moves to one of these
    inbound: list[str] = Field(
        default_factory=lambda: ["ColdCallCold", "Resting", "LongResting", "Retired", "Customer"]
    )
    # moving into one of these ends the sales cycle: the next sale gets a new Opportunity
    end_cycle: list[str] = Field(
        default_factory=lambda: [
            "RestingColdCall",
            "LongRestingColdCall",
            "Resting",
            "LongResting",
            "RetiredColdCall",
            "Retired",
        ]  # fmt: skip
    )

    @field_validator("names", mode="before")
    @classmethod
    def _list_or_map(cls, v: Any) -> Any:
        return {str(p): str(p) for p in v} if isinstance(v, list) else v

    @field_validator("names")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("name at least one phase")
        for phase, value in v.items():
            if not phase.strip() or not str(value).strip():
                raise ValueError("a phase and its picklist value cannot be blank")
            if len(value) > 255:
                raise ValueError(f"picklist value '{value[:40]}...' is longer than 255")
        values = list(v.values())
        twice = sorted({x for x in values if values.count(x) > 1})
        if twice:
            raise ValueError(f"picklist value(s) {', '.join(twice)} name more than one phase")
        return v

    @field_validator("field")
    @classmethod
    def _fields(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v.values():
            if not _IDENT.match(name):
                raise ValueError(f"'{name}' is not a valid field name")
        return v

    @model_validator(mode="after")
    def _known_phases(self) -> Phases:
        for key in ("inbound", "end_cycle"):
            unknown = [p for p in getattr(self, key) if p not in self.names]
            if unknown:
                raise ValueError(
                    f"{key}: {', '.join(unknown)} not among the phase names "
                    f"({', '.join(self.names)})"
                )
        return self


class Sales(_Model):
    """Sales-engagement events (`POST /sales`, `POST /demos`) to Account, Contact, Opportunity
    and line items (docs/writeback.md, "Sales and demos")."""

    phone_region: str = Field(default="US", pattern=r"^[A-Z]{2}$")  # for phones without +code
    opportunity_at_demo: bool = False  # a demo set creates the Opportunity
    demo_stage: str = Field(default="Qualification", min_length=1)
    won_stage: str = Field(default="Closed Won", min_length=1)
    create_price_entries: bool = False  # a product without a standard price gets one
    convert_leads: bool = True  # at demo set, a person known only as a Lead is converted
    converted_status: str = Field(default="Closed - Converted", min_length=1)
    # A sale's location list as custom object records (multi-site sync); None: not written.
    sites: Sites | None = None
    phases: Phases | None = None  # phase sync, off unless given (`phases: {}`: the defaults)


class Writeback(_Model):
    referral_add: ReferralAdd = Field(default_factory=ReferralAdd)
    activities: Activities = Field(default_factory=Activities)
    sales: Sales = Field(default_factory=Sales)
    objects: dict[StreamedObject, ObjectSync] = Field(default_factory=dict)
    # Writes of one object and operation in one drain above this many go through Bulk API 2.0
    # instead of sObject Collections (a backfill, an import, a large sync).
    bulk_threshold: int = Field(default=2000, ge=1)
    # Values written on every write of the object (Rox's "Source = Rox"); what the write itself
    # carries wins, a repush's field overrides win over both.
    static: dict[WrittenObject, dict[str, Any]] = Field(default_factory=dict)
    # After a fuzzy, member or reviewer match, write the referral's id and member fields onto
    # the Salesforce record, so its next change matches directly.
    link_back: bool = True

    @model_validator(mode="after")
    def _dedupe_fits_object(self) -> Writeback:
        for name, spec in self.objects.items():
            if spec.dedupe == "root_domain" and name != "Account":
                raise ValueError(f"objects.{name}: dedupe 'root_domain' applies to Account only")
            if spec.dedupe == "email" and name not in ("Contact", "Lead"):
                raise ValueError(f"objects.{name}: dedupe 'email' applies to Contact or Lead only")
        return self


class Program(_Model):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str
    # The program's own referral-add settings, over the org's `writeback.referral_add`: only
    # the keys given here differ.
    referral_add: dict[str, Any] | None = None

    @field_validator("referral_add")
    @classmethod
    def _valid_referral_add(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            ReferralAdd.model_validate(v)
        return v


_PUBSUB_TOPIC = re.compile(r"^/(data|event)/[A-Za-z][A-Za-z0-9_]{0,79}$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$")


class Streaming(_Model):
    # cometd: PushTopics (and CDC with `cdc: true`) over the Streaming API; pubsub: Change Data
    # Capture over the Pub/Sub API (gRPC), on `pubsub_topics` (docs/inbound.md).
    transport: Literal["cometd", "pubsub"] = "cometd"
    topics: list[str] = Field(default_factory=lambda: list(TOPIC_NAMES.values()))
    cdc: bool = False
    pubsub_endpoint: str = "api.pubsub.salesforce.com:7443"
    pubsub_topics: list[str] = Field(
        default_factory=lambda: [f"/data/{o}ChangeEvent" for o in STREAMED_OBJECTS]
    )

    @field_validator("pubsub_endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not _HOST_PORT.match(v):
            raise ValueError(
                f"'{v}' is not host:port (Salesforce's is api.pubsub.salesforce.com:7443)"
            )
        return v

    @field_validator("pubsub_topics")
    @classmethod
    def _pubsub_topics(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("list at least one topic, e.g. /data/LeadChangeEvent")
        for topic in v:
            if not _PUBSUB_TOPIC.match(topic):
                raise ValueError(
                    f"'{topic}' is not a Pub/Sub topic: /data/<Object>ChangeEvent, "
                    "/data/ChangeEvents, a custom /data/<Name>__chn channel or /event/<Name>__e"
                )
        return v

    @field_validator("topics")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            if len(name) > 25 or not _IDENT.match(name):
                raise ValueError(
                    f"'{name}' is not a valid PushTopic name (letters, digits, _; ≤ 25)"
                )
        return v


class Polling(_Model):
    # The safety-net poll `sfbridge stream` runs beside the stream, every `every` seconds over
    # every streamed object: changes that never stream (Bulk API writes reach no PushTopic,
    # cascade deletes none) are read by SystemModstamp and deduplicated by change_key.
    safety_net: bool = True
    every: int = Field(default=300, ge=5, le=86400)  # seconds between polls: 5 s to a day
    overlap_seconds: int = Field(default=300, ge=0, le=86400)
    # Sforce-Query-Options batchSize: Salesforce accepts 200 to 2,000 records per page.
    page_size: int = Field(default=200, ge=200, le=2000)


class ApiBudget(_Model):
    """`api_budget:` above `share` of the daily API allocation, work that can wait (polling,
    backfill) runs `slow_factor` times less often; streaming and user writes go on."""

    share: float = Field(default=0.8, gt=0, le=1)
    slow_factor: int = Field(default=10, ge=1, le=1000)
    #: where the admins are told when the share is crossed (besides the admin users' email)
    webhook: Webhook | None = None


def referral_add_for(org: OrgConfig, program_key: str | None) -> ReferralAdd:
    """The referral-add settings of a program: the org's, with the program's own over them."""
    own = next((p.referral_add for p in org.programs if p.key == program_key), None)
    base = org.writeback.referral_add
    if not own:
        return base
    return ReferralAdd.model_validate({**base.model_dump(), **own})


class ValueCheck(_Model):
    """The scheduled read of mapped formula fields, whose changes never stream (off: no every)."""

    every: int | None = Field(default=None, ge=60)  # seconds between runs
    batch_size: int = Field(default=200, ge=1, le=2000)  # records per query


class OrgConfig(_Model):
    login_url: str = "https://login.salesforce.com"
    client_id: str | None = None
    # The connected app's consumer secret is read from this environment variable when the app
    # requires it for the web-server / refresh-token flows; it is never written in the file.
    client_secret_env: str | None = None
    username: str | None = None
    private_key_file: str | None = None
    ca_bundle: str | None = None
    api_version: str = "63.0"
    programs: list[Program] = Field(min_length=1)
    receiver: Receiver
    writeback: Writeback = Field(default_factory=Writeback)
    streaming: Streaming = Field(default_factory=Streaming)
    polling: Polling = Field(default_factory=Polling)
    api_budget: ApiBudget = Field(default_factory=ApiBudget)
    value_check: ValueCheck = Field(default_factory=ValueCheck)
    users: dict[str, RepUser] = Field(default_factory=dict)  # reps -> Salesforce users
    routing: Routing = Field(default_factory=Routing)

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError(
                "is empty; give the connected app's consumer key, or leave the key out"
            )
        return v

    @field_validator("username")
    @classmethod
    def _username(cls, v: str | None) -> str | None:
        if v is not None and not re.match(EMAIL_PATTERN, v):
            raise ValueError(
                f"'{v}' is not a Salesforce username: usernames have the form of an email "
                "address (integration@example.com)"
            )
        return v

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, v: str) -> str:
        if not re.fullmatch(r"[0-9]{2}\.0", v):
            raise ValueError(f"'{v}' is not an API version such as {MIN_API_VERSION}")
        if float(v) < float(MIN_API_VERSION):
            raise ValueError(
                f"API version {v} is below the supported range: {MIN_API_VERSION} or later"
            )
        return v

    @field_validator("login_url")
    @classmethod
    def _login_url(cls, v: str) -> str:
        if not v.startswith("https://"):
            raise ValueError(f"'{v}' must be an https:// URL (Salesforce refuses plain http)")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _program_keys_once(self) -> OrgConfig:
        keys = [p.key for p in self.programs]
        for i, key in enumerate(keys):
            if key in keys[:i]:
                raise ValueError(
                    f"programs[{i}].key: program key '{key}' is given twice (also "
                    f"programs[{keys.index(key)}]); each program needs its own key"
                )
        return self

    @model_validator(mode="after")
    def _program_exists(self) -> OrgConfig:
        keys = [p.key for p in self.programs]
        if self.receiver.program not in keys:
            raise ValueError(
                f"receiver.program: '{self.receiver.program}' is not one of the programs: "
                f"{', '.join(keys)}"
            )
        check_fallbacks(self.routing, self.users)
        return self

    def fields_read(self, sobject: str) -> list[str]:
        """Every field of `sobject` that the receiver reads, for PushTopic SELECTs and queries."""
        refs: list[str] = list(self.receiver.target_match.direct_fields)
        mm = self.receiver.member_match
        refs += mm.referral_code + mm.member_email + mm.member_external_id
        refs += list(self.receiver.referral_fields.values())
        names = {f"{r.object}.{r.field}" for r in self.receiver.status_rules}
        refs += sorted(names)
        phases = self.writeback.sales.phases
        refs += [f"{obj}.{name}" for obj, name in (phases.field.items() if phases else ())]
        if self.users:  # ownership sync: an owner change is judged (bridge.writeback.ownership)
            refs += ["Lead.OwnerId", "Contact.OwnerId"]
        out: list[str] = []
        for ref in refs:
            obj, fld = parse_field_ref(ref)
            if obj == sobject and fld not in out:
                out.append(fld)
        return out


class StreamSettings(_Model):
    """`stream:`: how many orgs one `sfbridge stream` process serves at most."""

    capacity: int = Field(default=defaults.STREAM_CAPACITY, ge=1, le=10_000)


class BridgeConfig(_Model):
    orgs: dict[str, OrgConfig] = Field(min_length=1)
    stream: StreamSettings = Field(default_factory=StreamSettings)

    @field_validator("orgs")
    @classmethod
    def _org_names(cls, v: dict[str, OrgConfig]) -> dict[str, OrgConfig]:
        for name in v:
            if not re.match(r"^[a-z0-9][a-z0-9_-]*$", name):
                raise ValueError(f"org name '{name}' must be lower-case letters, digits, - or _")
        return v


# --------------------------------------------------------------------------------------------
# Loading with line numbers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key or '(top level)'}: {self.message}"


def _line_index(node: yaml.Node, path: tuple[Any, ...], index: dict[tuple[Any, ...], int]) -> None:
    index[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            index[(*path, key)] = key_node.start_mark.line + 1
            _line_index(value_node, (*path, key), index)
            index[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), index)


def _duplicate_keys(node: yaml.Node, path: tuple[Any, ...], filename: str) -> list[Problem]:
    """Keys given twice in one mapping: YAML silently keeps only the last one."""
    problems: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if key is not None and key != "<<":
                if key in first_line:
                    problems.append(
                        Problem(
                            filename,
                            line,
                            _format_path((*path, key)),
                            f"duplicate key (also on line {first_line[key]}); YAML keeps "
                            "only the last one, so remove or merge the other",
                        )
                    )
                else:
                    first_line[key] = line
            problems += _duplicate_keys(value_node, (*path, key), filename)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _duplicate_keys(item, (*path, i), filename)
    return problems


def line_index(text: str) -> dict[tuple[Any, ...], int]:
    """Config key path (``("orgs", "acme", "receiver")``) -> line number, for messages."""
    index: dict[tuple[Any, ...], int] = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return index
    if node is not None and hostile(node) is None:
        _line_index(node, (), index)
    return index


def _describe_input(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class ConfigCheck:
    """What validating a config file found: the config when it is valid; when it is not, the
    problems and, where some of it could be validated, that part (`partial`: the file without
    the values that have problems) for the checks that need a validated config."""

    config: BridgeConfig | None
    partial: BridgeConfig | None
    problems: list[Problem]


_ROUNDS = 5  # a problem can hide another (a model check runs only once its fields are valid)


def check_config_text(text: str, filename: str) -> tuple[BridgeConfig | None, list[Problem]]:
    """Validate config text; return the model (when valid) and every problem found."""
    result = validate_config_text(text, filename)
    return result.config, result.problems


def validate_config_text(text: str, filename: str) -> ConfigCheck:
    """Validate config text, reporting every problem in one pass.

    Hostile YAML (an alias that refers to itself, an alias bomb, nesting too deep for the
    parser) is refused before it is loaded. Schema problems are then found in rounds: the
    values with problems are left out and the rest validated again, so a problem that hides
    another (a cross-reference checked only once its fields are valid) is found too.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        guard = hostile(node)
        if guard is not None:
            where = _format_path(guard.path)
            return ConfigCheck(None, None, [Problem(filename, guard.line, where, guard.message)])
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        reason = getattr(exc, "problem", None) or str(exc)
        return ConfigCheck(None, None, [Problem(filename, line, "", f"not valid YAML: {reason}")])
    except RecursionError:
        return ConfigCheck(None, None, [Problem(filename, None, "", "nested too deeply")])
    if not isinstance(data, dict):
        return ConfigCheck(
            None, None, [Problem(filename, 1, "", "expected a mapping with an 'orgs' key")]
        )
    index: dict[tuple[Any, ...], int] = {}
    problems: list[Problem] = []
    if node is not None:
        _line_index(node, (), index)
        problems = _duplicate_keys(node, (), filename)
    dropped: set[tuple[Any, ...]] = set()  # values left out, having problems
    seen: set[tuple[tuple[Any, ...], str]] = set()
    config: BridgeConfig | None = None
    for _round in range(_ROUNDS):
        lists: dict[tuple[Any, ...], list[int]] = {}
        current = _without(data, (), dropped, lists)
        try:
            config = BridgeConfig.model_validate(current)
            break
        except ValidationError as exc:
            new = []
            for err in exc.errors():
                path, message, whole = _located(err, index, lists)
                within = any(path[: len(d)] == d for d in dropped)
                if not within and (path, message) not in seen:
                    new.append((path, message, whole))
                    seen.add((path, message))
            if not new:
                break
            for path, message, whole in new:
                problems.append(Problem(filename, _line(index, path), _format_path(path), message))
                if whole:
                    continue  # a check of a whole section (a cross-reference): keep the section
                # Leave out the whole list item a problem is in (a rule without its status
                # would only be reported again as missing one), else the value itself.
                items = [i for i, part in enumerate(path) if isinstance(part, int)]
                dropped.add(path[: items[-1] + 1] if items else path)
    problems.sort(key=lambda p: (p.line or 0, p.key))
    if not problems:
        return ConfigCheck(config, None, [])
    if config is None:  # the parts the later checks read, from what validated
        orgs = _without(data, (), dropped, {}).get("orgs")
        parts = {
            name: org
            for name, value in (orgs.items() if isinstance(orgs, dict) else [])
            if (org := _checkable_org(value)) is not None
        }
        config = BridgeConfig.model_construct(orgs=parts) if parts else None
    return ConfigCheck(None, config, problems)


def _checkable_org(data: Any) -> OrgConfig | None:
    """An org config for the rule and file checks when the whole does not validate: its
    receiver and streaming sections (those checks read no more) and its file paths."""
    if not isinstance(data, dict):
        return None
    try:
        return OrgConfig.model_validate(data)
    except ValidationError:
        pass
    try:
        receiver = Receiver.model_validate(data.get("receiver"))
    except ValidationError:
        return None
    try:
        streaming = Streaming.model_validate(data.get("streaming") or {})
    except ValidationError:
        streaming = Streaming()
    files = {k: data[k] for k in ("private_key_file", "ca_bundle") if isinstance(data.get(k), str)}
    return OrgConfig.model_construct(receiver=receiver, streaming=streaming, **files)


def _without(
    value: Any,
    path: tuple[Any, ...],
    dropped: set[tuple[Any, ...]],
    lists: dict[tuple[Any, ...], list[int]],
) -> Any:
    """`value` without the values at the `dropped` paths; `lists` records, per list, which
    original indices were kept (so a later round's problem is reported at its own index)."""
    if isinstance(value, dict):
        return {
            k: _without(v, (*path, k), dropped, lists)
            for k, v in value.items()
            if (*path, k) not in dropped
        }
    if isinstance(value, list):
        kept = [i for i in range(len(value)) if (*path, i) not in dropped]
        lists[path] = kept
        return [_without(value[i], (*path, i), dropped, lists) for i in kept]
    return value


def _located(
    err: Any, index: dict[tuple[Any, ...], int], lists: dict[tuple[Any, ...], list[int]]
) -> tuple[tuple[Any, ...], str, bool]:
    """A validation error's path in the file (list indices as written), its message, and
    whether it is about a whole section (a model's own check) rather than one value."""
    path: tuple[Any, ...] = ()
    for part in err["loc"]:
        if isinstance(part, str) and part.startswith("function-"):
            continue
        if isinstance(part, int) and path in lists and part < len(lists[path]):
            part = lists[path][part]
        path = (*path, part)
    message = _message(err)
    # A model-level check names the item it is about ("status_rules[3]: ..."): point at that
    # item's line rather than at the enclosing mapping.
    hint = _RELATIVE_PATH.match(message) if err["type"] == "value_error" else None
    if hint:
        sub = _split_path(hint.group(1))
        if (*path, *sub) in index:
            # About one list item (a rule that contradicts another): that item can be left
            # out; about a key (a cross-reference): the section stays for the other checks.
            return (*path, *sub), hint.group(2), not any(isinstance(p, int) for p in sub)
    return path, message, err["type"] == "value_error" and isinstance(err.get("input"), dict)


def _line(index: dict[tuple[Any, ...], int], path: tuple[Any, ...]) -> int | None:
    probe = path
    while probe:
        if probe in index:
            return index[probe]
        probe = probe[:-1]
    return None


_RELATIVE_PATH = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\]|\.[A-Za-z_]\w*)*): (.+)$", re.S)


def _split_path(text: str) -> tuple[Any, ...]:
    """`status_rules[3].value` -> ("status_rules", 3, "value")."""
    parts: list[Any] = []
    for name, index in re.findall(r"([A-Za-z_]\w*)|\[(\d+)\]", text):
        parts.append(int(index) if index else name)
    return tuple(parts)


def _format_path(path: tuple[Any, ...]) -> str:
    """("orgs", "acme", "status_rules", 3) -> orgs.acme.status_rules[3]"""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: Any) -> str:
    kind = err["type"]
    msg = str(err["msg"])
    found = err.get("input")
    if kind == "extra_forbidden":
        return (
            f"unknown key (found {_describe_input(found)}); "
            "check the spelling against the example config"
        )
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        allowed = msg.split("Input should be ", 1)[-1]
        return f"found {_describe_input(found)}; allowed: {allowed}"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    msg = msg.replace("Input should be", "must be").replace("input should be", "must be")
    return f"found {_describe_input(found)}; {msg[0].lower() + msg[1:]}"


def read_config_text(path: str | os.PathLike[str]) -> str:
    """The config file's text, or a ConfigError naming the file (unreadable, not UTF-8)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the config file is not UTF-8 text (byte {exc.start})") from None


def load_config(path: str | os.PathLike[str]) -> BridgeConfig:
    """Read and validate the YAML config, raising ConfigError with every problem."""
    p = Path(path)
    text = read_config_text(p)
    config, problems = check_config_text(text, str(p))
    if config is None:
        raise ConfigError(
            f"{p}: {len(problems)} problem(s) in the config", [str(x) for x in problems]
        )
    return config
