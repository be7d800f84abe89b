"""YAML with positions: parse a profile file keeping the node tree, so that an error found
later (by the JSON Schema, by a cross-file check) can be reported at its line.

PyYAML's ``compose`` keeps a ``start_mark`` on every node; ``line_of`` walks a JSON-style
path (keys and indices) through that tree. Duplicate mapping keys, which PyYAML would
silently resolve to the last one, are reported here too.

PyYAML is imported on the first parse, not with the module: an agent whose profiles
were parsed at an earlier start takes their data from its memo
(``profiles/schema_memo.py``) and never loads PyYAML (~0.9 MiB) unless a problem needs
a line number, which parses that one text again (``ParsedYaml.remembered``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import yaml

PathItem = str | int


class YamlSyntaxError(Exception):
    """The text is not YAML; ``line`` is 1-based (None if PyYAML gave no position)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class ParsedYaml:
    """A parsed document: the plain data and the node tree it came from."""

    __slots__ = ("_root", "_text", "data", "duplicate_keys")

    def __init__(
        self,
        data: object,
        root: yaml.Node | None,
        duplicate_keys: tuple[tuple[tuple[PathItem, ...], int], ...],
    ) -> None:
        self.data = data
        self.duplicate_keys = duplicate_keys
        self._root = root
        self._text: str | None = None

    @classmethod
    def remembered(cls, data: object, text: str) -> ParsedYaml:
        """The data of ``text``, which parsed before without duplicate keys; its node tree
        is parsed only if a line number is asked for."""
        parsed = cls(data, None, ())
        parsed._text = text
        return parsed

    @property
    def root(self) -> yaml.Node | None:
        if self._text is not None:
            self._root, self._text = parse(self._text).root, None
        return self._root


def parse(text: str) -> ParsedYaml:
    """Parse one YAML document safely; raise ``YamlSyntaxError`` with the line on bad input."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
        raise YamlSyntaxError(mark.line + 1 if mark else None, message) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(None, str(exc)) from exc
    finally:
        loader.dispose()
    return ParsedYaml(data, root, tuple(_duplicates(root, ())))


def _duplicates(
    node: yaml.Node | None, path: tuple[PathItem, ...]
) -> Iterable[tuple[tuple[PathItem, ...], int]]:
    import yaml  # loaded already: ``node`` came from it

    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                yield (*path, key), key_node.start_mark.line + 1
            seen.add(key)
            yield from _duplicates(value_node, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicates(item, (*path, index))


def line_of(root: yaml.Node | None, path: Sequence[PathItem]) -> int | None:
    """The 1-based line of the deepest node on ``path`` that exists in the tree.

    For a mapping key the key's own line is returned (where a person looks for the
    field); a path that leaves the tree stops at the last node found, which is where a
    missing field would have to be added.
    """
    if root is None:
        return None
    import yaml  # loaded already: ``root`` came from it

    node: yaml.Node = root
    line = node.start_mark.line + 1
    for item in path:
        found: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(item):
                    line = key_node.start_mark.line + 1
                    found = value_node
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(item, int) and item < len(node.value)
        ):
            found = node.value[item]
            line = found.start_mark.line + 1
        if found is None:
            break
        node = found
    return line


def field_name(path: Iterable[PathItem]) -> str:
    """A JSON path as a person reads it: ``match[0].usb.vendor_id`` (``<root>`` if empty)."""
    text = ""
    for item in path:
        text += f"[{item}]" if isinstance(item, int) else (f".{item}" if text else str(item))
    return text or "<root>"
