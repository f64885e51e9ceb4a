"""Read YAML into plain data while keeping where every node stood.

PyYAML's safe loader silently accepts things a scenario author would not mean
(duplicate keys: the last one wins; aliases that expand without bound; tags
such as !!binary or !!timestamp that give non-JSON values). We compose the
node graph with the safe loader (libyaml's when available) and build the data
ourselves, so that duplicate keys are errors, alias expansion is measured and
refused before it happens, only plain data tags are accepted, and every value
and key keeps its line and column. Values JSON has no room for (NaN, infinity,
lone surrogates from "\\ud800" escapes) are refused here, so nothing
downstream ever sees them; and a file is read only if it is a regular file,
never beyond MAX_FILE_BYTES (a FIFO would hang, /dev/zero never ends).
"""

from __future__ import annotations

import math
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from smtpscript.errors import Problem, ScenarioError

JsonPath = tuple[str | int, ...]
MAX_NODES = 100_000  # after alias expansion; a "billion laughs" file stops here
MAX_DEPTH = 50  # mappings and lists inside each other; a scenario needs fewer than 10
MAX_FILE_BYTES = 4 * 1024 * 1024

_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_TAG = "tag:smtpscript,2025:plain"  # a plain scalar whose type is resolved on demand
_RESOLVER = yaml.resolver.Resolver()
_SURROGATE = re.compile("[\ud800-\udfff]")
_AWKWARD_KEY = re.compile(r"[\s.:\[\]'\"]")


def _make_fast_loader() -> type | None:
    """libyaml's parser (when PyYAML has it) with a lazy resolver.

    The composer calls ``resolve`` for every scalar; keys are only ever text, so
    plain scalars get a placeholder tag and the builder resolves values itself.
    """
    try:
        from yaml.cyaml import CParser as parser
    except ImportError:  # PyYAML built without libyaml
        return None

    class FastLoader(parser, yaml.constructor.SafeConstructor, yaml.resolver.BaseResolver):  # type: ignore[misc, valid-type]
        def __init__(self, stream: str):
            parser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.BaseResolver.__init__(self)

        def resolve(self, kind: type, value: str, implicit: tuple[bool, bool]) -> str:
            if kind is yaml.ScalarNode:
                return _PLAIN_TAG if implicit[0] else "tag:yaml.org,2002:str"
            if kind is yaml.SequenceNode:
                return "tag:yaml.org,2002:seq"
            return "tag:yaml.org,2002:map"

        def descend_resolver(self, current_node: object, current_index: object) -> None:
            pass

        def ascend_resolver(self) -> None:
            pass

    return FastLoader


_FAST_LOADER = _make_fast_loader()


@dataclass
class Document:
    """Plain data of one YAML file plus the (line, column) of each value and key."""

    file: str
    data: Any
    value_marks: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    # literal block scalars (``key: |``): where their first line of text starts
    block_marks: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    # problems found while reading that do not stop reading (duplicate keys)
    problems: list[Problem] = field(default_factory=list)

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
    """('steps', 3, 'expect') -> 'steps[3].expect'. A key that would not read as one
    name there (empty, spaces, '.', ':', brackets, quotes, line breaks) is quoted:
    headers['To:'], vars['a\\nb'], so the path is unambiguous and stays on one line."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.isprintable() or not part or _AWKWARD_KEY.search(part):
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def read_document(path: Path, display: str | None = None) -> Document:
    """Load one YAML file or raise ScenarioError with a positioned problem."""
    name = display or str(path)
    try:
        raw = read_bounded(path, MAX_FILE_BYTES)
    except FileTooLarge:
        raise _too_large(name) from None
    except NotRegularFile as exc:
        raise _fail(name, 1, 1, f"not a regular file ({exc})") from None
    except OSError as exc:
        raise _fail(name, 1, 1, f"cannot read file: {exc.strerror or exc}") from None
    return parse_document(raw, name)


class NotRegularFile(Exception):
    """The path is a FIFO, device, socket or directory; the message says which."""


class FileTooLarge(Exception):
    """The file holds more bytes than the caller's limit."""


def file_kind(mode: int) -> str:
    """What a non-regular file is, for messages: 'a FIFO', 'a character device', ..."""
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((word for test, word in kinds if test(mode)), "not a plain file")


def read_bounded(path: Path, limit: int) -> bytes:
    """A regular file's bytes, at most ``limit`` of them (else FileTooLarge).

    Stat before opening, so a FIFO or device is never opened (opening a FIFO waits
    for a writer; some devices act on open). O_NONBLOCK and fstat guard the race of
    the path being swapped in between; reads stop at limit + 1 bytes whatever
    st_size said (a file may grow, /proc files report 0).
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFile(file_kind(mode))
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(file_kind(info.st_mode))
        if info.st_size > limit:
            raise FileTooLarge
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, 1 << 20) or 1)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise FileTooLarge
    return b"".join(chunks)


def _too_large(name: str) -> ScenarioError:
    return _fail(name, 1, 1, f"file is larger than {MAX_FILE_BYTES // 1024 // 1024} MiB")


def parse_document(raw: bytes, name: str) -> Document:
    if len(raw) > MAX_FILE_BYTES:
        raise _too_large(name)
    text = _decode(raw, name)
    node = _compose(text, name)
    if node is None:
        raise _fail(
            name, 1, 1, "file is empty: expected a mapping with smtpscript:, title:, steps:"
        )
    if "*" in text:  # only aliases can make a document bigger than its text
        _check_expansion(node, name)
    doc = Document(name, None)
    builder = _Builder(doc, text)
    doc.data = builder.build(node, ())
    if builder.refused:  # values no later phase may see: refuse the file with all of them
        raise ScenarioError(builder.refused + doc.problems)
    return doc


def _compose(text: str, name: str) -> yaml.Node | None:
    """The node graph of ``text``: libyaml's parser when present (fast), else PyYAML's.

    Marks are the same from both. On an error we parse again with the pure-Python
    parser, whose messages we know and translate, so messages do not depend on
    whether libyaml is installed.
    """
    if _FAST_LOADER is not None:
        try:
            return yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
            pass
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_problem(exc, name, text) from None
    except yaml.YAMLError as exc:  # unmarked errors are rare; still one line
        raise _fail(name, 1, 1, f"YAML error: {exc}") from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise _fail(name, 1, 1, f"nested more than {MAX_DEPTH} levels deep") from None


def _check_expansion(root: yaml.Node, name: str) -> None:
    """Refuse a document nested too deep, or whose aliases expand it beyond MAX_NODES.

    Measured on the node graph before anything is built: size and height are
    memoised per node, so a "billion laughs" file costs a few hundred steps to
    measure, not a billion to build. Iterative, so deep nesting cannot exhaust
    Python's stack (and the builder, which recurses, only sees bounded depth).
    """
    cap = MAX_NODES + 1
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = _children(node)
        if done:
            size[id(node)] = min(cap, 1 + sum(size[id(c)] for c in children))
            height[id(node)] = 1 + max((height[id(c)] for c in children), default=0)
            continue
        if id(node) in size:
            continue
        # until measured; a node met again before that contains itself: endless
        size[id(node)], height[id(node)] = cap, MAX_DEPTH + 1
        stack.append((node, True))
        stack += [(c, False) for c in children if id(c) not in size]

    def descend(too_big: dict[int, int], limit: int, steps: int) -> yaml.Node:
        node = root
        for _ in range(steps):
            child = next((c for c in _children(node) if too_big[id(c)] > limit), None)
            if child is None or child is node:
                break
            node, limit = child, limit - (too_big is height)
        return node

    if height[id(root)] > MAX_DEPTH:
        node = descend(height, MAX_DEPTH, MAX_DEPTH)
        message = f"nested more than {MAX_DEPTH} levels deep"
    elif size[id(root)] > MAX_NODES:
        node = descend(size, MAX_NODES, cap)  # the smallest node too big on its own
        message = (
            f"aliases expand this document to more than {MAX_NODES} values "
            "(a 'billion laughs' file?): refused"
        )
    else:
        return
    raise _fail(name, node.start_mark.line + 1, node.start_mark.column + 1, message)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return node.value
    return []


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


def _syntax_problem(exc: yaml.MarkedYAMLError, name: str, text: str) -> ScenarioError:
    """One plain sentence for PyYAML's error, placed where the user must look."""
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    context, cmark = exc.context or "", exc.context_mark
    where = f"line {cmark.line + 1}, column {cmark.column + 1}" if cmark else ""
    if "'\\t'" in problem:
        before = text.splitlines()[line - 1][: column - 1] if line <= len(text.splitlines()) else ""
        message = (
            "tab character in indentation: YAML indents with spaces only"
            if not before.strip(" ")
            else "tab character: use spaces here"
        )
    elif "while scanning a quoted scalar" in context and cmark:
        line, column = cmark.line + 1, cmark.column + 1
        message = "YAML syntax error: this quoted string is never closed"
    elif context.startswith("while parsing a flow ") and cmark:
        line, column = cmark.line + 1, cmark.column + 1
        opener, closer = ("[", "]") if "sequence" in context else ("{", "}")
        got = problem.rsplit("but got ", 1)[-1].replace("'<stream end>'", "the end of the file")
        message = (
            f"YAML syntax error: this '{opener}' is never closed: expected ',' or "
            f"'{closer}' but found {got}"
        )
    elif "could not find expected ':'" in problem and cmark:
        line, column = cmark.line + 1, cmark.column + 1
        message = "YAML syntax error: expected 'key: value' here (missing ':'?)"
    elif problem == "mapping values are not allowed here":
        message = (
            "YAML syntax error: ':' is not allowed here: quote a value that contains ': ' "
            '(e.g. send: "MAIL FROM: <a@example.org>") or check the indentation'
        )
    elif "that cannot start any token" in problem:
        char = problem.split("'")[1] if problem.count("'") >= 2 else "?"
        message = f"YAML syntax error: a value cannot start with {char!r}: quote it"
    elif "found undefined alias" in problem:
        alias = problem.rsplit(" ", 1)[-1].strip("'")
        message = f"YAML syntax error: alias '*{alias}' refers to no anchor '&{alias}' before it"
    elif "found duplicate anchor" in context:
        anchor = context.split("'")[1]
        first = f" (first defined on line {cmark.line + 1})" if cmark else ""
        message = f"YAML syntax error: duplicate anchor '&{anchor}'{first}"
    elif "expected a single document" in context:
        message = "YAML syntax error: a second document ('---'): a file holds one scenario"
    else:
        at = f" at {where}" if where and cmark != mark else ""
        message = f"YAML syntax error: {problem}" + (f" ({context}{at})" if context else "")
    return _fail(name, line, column, message)


_STANDARD_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")
)
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_KNOWN_TAGS = _STANDARD_TAGS | {_TIMESTAMP_TAG, _PLAIN_TAG}


class _Builder:
    """Turns a composed node graph into plain data, recording marks."""

    def __init__(self, doc: Document, text: str):
        self.doc = doc
        self.text = text
        self.lines: list[str] | None = None
        self.refused: list[Problem] = []  # NaN, infinity, surrogates: all reported at once
        self.constructor = yaml.SafeLoader("")  # only its scalar constructors are used
        self.scalar_constructors = {
            "tag:yaml.org,2002:int": self.constructor.construct_yaml_int,
            "tag:yaml.org,2002:float": self.constructor.construct_yaml_float,
            "tag:yaml.org,2002:bool": self.constructor.construct_yaml_bool,
            "tag:yaml.org,2002:null": self.constructor.construct_yaml_null,
        }

    def build(self, node: yaml.Node, path: JsonPath) -> Any:
        mark = (node.start_mark.line + 1, node.start_mark.column + 1)
        if len(path) >= MAX_DEPTH:  # without aliases, _check_expansion did not look
            raise _fail(self.doc.file, *mark, f"nested more than {MAX_DEPTH} levels deep")
        self.doc.value_marks.setdefault(path, mark)
        if node.tag not in _KNOWN_TAGS:
            self._bad_tag(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if node.style == "|" and "\n" in node.value:
            self._record_block(node, path)
        if node.style == '"' and _SURROGATE.search(node.value):  # only escapes make them
            return self._refuse(node, path, _surrogate_message(node.value))
        value = self._scalar(node)
        if isinstance(value, float) and not math.isfinite(value):
            # JSON has no NaN or infinity, yet JSON Schema lets NaN through minimum: 0
            message = f"{node.value!r} is not a finite number (NaN and infinity are not allowed)"
            return self._refuse(node, path, message)
        return value

    def _refuse(self, node: yaml.Node, path: JsonPath, message: str) -> None:
        """Note a value (or key) no later phase may see; it reads as null meanwhile."""
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        self.refused.append(Problem(self.doc.file, line, column, format_path(path), message))

    def _bad_tag(self, node: yaml.Node) -> None:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        raise _fail(
            self.doc.file,
            line,
            column,
            f"unsupported YAML tag {tag!r}: only plain YAML data (text, numbers, true/false, "
            "lists, mappings) is allowed",
        )

    def _record_block(self, node: yaml.ScalarNode, path: JsonPath) -> None:
        """Where the text of a literal block scalar (``key: |``) starts: its second line."""
        if self.lines is None:
            self.lines = self.text.splitlines()
        lines = self.lines
        first = node.start_mark.line + 1  # 0-based index of the line after the '|'
        for line in lines[first : node.end_mark.line + 1]:
            if line.strip():
                indent = len(line) - len(line.lstrip(" "))
                self.doc.block_marks[path] = (first + 1, indent + 1)
                return

    def _scalar(self, node: yaml.Node) -> Any:
        tag = node.tag
        if tag == _PLAIN_TAG:
            tag = node.tag = _RESOLVER.resolve(yaml.ScalarNode, node.value, (True, False))
        if tag == "tag:yaml.org,2002:str":
            return node.value
        if tag == _TIMESTAMP_TAG:
            return node.value  # a date in a scenario is text (a header, a name), not a datetime
        try:
            return self.scalar_constructors[tag](node)
        except (yaml.constructor.ConstructorError, ValueError) as exc:
            mark = node.start_mark
            message = f"invalid {tag[18:]}: {exc}"
            if "Exceeds the limit" in str(exc):  # Python's guard against slow int parsing
                limit = sys.get_int_max_str_digits()
                message = f"a number with more than {limit} digits: quote it if it is text"
            raise _fail(self.doc.file, mark.line + 1, mark.column + 1, message) from None

    def _mapping(self, node: yaml.MappingNode, path: JsonPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merge_nodes = []
        for key_node, value_node in node.value:
            key, tag = key_node.value, key_node.tag
            if tag == _MERGE_TAG or (key == "<<" and tag == _PLAIN_TAG):
                merge_nodes.append(value_node)  # after the explicit keys, so their marks win
                continue
            if tag not in _KNOWN_TAGS or not isinstance(key, str):
                key = self._key(key_node)
            if key_node.style == '"' and _SURROGATE.search(key):
                self._refuse(key_node, path, "a key " + _surrogate_message(key))
                continue
            key_path = (*path, key)
            mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in out:
                first = self.doc.key_marks[key_path][0]
                self.doc.problems.append(
                    Problem(
                        self.doc.file,
                        *mark,
                        format_path(key_path),
                        f"duplicate key {key!r} (first defined on line {first})",
                    )
                )
                continue  # keep the first; the file is refused anyway
            self.doc.key_marks.setdefault(key_path, mark)
            out[key] = self.build(value_node, key_path)
        if not merge_nodes:
            return out
        merged: dict[str, Any] = {}
        for value_node in merge_nodes:
            merged.update(self._merge_source(value_node, path))
        return {**merged, **out}

    def _merge_source(self, node: yaml.Node, path: JsonPath) -> dict[str, Any]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in reversed(sources):  # earlier sources win, as YAML 1.1 says
            if not isinstance(source, yaml.MappingNode):
                line, column = source.start_mark.line + 1, source.start_mark.column + 1
                raise _fail(self.doc.file, line, column, "merge key '<<' needs a mapping")
            merged.update(self.build(source, path))
        return merged

    def _key(self, node: yaml.Node) -> str:
        """A key is its text: ``on:``, ``yes:`` or ``1:`` name things, they are not values."""
        if node.tag not in _KNOWN_TAGS:
            self._bad_tag(node)
        if isinstance(node, yaml.ScalarNode):
            return node.value
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        raise _fail(
            self.doc.file, line, column, "mapping keys must be plain words, not lists or mappings"
        )


def _surrogate_message(text: str) -> str:
    """Why a string with a surrogate code point is refused; the text itself cannot be
    printed (it does not encode), so the escape is shown."""
    found = _SURROGATE.search(text)
    escape = f"\\u{ord(found.group()):04x}" if found else "\\ud800"
    return (
        f"contains {escape}, a UTF-16 surrogate escape, which is not a character: write "
        "the character itself, or \\UXXXXXXXX for one above U+FFFF"
    )
