"""Hostile YAML refused before it is loaded: aliases that refer to themselves, and alias bombs.

YAML aliases (`*name`) reuse an anchored value (`&name`). A value that contains an alias to
itself is a cycle (Python's loader builds it, and everything that walks it after recurses until
it fails); a few aliases of aliases expand to billions of values ("billion laughs") that take
minutes of CPU to walk. `hostile(node)` walks the composed node graph once, iteratively, with a
budget, and says what is wrong and where (the line of the value and the key that holds it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

MAX_VALUES = 20_000
"""Values (scalars, lists, mappings) a config may expand to once aliases are followed; the
example config has a few hundred."""


@dataclass(frozen=True)
class Hostile:
    line: int
    path: tuple[Any, ...]
    message: str


def _children(node: yaml.Node) -> list[tuple[Any, yaml.Node, int | None]]:
    """(key, value, line of the key) of a mapping, (index, item, None) of a list."""
    if isinstance(node, yaml.MappingNode):
        return [
            (
                key.value if isinstance(key, yaml.ScalarNode) else "?",
                value,
                key.start_mark.line + 1,
            )
            for key, value in node.value
        ]
    if isinstance(node, yaml.SequenceNode):
        return [(i, item, None) for i, item in enumerate(node.value)]
    return []


def hostile(root: yaml.Node | None) -> Hostile | None:
    """The first cycle or the point where the expansion passes MAX_VALUES; None when safe."""
    if root is None:
        return None
    seen = 0
    # Depth-first with the chain of nodes above each one (by identity), to spot a cycle.
    # `top` is the line of the top-level key the node is under (where an alias bomb goes off).
    stack: list[tuple[yaml.Node, tuple[Any, ...], frozenset[int], int]] = [
        (root, (), frozenset(), root.start_mark.line + 1)
    ]
    while stack:
        node, path, above, top = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return Hostile(
                top,
                path[:1],
                f"the file expands to more than {MAX_VALUES:,} values once its aliases (*name) "
                "are followed (an alias bomb?); write the values out or use fewer aliases",
            )
        chain = above | {id(node)}
        for key, child, key_line in _children(node):
            if id(child) in chain:
                return Hostile(
                    key_line or node.start_mark.line + 1,
                    (*path, key),
                    "an alias (*name) here refers to a value that contains it, which never "
                    f"ends (the anchor's value starts on line {child.start_mark.line + 1}); "
                    "refer to the anchor only outside its own value",
                )
            stack.append((child, (*path, key), chain, key_line if not path and key_line else top))
    return None
