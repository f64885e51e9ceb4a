"""Read YAML into plain data while keeping where every node stood.

PyYAML's safe loader silently accepts things a scenario author would not mean
(duplicate keys: the last one wins; aliases that expand without bound). We
compose the node graph with the safe loader and build the data ourselves, so
that duplicate keys are errors, alias expansion is bounded and every value
and key keeps its line and column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from smtpscript.errors import Problem, ScenarioError

JsonPath = tuple[str | int, ...]
MAX_NODES = 100_000  # after alias expansion; a "billion laughs" file stops here
MAX_FILE_BYTES = 4 * 1024 * 1024

_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class Document:
    """Plain data of one YAML file plus the (line, column) of each value and key."""

    file: str
    data: Any
    value_marks: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)

    def mark(self, path: JsonPath, *, key: bool = False) -> tuple[int, int]:
        """Best position for a path: the key or value itself, else its nearest ancestor."""
        marks = self.key_marks if key else self.value_marks
        while path:
            if path in marks:
                return marks[path]
            if path in self.value_marks:
                return self.value_marks[path]
            path = path[:-1]
        return self.value_marks.get((), (1, 1))

    def problem(self, path: JsonPath, message: str, *, key: bool = False) -> Problem:
        line, column = self.mark(path, key=key)
        return Problem(self.file, line, column, format_path(path), message)


def format_path(path: JsonPath) -> str:
    """('steps', 3, 'expect') -> 'steps[3].expect'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def read_document(path: Path, display: str | None = None) -> Document:
    """Load one YAML file or raise ScenarioError with a positioned problem."""
    name = display or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(
            [Problem(name, 1, 1, "", f"cannot read file: {exc.strerror}")]
        ) from None
    return parse_document(raw, name)


def parse_document(raw: bytes, name: str) -> Document:
    if len(raw) > MAX_FILE_BYTES:
        raise _fail(name, 1, 1, f"file is larger than {MAX_FILE_BYTES // 1024 // 1024} MiB")
    text = _decode(raw, name)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_problem(exc, name) from None
    except yaml.YAMLError as exc:  # unmarked errors are rare; still one line
        raise _fail(name, 1, 1, f"YAML error: {exc}") from None
    if node is None:
        raise _fail(
            name, 1, 1, "file is empty: expected a mapping with smtpscript:, title:, steps:"
        )
    doc = Document(name, None)
    doc.data = _Builder(doc).build(node, ())
    return doc


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise _fail(
            name, line, column, f"file is not UTF-8 text (byte 0x{raw[exc.start]:02x})"
        ) from None


def _fail(name: str, line: int, column: int, message: str) -> ScenarioError:
    return ScenarioError([Problem(name, line, column, "", message)])


def _syntax_problem(exc: yaml.MarkedYAMLError, name: str) -> ScenarioError:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    if "'\\t'" in problem or "tab" in problem:
        message = "tab character in indentation: YAML indents with spaces only"
    else:
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        message = f"YAML syntax error: {problem}{context}"
    return _fail(name, line, column, message)


class _Builder:
    """Turns a composed node graph into plain data, recording marks."""

    def __init__(self, doc: Document):
        self.doc = doc
        self.count = 0
        self.constructor = yaml.SafeLoader("")  # only its scalar constructors are used

    def build(self, node: yaml.Node, path: JsonPath) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
            raise _fail(
                self.doc.file,
                line,
                column,
                f"document expands to more than {MAX_NODES} nodes (aliases/anchors nested "
                "too deep?)",
            )
        self.doc.value_marks.setdefault(
            path, (node.start_mark.line + 1, node.start_mark.column + 1)
        )
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark or node.start_mark
            problem = str(exc.problem)
            if "constructor for the tag" in problem:
                problem = f"unsupported YAML tag {node.tag!r}: only plain YAML data is allowed"
            raise _fail(self.doc.file, mark.line + 1, mark.column + 1, problem) from None

    def _mapping(self, node: yaml.MappingNode, path: JsonPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        explicit: set[str] = set()
        merge_nodes = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merge_nodes.append(value_node)  # after the explicit keys, so their marks win
                continue
            key = self._key(key_node)
            if key in explicit:
                line, column = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                first = self.doc.key_marks.get((*path, key), (line, column))[0]
                raise _fail(
                    self.doc.file,
                    line,
                    column,
                    f"{format_path((*path, key))}: duplicate key '{key}' (first defined on line "
                    f"{first})",
                )
            explicit.add(key)
            self.doc.key_marks[(*path, key)] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            out[key] = self.build(value_node, (*path, key))
        merged: dict[str, Any] = {}
        for value_node in merge_nodes:
            merged.update(self._merge_source(value_node, path))
        return {**merged, **out}

    def _merge_source(self, node: yaml.Node, path: JsonPath) -> dict[str, Any]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in reversed(sources):  # earlier sources win, as YAML 1.1 says
            value = self.build(source, path)
            if not isinstance(value, dict):
                line, column = source.start_mark.line + 1, source.start_mark.column + 1
                raise _fail(self.doc.file, line, column, "merge key '<<' needs a mapping")
            merged.update(value)
        return merged

    def _key(self, node: yaml.Node) -> str:
        value = self._scalar(node) if isinstance(node, yaml.ScalarNode) else None
        if isinstance(value, str | int | float | bool) and not isinstance(value, bool):
            return str(value)
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        raise _fail(self.doc.file, line, column, "mapping keys must be plain words")
