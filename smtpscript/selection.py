"""Which scenarios run: --tag, --skip-tag, -k EXPR, --severity-min, --last-failed.

``-k`` reads like pytest's: words matched case-insensitively as substrings of a
scenario's title and file, joined with ``and``, ``or``, ``not`` and
parentheses. --last-failed keeps the failed (scenario, target) pairs of the
previous run in ``.smtpscript/lastfailed.json`` next to the library config.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from smtpscript.errors import ConfigError
from smtpscript.model import SEVERITIES, Scenario
from smtpscript.results import ScenarioResult

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")
_KEYWORDS = ("and", "or", "not")
MAX_EXPRESSION = 1000  # characters; a -k longer than this is not a selection


@dataclass(frozen=True)
class Selection:
    tags: tuple[str, ...] = ()  # any of them
    skip_tags: tuple[str, ...] = ()
    keyword: str | None = None  # -k EXPR
    severity_min: str | None = None

    def apply(self, scenarios: Sequence[Scenario]) -> list[Scenario]:
        matches = compile_keyword(self.keyword) if self.keyword else None
        floor = SEVERITIES.index(self.severity_min) if self.severity_min else 0  # type: ignore[arg-type]
        wanted, unwanted = set(self.tags), set(self.skip_tags)
        return [
            s
            for s in scenarios
            if (not wanted or wanted & set(s.tags))
            and not unwanted & set(s.tags)
            and SEVERITIES.index(s.severity) >= floor
            and (matches is None or matches(f"{s.title} {s.file}"))
        ]

    def describe(self) -> str:
        """The filters in words, for 'no scenarios to run with ...'."""
        parts = []
        if self.tags:
            parts.append(f"tag {' or '.join(self.tags)}")
        if self.skip_tags:
            parts.append(f"without tag {', '.join(self.skip_tags)}")
        if self.keyword:
            parts.append(f"-k {self.keyword!r}")
        if self.severity_min:
            parts.append(f"severity {self.severity_min} or worse")
        return " and ".join(parts)


def compile_keyword(expression: str) -> Callable[[str], bool]:
    """A -k expression as a test on text; ConfigError saying what is wrong with it."""
    if len(expression) > MAX_EXPRESSION:
        raise ConfigError(f"-k: longer than {MAX_EXPRESSION} characters")
    tokens = _TOKEN.findall(expression)
    if not tokens:
        raise ConfigError("-k: empty expression")
    parser = _Parser(expression, tokens)
    test = parser.expression()
    if parser.pos != len(tokens):
        raise parser.error(f"unexpected {tokens[parser.pos]!r}")
    return lambda text: test(text.lower())


class _Parser:
    """expr := term ('or' term)*; term := factor ('and' factor)*;
    factor := 'not' factor | '(' expr ')' | WORD"""

    def __init__(self, source: str, tokens: list[str]):
        self.source, self.tokens, self.pos = source, tokens, 0
        self.depth = 0

    def error(self, why: str) -> ConfigError:
        return ConfigError(f"-k {self.source!r}: {why} (use words with and, or, not, ( ))")

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise self.error("the expression ends too early")
        self.pos += 1
        return token

    def expression(self) -> Callable[[str], bool]:
        terms = [self.term()]
        while self.peek() == "or":
            self.take()
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else lambda t: any(term(t) for term in terms)

    def term(self) -> Callable[[str], bool]:
        factors = [self.factor()]
        while self.peek() == "and":
            self.take()
            factors.append(self.factor())
        return factors[0] if len(factors) == 1 else lambda t: all(f(t) for f in factors)

    def factor(self) -> Callable[[str], bool]:
        token = self.take()
        if token == "not":
            inner = self._nested(self.factor)
            return lambda t: not inner(t)
        if token == "(":
            inner = self._nested(self.expression)
            if self.take() != ")":
                raise self.error("'(' is never closed")
            return inner
        if token in (")", "and", "or"):
            raise self.error(f"unexpected {token!r}")
        word = token.lower()
        return lambda t: word in t

    def _nested(self, parse: Callable[[], Callable[[str], bool]]) -> Callable[[str], bool]:
        self.depth += 1
        if self.depth > 50:
            raise self.error("nested too deeply")
        try:
            return parse()
        finally:
            self.depth -= 1


# --- --shard I/N ----------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """Run I of N: the (scenario, target) pairs whose hash falls to it. The hash reads only
    the scenario's file relative to the library root (library_relative: the same on every
    machine, wherever the checkout is) and the target name, so adding, removing or
    reordering files moves no other pair from shard to shard, and N jobs together run
    each pair exactly once."""

    index: int  # 1-based, as people count CI jobs
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        first, sep, second = text.partition("/")
        if not (
            sep and first.isascii() and first.isdigit() and second.isascii() and second.isdigit()
        ):
            raise ConfigError(f"--shard {text!r}: expected I/N, e.g. 2/5")
        index, count = int(first), int(second)
        if not 1 <= index <= count <= 10_000:
            raise ConfigError(f"--shard {text}: I must be from 1 to N (N at most 10000)")
        return cls(index, count)

    def holds(self, scenario_id: str, target: str) -> bool:
        digest = hashlib.sha256(f"{scenario_id}\0{target}".encode("utf-8", "surrogatepass"))
        return int.from_bytes(digest.digest()[:8], "big") % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


# --- --last-failed -------------------------------------------------------------------

LAST_FAILED = "lastfailed.json"
MAX_STATE_BYTES = 16 * 1024 * 1024


def library_relative(file: str, root: Path) -> str:
    """A scenario file as the library names it wherever it is checked out: relative to
    the library root (what shards hash and --last-failed stores)."""
    try:
        return os.path.relpath(os.path.abspath(file), root)
    except ValueError:  # another drive (Windows)
        return os.path.abspath(file)


def pair_key(file: str, target: str) -> str:
    """A (scenario, target) pair as stored: the file relative to the library root."""
    return f"{file}::{target}"


class LastFailed:
    """The failed and errored pairs of earlier runs: passes remove them, failures add."""

    def __init__(self, state_dir: Path, root: Path):
        self.path = state_dir / LAST_FAILED
        self.root = root

    def key(self, file: str, target: str) -> str:
        return pair_key(library_relative(file, self.root), target)

    def read(self) -> set[str]:
        from smtpscript.yamlsource import FileTooLarge, NotRegularFile, read_bounded

        try:
            data = json.loads(read_bounded(self.path, MAX_STATE_BYTES).decode("utf-8"))
        except FileNotFoundError:
            return set()
        except (OSError, ValueError, FileTooLarge, NotRegularFile) as exc:
            raise ConfigError(f"{self.path}: cannot read the last failures: {exc}") from None
        failed = data.get("failed") if isinstance(data, dict) else None
        if not isinstance(failed, list) or not all(isinstance(k, str) for k in failed):
            raise ConfigError(f"{self.path}: not a list of last failures (delete it)")
        return set(failed)

    def update(self, results: Sequence[ScenarioResult]) -> str | None:
        """Record this run; a warning line when the file cannot be written."""
        try:
            failed = self.read()
        except ConfigError:
            failed = set()
        for result in results:
            key = self.key(result.file, result.target.name)
            if result.verdict in ("failed", "error"):
                failed.add(key)
            else:
                failed.discard(key)
        try:
            self.path.parent.mkdir(exist_ok=True)
            text = json.dumps({"failed": sorted(failed)}, indent=1) + "\n"
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(text, encoding="utf-8")
            temporary.replace(self.path)
        except OSError as exc:
            return f"cannot record the failures for --last-failed in {self.path}: {exc.strerror}"
        return None
