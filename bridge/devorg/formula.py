"""Salesforce formulas, the subset validation rules and automation criteria are written in.

`compile_formula(text, o, schema)` parses a formula against an object's describe (so an
unknown field or a picklist used outside ISPICKVAL fails when the rule is defined, with
Salesforce's wording) and returns a `Formula`; `Formula.evaluate(record, old, parent)` runs it
on a record as it is about to be saved (`old` is the stored record, None on create).

Supported: `AND OR NOT IF CASE ISBLANK ISNULL BLANKVALUE ISPICKVAL INCLUDES TEXT VALUE LEN
LOWER UPPER TRIM LEFT RIGHT BEGINS CONTAINS REGEX ISCHANGED ISNEW PRIORVALUE TODAY NOW`,
`&& || !`, `= == != <> < > <= >=`, `+ - * / &`, text in single or double quotes, numbers,
`TRUE FALSE NULL`, fields by API name in any case, and parent fields (`Account.Name`).
Formula Operators and Functions reference:
https://help.salesforce.com/s/articleView?id=sf.customize_functions.htm
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.devorg.schema import FieldDef, ObjectDef, Schema


class FormulaError(ValueError):
    """A formula Salesforce would refuse to save (the message is Salesforce's wording)."""


_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<number>\d+(?:\.\d+)?)
      | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<name>[A-Za-z_$][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
      | (?P<op>&&|\|\||==|!=|<>|<=|>=|[-+*/&=<>!(),])
    )""",
    re.VERBOSE,
)

# Functions whose argument may be a picklist field (Salesforce refuses picklists elsewhere).
_PICKLIST_OK = {"ISPICKVAL", "ISBLANK", "ISNULL", "TEXT", "ISCHANGED", "PRIORVALUE", "CASE"}
_BOOLEAN_FUNCTIONS = {
    "AND", "OR", "NOT", "ISBLANK", "ISNULL", "ISPICKVAL", "INCLUDES", "BEGINS", "CONTAINS",
    "REGEX", "ISCHANGED", "ISNEW",
}  # fmt: skip
_ARITY: dict[str, tuple[int, int | None]] = {
    "AND": (1, None), "OR": (1, None), "NOT": (1, 1), "IF": (3, 3), "CASE": (3, None),
    "ISBLANK": (1, 1), "ISNULL": (1, 1), "BLANKVALUE": (2, 2), "ISPICKVAL": (2, 2),
    "INCLUDES": (2, 2), "TEXT": (1, 1), "VALUE": (1, 1), "LEN": (1, 1), "LOWER": (1, 1),
    "UPPER": (1, 1), "TRIM": (1, 1), "LEFT": (2, 2), "RIGHT": (2, 2), "BEGINS": (2, 2),
    "CONTAINS": (2, 2), "REGEX": (2, 2), "ISCHANGED": (1, 1), "ISNEW": (0, 0),
    "PRIORVALUE": (1, 1), "TODAY": (0, 0), "NOW": (0, 0),
}  # fmt: skip
_NEEDS_FIELD = {"ISPICKVAL", "INCLUDES", "ISCHANGED", "PRIORVALUE"}


@dataclass
class Node:
    kind: str  # "lit" | "field" | "call" | "op" | "not" | "neg"
    value: Any = None  # literal value, field path, function or operator name
    args: tuple[Node, ...] = ()
    fd: FieldDef | None = None  # the field a "field" node reads


Resolver = Callable[[dict[str, Any], str], Any]
"""(record, "Account.Name") -> the parent field's value; the caller knows the records."""


@dataclass
class Formula:
    text: str
    root: Node

    def evaluate(
        self,
        record: dict[str, Any],
        old: dict[str, Any] | None = None,
        parent: Resolver | None = None,
        now: datetime | None = None,
    ) -> Any:
        return _Eval(record, old, parent, now or datetime.now(UTC)).run(self.root)

    def fields(self) -> set[str]:
        """The record's own fields the formula reads (for "changed fields" checks)."""
        out: set[str] = set()

        def walk(node: Node) -> None:
            if node.kind == "field" and "." not in node.value:
                out.add(node.value)
            for arg in node.args:
                walk(arg)

        walk(self.root)
        return out


def compile_formula(text: str, o: ObjectDef, schema: Schema, *, boolean: bool = True) -> Formula:
    """Parse a formula for object `o`; FormulaError with Salesforce's text when it is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("Error: Formula is empty")
    root = _Parser(text, o, schema).parse()
    _check_picklists(root)
    if boolean and not _is_boolean(root):
        raise FormulaError(
            "Error: Formula result is data type (Text), incompatible with expected data type "
            "(true/false)."
        )
    return Formula(text, root)


def _is_boolean(node: Node) -> bool:
    if node.kind == "lit":
        return isinstance(node.value, bool)
    if node.kind == "field":
        return node.fd is not None and node.fd.type == "boolean"
    if node.kind == "not":
        return True
    if node.kind == "op":
        return node.value in ("&&", "||", "=", "==", "!=", "<>", "<", ">", "<=", ">=")
    if node.kind == "call":
        if node.value in _BOOLEAN_FUNCTIONS:
            return True
        if node.value == "IF":
            return _is_boolean(node.args[1]) and _is_boolean(node.args[2])
    return False


class _Parser:
    def __init__(self, text: str, o: ObjectDef, schema: Schema) -> None:
        self.text = text
        self.o = o
        self.schema = schema
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN_RE.match(text, pos)
            if m is None or m.end() == pos:
                raise FormulaError(f"Error: Syntax error. Found '{text[pos:].strip()[:1]}'")
            kind = m.lastgroup or "op"
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise FormulaError("Error: Syntax error. Missing ')'")
        self.i += 1
        return tok

    def expect(self, op: str) -> None:
        tok = self.take()
        if tok != ("op", op):
            raise FormulaError(f"Error: Syntax error. Found '{tok[1]}'")

    def at_op(self, *ops: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "op" and tok[1] in ops

    def parse(self) -> Node:
        node = self.or_expr()
        tok = self.peek()
        if tok is not None:
            raise FormulaError(f"Error: Syntax error. Extra '{tok[1]}'")
        return node

    def _binary(self, ops: tuple[str, ...], nxt: Callable[[], Node]) -> Node:
        node = nxt()
        while self.at_op(*ops):
            op = self.take()[1]
            node = Node("op", op, (node, nxt()))
        return node

    def or_expr(self) -> Node:
        return self._binary(("||",), self.and_expr)

    def and_expr(self) -> Node:
        return self._binary(("&&",), self.comparison)

    def comparison(self) -> Node:
        node = self.additive()
        if self.at_op("=", "==", "!=", "<>", "<", ">", "<=", ">="):
            op = self.take()[1]
            node = Node("op", op, (node, self.additive()))
        return node

    def additive(self) -> Node:
        return self._binary(("+", "-", "&"), self.multiplicative)

    def multiplicative(self) -> Node:
        return self._binary(("*", "/"), self.unary)

    def unary(self) -> Node:
        if self.at_op("!"):
            self.take()
            return Node("not", None, (self.unary(),))
        if self.at_op("-"):
            self.take()
            return Node("neg", None, (self.unary(),))
        return self.primary()

    def primary(self) -> Node:
        kind, text = self.take()
        if kind == "number":
            return Node("lit", float(text) if "." in text else int(text))
        if kind == "string":
            return Node("lit", re.sub(r"\\(.)", r"\1", text[1:-1]))
        if kind == "op" and text == "(":
            node = self.or_expr()
            self.expect(")")
            return node
        if kind != "name":
            raise FormulaError(f"Error: Syntax error. Found '{text}'")
        upper = text.upper()
        if self.at_op("("):
            return self.call(upper)
        if upper in ("TRUE", "FALSE"):
            return Node("lit", upper == "TRUE")
        if upper == "NULL":
            return Node("lit", None)
        return self.field(text)

    def call(self, name: str) -> Node:
        if name not in _ARITY:
            raise FormulaError(f"Error: Unknown function {name}. Check spelling.")
        self.expect("(")
        args: list[Node] = []
        if not self.at_op(")"):
            args.append(self.or_expr())
            while self.at_op(","):
                self.take()
                args.append(self.or_expr())
        self.expect(")")
        low, high = _ARITY[name]
        if len(args) < low or (high is not None and len(args) > high):
            raise FormulaError(
                f"Error: Incorrect number of parameters for function '{name}()'. Expected "
                f"{low if high == low else f'{low} or more'}, received {len(args)}"
            )
        subject = args[0] if args else None
        if name == "ISPICKVAL" and subject is not None and subject.kind == "call":
            # ISPICKVAL(PRIORVALUE(Status), 'x'): the picklist is PRIORVALUE's field
            subject = subject.args[0] if subject.value == "PRIORVALUE" else subject
        if name in _NEEDS_FIELD and (subject is None or subject.kind != "field"):
            raise FormulaError(f"Error: Field expected as the first argument of {name}()")
        if name == "ISPICKVAL" and (
            subject is None or subject.fd is None or subject.fd.type != "picklist"
        ):
            raise FormulaError(
                f"Error: Field {subject.value if subject else ''} may not be used in this type "
                "of formula"
            )
        return Node("call", name, tuple(args))

    def field(self, path: str) -> Node:
        parts = path.split(".")
        current = self.o
        for part in parts[:-1]:
            rel = current.relationships.get(part.lower())
            target = None
            if rel is not None:
                target = next(
                    (self.schema.objects[t] for t in rel.reference_to if t in self.schema.objects),
                    None,
                )
            if target is None:
                raise FormulaError(f"Error: Field {part} does not exist. Check spelling.")
            current = target
        fd = current.field(parts[-1])
        if fd is None:
            raise FormulaError(f"Error: Field {parts[-1]} does not exist. Check spelling.")
        return Node("field", ".".join([*parts[:-1], fd.name]), (), fd)


def _is_picklist(fd: FieldDef) -> bool:
    return fd.type in ("picklist", "multipicklist")


def _picklist_error(node: Node) -> FormulaError:
    return FormulaError(
        f"Error: Field {node.value} is a picklist field. Picklist fields are only supported in "
        "certain functions."
    )


def _check_picklists(node: Node, allowed: bool = False) -> None:
    """Refuse a picklist field used outside the functions that accept one, as Salesforce does."""
    if node.kind == "field" and node.fd is not None and _is_picklist(node.fd) and not allowed:
        raise _picklist_error(node)
    for n, arg in enumerate(node.args):
        ok = node.kind == "call" and (
            node.value in _PICKLIST_OK or (node.value == "INCLUDES" and n == 0)
        )
        _check_picklists(arg, ok)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def _number(value: Any) -> float | int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class _Eval:
    def __init__(
        self,
        record: dict[str, Any],
        old: dict[str, Any] | None,
        parent: Resolver | None,
        now: datetime,
    ) -> None:
        self.record = record
        self.old = old
        self.parent = parent
        self.now = now

    def read(self, path: str, record: dict[str, Any] | None) -> Any:
        if record is None:
            return None
        if "." in path:
            return self.parent(record, path) if self.parent is not None else None
        return record.get(path)

    def run(self, node: Node) -> Any:
        kind = node.kind
        if kind == "lit":
            return node.value
        if kind == "field":
            return self.read(node.value, self.record)
        if kind == "not":
            return not self.truth(node.args[0])
        if kind == "neg":
            value = _number(self.run(node.args[0]))
            return None if value is None else -value
        if kind == "op":
            return self.operator(node)
        return self.function(node)

    def truth(self, node: Node) -> bool:
        return bool(self.run(node))

    def operator(self, node: Node) -> Any:
        op = node.value
        if op == "&&":
            return self.truth(node.args[0]) and self.truth(node.args[1])
        if op == "||":
            return self.truth(node.args[0]) or self.truth(node.args[1])
        left, right = self.run(node.args[0]), self.run(node.args[1])
        if op == "&":
            return _text(left) + _text(right)
        if op in ("+", "-", "*", "/"):
            a, b = _number(left), _number(right)
            if a is None or b is None:
                return None
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            return None if b == 0 else a / b
        if op in ("=", "=="):
            return _equal(left, right)
        if op in ("!=", "<>"):
            return not _equal(left, right)
        if _blank(left) or _blank(right):
            return False  # a blank never compares as smaller or larger
        a, b = _number(left), _number(right)
        pair: tuple[Any, Any] = (a, b)
        if a is None or b is None:
            pair = (str(left), str(right))
        return {
            "<": pair[0] < pair[1],
            ">": pair[0] > pair[1],
            "<=": pair[0] <= pair[1],
            ">=": pair[0] >= pair[1],
        }[op]

    def function(self, node: Node) -> Any:
        name, args = node.value, node.args
        if name == "AND":
            return all(self.truth(a) for a in args)
        if name == "OR":
            return any(self.truth(a) for a in args)
        if name == "NOT":
            return not self.truth(args[0])
        if name == "IF":
            return self.run(args[1]) if self.truth(args[0]) else self.run(args[2])
        if name == "CASE":
            subject = self.run(args[0])
            pairs = args[1:-1] if len(args) % 2 == 0 else args[1:]
            for i in range(0, len(pairs) - 1, 2):
                if _equal(subject, self.run(pairs[i])):
                    return self.run(pairs[i + 1])
            return self.run(args[-1]) if len(args) % 2 == 0 else None
        if name == "ISNEW":
            return self.old is None
        if name == "ISCHANGED":
            if self.old is None:
                return False
            path = args[0].value
            return not _equal(self.read(path, self.record), self.read(path, self.old))
        if name == "PRIORVALUE":
            return self.read(args[0].value, self.old if self.old is not None else self.record)
        if name == "TODAY":
            return self.now.date().isoformat()
        if name == "NOW":
            return self.now.isoformat()
        values = [self.run(a) for a in args]
        first = values[0]
        if name in ("ISBLANK", "ISNULL"):
            return _blank(first)
        if name == "BLANKVALUE":
            return values[1] if _blank(first) else first
        if name == "ISPICKVAL":
            return _text(first) == _text(values[1])
        if name == "INCLUDES":
            return _text(values[1]) in _text(first).split(";")
        if name == "TEXT":
            return _text(first)
        if name == "VALUE":
            return _number(first)
        if name == "LEN":
            return len(_text(first))
        if name == "LOWER":
            return _text(first).lower()
        if name == "UPPER":
            return _text(first).upper()
        if name == "TRIM":
            return _text(first).strip()
        if name in ("LEFT", "RIGHT"):
            n = int(_number(values[1]) or 0)
            text = _text(first)
            return text[: max(n, 0)] if name == "LEFT" else (text[-n:] if n > 0 else "")
        if name == "BEGINS":
            return _text(first).startswith(_text(values[1]))
        if name == "CONTAINS":
            return _text(values[1]) in _text(first)
        if name == "REGEX":
            # Java's String.matches: the whole text must match
            try:
                return re.fullmatch(_text(values[1]), _text(first)) is not None
            except re.error:
                return False
        raise FormulaError(f"Error: Unknown function {name}. Check spelling.")


def _equal(left: Any, right: Any) -> bool:
    if _blank(left) and _blank(right):
        return True
    a, b = _number(left), _number(right)
    if a is not None and b is not None and not isinstance(left, str | bool):
        return bool(a == b)
    if isinstance(left, bool) or isinstance(right, bool):
        return bool(left) == bool(right)
    return _text(left) == _text(right)
