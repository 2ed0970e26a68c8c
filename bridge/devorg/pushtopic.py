"""PushTopics of the local org: validation, matching and notification payloads; CDC payloads.

A PushTopic is an ordinary record (created through REST). Before insert/update the REST layer
calls :func:`validate`; the Streaming API hub compiles every active topic with
:func:`compile_topic` and asks :func:`evaluate` for each record change whether that topic
notifies, following the Streaming API Developer Guide ("Unsupported PushTopic Queries",
"Event Notification Rules", "NotifyForFields Set to All/Referenced/Select/Where").

The restriction checks run on our own small tokenizer so that the documented error texts come
out exactly, whatever the general SOQL parser accepts; the WHERE clause itself is evaluated by
``soql.evaluate_where`` so topics and queries agree on what matches.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bridge.devorg.state import DevOrgState, RecordChange

NAME_MAX = 25
QUERY_MAX = 1300
DESCRIPTION_MAX = 400
NOTIFY_FOR_FIELDS = ("All", "Referenced", "Select", "Where")
OPERATION_FLAGS = {
    "created": "NotifyForOperationCreate",
    "updated": "NotifyForOperationUpdate",
    "deleted": "NotifyForOperationDelete",
    "undeleted": "NotifyForOperationUndelete",
}
#: Standard objects the guide lists under "Supported PushTopic Queries" (custom objects too).
SUPPORTED_STANDARD_OBJECTS = frozenset(
    {
        "Account",
        "Campaign",
        "Case",
        "Contact",
        "ContractLineItem",
        "Entitlement",
        "Lead",
        "LiveChatTranscript",
        "MessagingSession",
        "Opportunity",
        "Quote",
        "QuoteLineItem",
        "ServiceAppointment",
        "ServiceContract",
        "Task",
        "UserServicePresence",
        "WorkOrder",
        "WorkOrderLineItem",
    }
)
#: Objects whose changes are published on the Change Data Capture channels.
CDC_OBJECTS = frozenset(
    {
        "Account",
        "Contact",
        "Lead",
        "Opportunity",
        "OpportunityLineItem",
        "Product2",
        "Task",
        "Event",
    }
)
_AGGREGATES = frozenset({"AVG", "COUNT", "COUNT_DISTINCT", "MAX", "MIN", "SUM"})
#: Words of the WHERE clause that are not field names.
_WHERE_WORDS = frozenset(
    {"AND", "OR", "NOT", "IN", "LIKE", "INCLUDES", "EXCLUDES", "NULL", "TRUE", "FALSE"}
)


class FieldCatalog(Protocol):
    """What validation needs of the schema: an object's API name and fields (None if unknown)."""

    def __call__(self, sobject: str) -> tuple[str, Mapping[str, str]] | None:
        """(object API name, lower-case field name -> field API name)."""


def error(code: str, message: str, fields: Iterable[str] = ()) -> dict[str, Any]:
    """One Salesforce REST error dict."""
    return {"message": message, "errorCode": code, "fields": list(fields)}


# ---- the query tokenizer -------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<date>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))?)
  | (?P<number>[+-]?\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?::\d+)?)
  | (?P<op>!=|<>|<=|>=|[=<>(),;])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # string | date | number | name | op
    text: str
    end: int = 0  # offset just after the token in the query

    @property
    def upper(self) -> str:
        return self.text.upper()


class QueryError(Exception):
    """A PushTopic query Salesforce would refuse: errorCode + message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        if match is None:
            raise QueryError("MALFORMED_QUERY", f"unexpected token: '{query[pos : pos + 20]}'")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(Token(kind, match.group(), match.end()))
        pos = match.end()
    if tokens and tokens[-1].text == ";":  # the guide's own examples end with ';'
        tokens.pop()
    return tokens


@dataclass(frozen=True)
class TopicQuery:
    """The parts of a PushTopic query the matching rules need."""

    sobject: str
    select: tuple[str, ...]  # field names as written
    where_text: str | None
    where_fields: tuple[str, ...]


def _split_top_level(tokens: list[Token]) -> list[list[Token]]:
    items: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            depth -= 1
        if token.text == "," and depth == 0:
            items.append([])
        else:
            items[-1].append(token)
    return items


def analyse(query: str) -> TopicQuery:
    """Check the documented PushTopic query restrictions; return the query's parts.

    Raises QueryError with the errorCode and message the Streaming API guide lists.
    """
    text = query.strip()
    tokens = tokenize(text)
    words = [t.upper if t.kind == "name" else t.text for t in tokens]
    if not words or words[0] != "SELECT":
        raise QueryError("MALFORMED_QUERY", "unexpected token: query must start with SELECT")
    # the top-level FROM (a sub-select has its own)
    depth = 0
    from_at = -1
    for i, word in enumerate(words):
        depth += word == "("
        depth -= word == ")"
        if word == "FROM" and depth == 0:
            from_at = i
            break
    if from_at < 0 or from_at + 1 >= len(tokens) or tokens[from_at + 1].kind != "name":
        raise QueryError("MALFORMED_QUERY", "unexpected token: missing FROM clause")
    select_tokens = tokens[1:from_at]
    items = _split_top_level(select_tokens)
    select: list[str] = []
    for item in items:
        if not item:
            raise QueryError("MALFORMED_QUERY", "unexpected token: ','")
        if len(item) > 1 and item[1].text == "(":
            if item[0].upper in _AGGREGATES:
                raise QueryError("INVALID_FIELD", "Aggregate queries are not supported")
            raise QueryError("INVALID_FIELD", f"'{item[0].text}' is not supported")
        if item[0].text == "(":
            raise QueryError("INVALID_FIELD", "relationships are not supported")
        if len(item) != 1 or item[0].kind != "name":
            raise QueryError("MALFORMED_QUERY", f"unexpected token: '{item[-1].text}'")
        if "." in item[0].text:
            raise QueryError("INVALID_FIELD", "relationships are not supported")
        select.append(item[0].text)
    sobject = tokens[from_at + 1].text
    if "." in sobject:
        raise QueryError("MALFORMED_QUERY", f"unexpected token: '{sobject}'")
    rest = tokens[from_at + 2 :]
    rest_words = words[from_at + 2 :]
    for i, word in enumerate(rest_words):
        following = rest_words[i + 1] if i + 1 < len(rest_words) else None
        if word == "GROUP" and following == "BY" or word == "HAVING":
            raise QueryError("INVALID_FIELD", "Aggregate queries are not supported")
        if word == "ORDER" and following == "BY":
            raise QueryError("INVALID_FIELD", "'ORDER BY' clause is not allowed")
        if word == "LIMIT":
            raise QueryError("INVALID_FIELD", "'LIMIT' is not allowed")
        if word == "OFFSET":
            raise QueryError("INVALID_FIELD", "'OFFSET' clause is not allowed")
    where_text: str | None = None
    where_fields: list[str] = []
    if rest:
        if rest_words[0] != "WHERE" or len(rest) == 1:
            raise QueryError("MALFORMED_QUERY", f"unexpected token: '{rest[0].text}'")
        where = rest[1:]
        where_words = rest_words[1:]
        for i, token in enumerate(where):
            following = where_words[i + 1] if i + 1 < len(where_words) else None
            if token.text == "(" and following == "SELECT":
                raise QueryError("INVALID_FIELD", "semi/anti join sub-selects are not supported")
            if where_words[i] == "NOT" and following != "IN":
                raise QueryError("INVALID_FIELD", "'NOT' is not supported")
            if token.kind != "name" or where_words[i] in _WHERE_WORDS:
                continue
            if ":" in token.text or (following != "(" and _is_date_literal(where_words[i])):
                continue  # LAST_N_DAYS:3, TODAY ...
            if following == "(":
                if token.upper in _AGGREGATES:
                    raise QueryError("INVALID_FIELD", "Aggregate queries are not supported")
                continue
            if "." in token.text:
                raise QueryError("INVALID_FIELD", "relationships are not supported")
            if token.text not in where_fields:
                where_fields.append(token.text)
        where_text = text[rest[0].end : where[-1].end].strip()
    if not any(name.lower() == "id" for name in select):
        raise QueryError("INVALID_FIELD", "SELECT clause of a PushTopic query must include Id")
    return TopicQuery(sobject, tuple(select), where_text, tuple(where_fields))


_DATE_LITERALS = re.compile(
    r"^(YESTERDAY|TODAY|TOMORROW|(LAST|THIS|NEXT)_(WEEK|MONTH|QUARTER|YEAR|FISCAL_QUARTER|"
    r"FISCAL_YEAR|90_DAYS))$"
)


def _is_date_literal(word: str) -> bool:
    return bool(_DATE_LITERALS.match(word))


# ---- validation (called by REST before a PushTopic insert/update) ----------------------------


def _text(record: Mapping[str, Any], name: str) -> str | None:
    value = record.get(name)
    return None if value is None else str(value)


def validate_topic(
    record: Mapping[str, Any],
    *,
    fields_of: FieldCatalog,
    other_names: Iterable[str] = (),
    api_version: float = 63.0,
    check_query: Callable[[str], None] | None = None,
    field_checks: bool = True,
) -> list[dict[str, Any]]:
    """The errors Salesforce would return for this PushTopic record ([] when it is valid).

    ``record`` is the record as it would be stored (for an update: old values merged with the
    new ones). ``other_names`` are the Names of the org's other PushTopics (Name is unique).
    ``check_query`` runs the general SOQL parser and raises QueryError on what it refuses.
    ``field_checks=False`` leaves out what any record's field validation reports (required,
    length, picklist, type) for callers that have already checked those against the schema.
    """
    errors: list[dict[str, Any]] = []
    generic: list[dict[str, Any]] = []
    missing = [n for n in ("Name", "Query", "ApiVersion") if record.get(n) in (None, "")]
    if missing:
        generic.append(
            error(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        )
    name = _text(record, "Name")
    if name is not None and len(name) > NAME_MAX:
        generic.append(
            error(
                "STRING_TOO_LONG",
                f"Name: data value too large: {name} (max length={NAME_MAX})",
                ["Name"],
            )
        )
    elif name and name in set(other_names):
        errors.append(
            error(
                "DUPLICATE_VALUE",
                f"duplicate value found: Name duplicates value on record with Name: {name}",
                ["Name"],
            )
        )
    description = _text(record, "Description")
    if description is not None and len(description) > DESCRIPTION_MAX:
        generic.append(
            error(
                "STRING_TOO_LONG",
                f"Description: data value too large: {description[:40]}... "
                f"(max length={DESCRIPTION_MAX})",
                ["Description"],
            )
        )
    version = record.get("ApiVersion")
    if version not in (None, ""):
        try:
            number = float(version)
        except (TypeError, ValueError):
            number = -1.0
        if not 20.0 < number <= api_version:
            errors.append(
                error(
                    "FIELD_INTEGRITY_EXCEPTION",
                    f"ApiVersion: must be greater than 20.0 and at most {api_version}: {version}",
                    ["ApiVersion"],
                )
            )
    notify = record.get("NotifyForFields") or "Referenced"
    if notify not in NOTIFY_FOR_FIELDS:
        generic.append(
            error(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"NotifyForFields: bad value for restricted picklist field: {notify}",
                ["NotifyForFields"],
            )
        )
    for flag in (*OPERATION_FLAGS.values(), "IsActive"):
        if record.get(flag) is not None and not isinstance(record.get(flag), bool):
            generic.append(
                error(
                    "INVALID_TYPE_ON_FIELD_IN_RECORD",
                    f"{flag}: value not of required type: {record.get(flag)}",
                    [flag],
                )
            )
    query = _text(record, "Query")
    if query is None or query == "":
        return generic + errors if field_checks else errors
    if len(query) > QUERY_MAX:
        generic.append(
            error(
                "STRING_TOO_LONG",
                f"Query: data value too large: {query[:40]}... (max length={QUERY_MAX})",
                ["Query"],
            )
        )
        return generic + errors if field_checks else errors
    try:
        try:
            parts = analyse(query)
        except QueryError as exc:
            # plain syntax errors read as the SOQL parser words them (row/column and all)
            if exc.code == "MALFORMED_QUERY" and check_query is not None:
                check_query(query)
            raise
        _check_fields(parts, fields_of)
        if check_query is not None:
            check_query(query)
    except QueryError as exc:
        errors.append(error(exc.code, exc.message, ["Query"]))
        return generic + errors if field_checks else errors
    if notify in NOTIFY_FOR_FIELDS:
        problem = _notify_problem(notify, parts)
        if problem:
            errors.append(error("FIELD_INTEGRITY_EXCEPTION", problem, ["NotifyForFields"]))
    return generic + errors if field_checks else errors


def _check_fields(parts: TopicQuery, fields_of: FieldCatalog) -> None:
    found = fields_of(parts.sobject)
    if found is None:
        raise QueryError(
            "INVALID_TYPE",
            f"sObject type '{parts.sobject}' is not supported. If you are attempting to use a "
            "custom object, be sure to append the '__c' after the entity name. Please reference "
            "your WSDL or the describe call for the appropriate names.",
        )
    canonical, fields = found
    if canonical not in SUPPORTED_STANDARD_OBJECTS and not canonical.endswith("__c"):
        raise QueryError(
            "INVALID_TYPE", f"sObject type '{canonical}' is not supported by PushTopic queries"
        )
    for name in (*parts.select, *parts.where_fields):
        if name.lower() not in fields:
            raise QueryError(
                "INVALID_FIELD",
                f"No such column '{name}' on entity '{canonical}'. If you are attempting to use a "
                "custom field, be sure to append the '__c' after the custom field name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
            )


def _notify_problem(notify: str, parts: TopicQuery) -> str | None:
    has_select = any(f.lower() != "id" for f in parts.select)
    has_where = any(f.lower() != "id" for f in parts.where_fields)
    if notify == "Select" and not has_select:
        return (
            "NotifyForFields is Select: the query SELECT clause must have at least one field "
            "other than Id"
        )
    if notify == "Where" and not has_where:
        return (
            "NotifyForFields is Where: the query must have a WHERE clause with at least one "
            "field other than Id"
        )
    if notify == "Referenced" and not (has_select or has_where):
        return (
            "NotifyForFields is Referenced: the query must have a SELECT clause with at least one "
            "field other than Id or a WHERE clause with at least one field other than Id"
        )
    return None


def validate(record: Mapping[str, Any], state: DevOrgState) -> list[dict[str, Any]]:
    """The contract with REST: errors for a PushTopic about to be inserted/updated ([] if valid).

    ``record`` is the record as it would be stored (old values merged with the update).
    """
    from bridge.devorg import soql
    from bridge.devorg.state import LATEST_API_VERSION

    def check_query(query: str) -> None:
        try:
            soql.parse_query(query)
        except soql.SoqlError as exc:
            raise QueryError(exc.code, exc.message) from exc

    others = [
        str(r.get("Name"))
        for r in state.records("PushTopic")
        if r.get("Id") != record.get("Id") and r.get("Name")
    ]
    errors = validate_topic(
        record,
        fields_of=schema_catalog(state.schema),
        other_names=others,
        api_version=float(LATEST_API_VERSION),
        check_query=check_query,
        field_checks=False,  # REST has checked required/length/picklist/type on the schema
    )
    query = record.get("Query")
    if query and not any("Query" in e["fields"] for e in errors):
        problem = text_area_in_where(str(query), state.schema)
        if problem:
            errors.append(error("INVALID_FIELD", problem, ["Query"]))
    return errors


def text_area_in_where(query: str, schema: Any) -> str | None:
    """The guide lists "searching for values in Text Area fields" as unsupported; the message is
    SOQL's for a field that cannot be filtered."""
    try:
        parts = analyse(query)
    except QueryError:
        return None
    obj = schema.object(parts.sobject) if schema is not None else None
    for name in parts.where_fields:
        fd = obj.field(name) if obj is not None else None
        if fd is not None and fd.type == "textarea":
            return f"field '{fd.name}' can not be filtered in a query call"
    return None


def schema_catalog(schema: Any) -> FieldCatalog:
    """A FieldCatalog over the org's schema (``bridge.devorg.schema.Schema``)."""

    def fields_of(sobject: str) -> tuple[str, Mapping[str, str]] | None:
        obj = schema.object(sobject) if schema is not None else None
        return None if obj is None else (obj.name, obj.lower)

    return fields_of


# ---- matching ------------------------------------------------------------------------------


@dataclass
class Topic:
    """An active PushTopic ready for matching."""

    id: str
    name: str
    sobject: str
    select: tuple[str, ...]
    where_fields: tuple[str, ...]
    notify_for_fields: str
    operations: frozenset[str]  # created/updated/deleted/undeleted
    matches: Callable[[Mapping[str, Any]], bool]  # the WHERE clause (True when there is none)
    select_lower: frozenset[str] = field(init=False)
    where_lower: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.select_lower = frozenset(f.lower() for f in self.select)
        self.where_lower = frozenset(f.lower() for f in self.where_fields)

    @property
    def channel(self) -> str:
        return f"/topic/{self.name}"


def compile_topic(
    record: Mapping[str, Any],
    where_matcher: Callable[[str], Callable[[Mapping[str, Any]], bool]],
) -> Topic:
    """A Topic from a stored PushTopic record; ``where_matcher(query)`` builds the predicate of
    the query's WHERE clause (from the org's SOQL evaluator)."""
    parts = analyse(str(record["Query"]))
    operations = frozenset(
        kind for kind, flag in OPERATION_FLAGS.items() if record.get(flag, True) is not False
    )
    matches: Callable[[Mapping[str, Any]], bool]
    if parts.where_text:
        matches = where_matcher(str(record["Query"]))
    else:

        def matches(_record: Mapping[str, Any]) -> bool:
            return True

    return Topic(
        id=str(record.get("Id", "")),
        name=str(record["Name"]),
        sobject=parts.sobject,
        select=parts.select,
        where_fields=parts.where_fields,
        notify_for_fields=str(record.get("NotifyForFields") or "Referenced"),
        operations=operations,
        matches=matches,
    )


def notifies(
    topic: Topic, change_type: str, record: Mapping[str, Any], changed: Iterable[str]
) -> bool:
    """Whether ``topic`` generates a notification for this record change.

    Created/deleted/undeleted: the operation flag and the WHERE clause (for a delete, matched
    against the record as it was). Updated: the flag, a change in a field NotifyForFields
    watches, and the record *after* the change matching the WHERE clause — so an update that
    makes a record stop matching notifies no one (the guide: "all record field values match the
    values in the WHERE clause").
    """
    if change_type not in topic.operations:
        return False
    if change_type == "updated":
        changed_lower = {name.lower() for name in changed}
        if topic.sobject.lower() in _PERSON_NAME_OBJECTS and changed_lower & _NAME_COMPONENTS:
            # "Compound Fields in PushTopic Queries": a person's name change is detected through
            # the Name field only; its components alone don't detect it
            changed_lower = (changed_lower - _NAME_COMPONENTS) | {"name"}
        mode = topic.notify_for_fields
        if mode == "All":
            watched_hit = bool(changed_lower)
        elif mode == "Select":
            watched_hit = bool(changed_lower & topic.select_lower)
        elif mode == "Where":
            watched_hit = bool(changed_lower & topic.where_lower)
        else:  # Referenced
            watched_hit = bool(changed_lower & (topic.select_lower | topic.where_lower))
        if not watched_hit:
            return False
    return topic.matches(record)


_PERSON_NAME_OBJECTS = frozenset({"lead", "contact"})
_NAME_COMPONENTS = frozenset({"salutation", "firstname", "middlename", "lastname", "suffix"})


def _lookup(record: Mapping[str, Any], name: str) -> tuple[str, Any]:
    if name in record:
        return name, record[name]
    lower = name.lower()
    for key, value in record.items():
        if key.lower() == lower:
            return key, value
    return name, None


def sobject_payload(topic: Topic, change_type: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The notification's ``sobject``: the SELECT fields (only Id for a deleted record); a
    person's Name brings all its components ("the returned notification message includes all
    constituent field values")."""
    if change_type == "deleted":
        key, value = _lookup(record, "Id")
        return {key: value}
    sobject = dict(_lookup(record, name) for name in topic.select)
    if topic.sobject.lower() in _PERSON_NAME_OBJECTS and "name" in topic.select_lower:
        for part in _NAME_PARTS:
            if part in record and part not in sobject:
                sobject[part] = record[part]
    return sobject


def created_date(at: datetime) -> str:
    """The createdDate format of API 37.0+: milliseconds and a Z suffix."""
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def topic_message(
    topic: Topic,
    change_type: str,
    record: Mapping[str, Any],
    at: datetime,
    replay_id: int,
    channel: str | None = None,
) -> dict[str, Any]:
    """The notification; ``channel`` is the topic's own unless it goes to a former name."""
    return {
        "channel": channel or topic.channel,
        "data": {
            "event": {"createdDate": created_date(at), "replayId": replay_id, "type": change_type},
            "sobject": sobject_payload(topic, change_type, record),
        },
    }


# ---- Change Data Capture -------------------------------------------------------------------

_CDC_TYPES = {
    "created": "CREATE",
    "updated": "UPDATE",
    "deleted": "DELETE",
    "undeleted": "UNDELETE",
}
#: Fields a change event never carries as data (they are in the header or meaningless there).
CDC_SKIPPED = frozenset({"Id", "IsDeleted", "SystemModstamp", "attributes"})


def cdc_channels(sobject: str) -> tuple[str, ...]:
    return (f"/data/{sobject}ChangeEvent", "/data/ChangeEvents")


_NAME_PARTS = ("Salutation", "FirstName", "MiddleName", "LastName", "Suffix")
_ADDRESS_PARTS = (
    "Street", "City", "State", "PostalCode", "Country", "StateCode", "CountryCode",
    "Latitude", "Longitude", "GeocodeAccuracy",
)  # fmt: skip
_ADDRESS_PREFIXES = ("", "Billing", "Shipping", "Mailing", "Other")


def compound_fields(record: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Compound field -> {component name in the event: record field}, for the record's object.

    Change events nest Name (of a person: Lead, Contact, User) and addresses; a component's
    name can differ from the object's field (BillingAddress.Street is BillingStreet).
    """
    compounds: dict[str, dict[str, str]] = {}
    if "LastName" in record and "FirstName" in record:
        compounds["Name"] = {part: part for part in _NAME_PARTS if part in record}
    for prefix in _ADDRESS_PREFIXES:
        parts = {part: prefix + part for part in _ADDRESS_PARTS if prefix + part in record}
        if f"{prefix}Street" in parts.values() or f"{prefix}City" in parts.values():
            compounds[f"{prefix}Address"] = parts
    return compounds


def cdc_payload(
    sobject: str,
    change_type: str,
    record: Mapping[str, Any],
    changed: Iterable[str],
    *,
    user_id: str,
    at: datetime,
    api_version: str,
    api_name: str = "rest",
    transaction_key: str | None = None,
    sequence_number: int = 1,
    commit_number: int | None = None,
) -> dict[str, Any]:
    """A change event ``payload`` (Change Data Capture Developer Guide, "Change Event Message
    Structure", "Get Compound Fields in Change Events"): CREATE/UNDELETE carry every field
    (null ones too), UPDATE the changed ones plus LastModifiedDate (listed in changedFields,
    components as ``Compound.Component``, fields set to null in nulledFields), DELETE none.
    Name and address compounds are nested. ``at`` is when the change occurred; the
    transaction's key and commit number, and the change's place in it, come from the commit
    (:func:`change_event`)."""
    kind = _CDC_TYPES[change_type]
    compounds = compound_fields(record)
    component_of = {
        field: (compound, part)
        for compound, parts in compounds.items()
        for part, field in parts.items()
    }
    changed_set = {name for name in changed if name not in CDC_SKIPPED}
    header: dict[str, Any] = {
        "entityName": sobject,
        "recordIds": [record.get("Id")],
        "changeType": kind,
        "changeOrigin": f"com/salesforce/api/{api_name}/{api_version}",
        "transactionKey": transaction_key or str(uuid.uuid4()),
        "sequenceNumber": sequence_number,
        "commitTimestamp": int(at.timestamp() * 1000),
        "commitNumber": commit_number or int(at.timestamp() * 1_000_000),
        "commitUser": user_id,
        "nulledFields": [],
        "diffFields": [],
        "changedFields": [],
    }
    payload: dict[str, Any] = {"ChangeEventHeader": header}
    if kind in ("CREATE", "UNDELETE"):
        for key, value in record.items():
            if key in CDC_SKIPPED or key in component_of or key in compounds:
                continue
            payload[key] = value
        for compound, parts in compounds.items():
            nested = {part: record.get(field) for part, field in parts.items()}
            payload[compound] = nested if any(v is not None for v in nested.values()) else None
    elif kind == "UPDATE":
        changed_names: list[str] = []
        for name in sorted(changed_set | ({"LastModifiedDate"} & set(record))):
            key, value = _lookup(record, name)
            if key in compounds:
                continue  # a person's full Name is derived: its components tell the change
            if key in component_of:
                compound, part = component_of[key]
                payload.setdefault(compound, {})[part] = value
                path = f"{compound}.{part}"
            else:
                payload[key] = value
                path = key
            changed_names.append(path)
            if value is None:
                header["nulledFields"].append(path)
        header["changedFields"] = changed_names
    return payload


def change_event(change: RecordChange, api_version: str) -> dict[str, Any]:
    """The change event ``payload`` of a committed change. The changes of one transaction share
    its transactionKey and commitNumber and are numbered 1, 2, … in sequenceNumber, in the
    order they were made (CDC guide, "High-Level Replication Steps", "Change Events for Lead
    Conversion"); a change of an object without change events leaves a gap, as the guide
    says."""
    return cdc_payload(
        change.sobject,
        change.change_type,
        change.record,
        change.changed_fields,
        user_id=change.user_id,
        at=change.at,
        api_version=api_version,
        api_name=change.origin,
        transaction_key=change.transaction_key,
        sequence_number=change.sequence_number,
        commit_number=change.commit_number,
    )


def cdc_message(channel: str, payload: dict[str, Any], replay_id: int) -> dict[str, Any]:
    return {
        "channel": channel,
        "data": {
            "schema": f"devorg-{payload['ChangeEventHeader']['entityName']}",
            "payload": payload,
            "event": {"replayId": replay_id},
        },
    }
