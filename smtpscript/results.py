"""The result model: plain, JSON-serialisable data that every report reads.

run -> scenario x target -> steps. Reports (console, JSON, JUnit, HTML) are
views over these dataclasses; none of them touches the runner. Everything in
here is already redacted: secrets are replaced by ``REDACTED`` before a value
reaches a result (see templating.SecretTracker).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from smtpscript.latency import LatencySummary
from smtpscript.model import SEVERITIES
from smtpscript.redaction import REDACTED as REDACTED  # what stands for a secret

Verdict = Literal["passed", "failed", "error", "skipped"]
VERDICTS: tuple[Verdict, ...] = ("passed", "failed", "error", "skipped")
RESULTS_FORMAT = 1
SEVERITY_ORDER: tuple[str, ...] = tuple(reversed(SEVERITIES))  # worst first


@dataclass(slots=True)
class TranscriptEntry:
    """One event of a conversation: ``C`` sent, ``S`` received, ``*`` note (TLS up, closed)."""

    t: float  # seconds since the scenario started (monotonic clock)
    direction: Literal["C", "S", "*"]
    text: str  # escaped for display: one entry per line, without its CRLF
    # StepResult.index of the step it happened in (received bytes: the step that read
    # them); None outside every step, e.g. the QUIT sent after the last one
    step: int | None = None


@dataclass(slots=True)
class TlsFacts:
    version: str | None = None
    cipher: str | None = None
    bits: int | None = None
    subject: str | None = None
    issuer: str | None = None
    sans: list[str] = field(default_factory=list)
    not_before: str | None = None  # ISO 8601, UTC
    not_after: str | None = None
    days_left: int | None = None
    verified: bool = False
    verify_error: str | None = None
    server_name: str | None = None
    name_matches: bool | None = None
    # hex SHA-256 of the server certificate (DER) and of its public key (SubjectPublicKeyInfo):
    # what DANE TLSA records (3 0 1, 3 1 1) are compared with
    cert_sha256: str | None = None
    spki_sha256: str | None = None


@dataclass(slots=True)
class ReplyRecord:
    code: int | None  # None when the connection closed instead of a reply
    status: str | None
    lines: list[str]  # escaped text of each line, without the code
    elapsed_ms: float  # from the command's last byte to the reply's last byte
    bare_lf: bool = False

    def short(self) -> str:
        if self.code is None:
            return "connection closed"
        first = f"{self.code} {self.lines[0]}".rstrip() if self.lines else str(self.code)
        more = len(self.lines) - 1
        return f"{first} (+{more} more lines)" if more > 0 else first


@dataclass(slots=True)
class StepResult:
    index: int  # position in execution order, from 1
    path: str  # JSON path in the scenario file, e.g. "steps[3]" or "steps[2].pipeline[0]"
    kind: str  # action key: send, ehlo, data, ...
    name: str  # user's name, else a rendered summary of the action
    line: int
    verdict: Verdict
    expected: str  # human wording of the expectation, e.g. "2xx", "550 or 554, status 5.7.x"
    message: str | None = None  # the expected-vs-got sentence for failed/error steps
    sent: list[str] = field(default_factory=list)  # redacted, escaped lines sent
    replies: list[ReplyRecord] = field(default_factory=list)
    duration_ms: float = 0.0
    tls: TlsFacts | None = None
    captures: dict[str, str] = field(default_factory=dict)
    repeat_index: int | None = None
    file: str = ""  # where the step is written: a fragment's file for an included step
    included_from: list[str] = field(default_factory=list)  # "file:line" of each include


@dataclass(slots=True)
class TargetInfo:
    name: str  # as given: "sandbox", "mx1", "127.0.0.1:2525"
    host: str
    port: int
    # domain targets (-t mx:DOMAIN) only: domain, mx, mta_sts, dane (smtpscript.domains)
    facts: dict[str, Any] | None = None


@dataclass(slots=True)
class ScenarioResult:
    scenario_id: str  # file path relative to where it was found, stable across runs
    file: str
    line: int
    title: str
    description: str
    severity: str
    tags: list[str]
    references: list[str]
    target: TargetInfo
    verdict: Verdict
    reason: str | None = None  # why failed / error / skipped, one line
    remediation: str = ""  # the scenario's advice on fixing a failure; empty when it gives none
    finding: str = ""  # the scenario's words for what a failure means; empty when it gives none
    started_at: str = ""  # ISO 8601, UTC
    duration_ms: float = 0.0
    steps: list[StepResult] = field(default_factory=list)
    transcript: list[TranscriptEntry] = field(default_factory=list)
    protocol_violations: list[str] = field(default_factory=list)
    # our side's doubtful moves, e.g. DSN parameters the server did not offer
    warnings: list[str] = field(default_factory=list)
    internal_error: bool = False  # the run hit a bug in smtpscript (the CLI exits 3)
    # its place in the whole run's plan (targets x scenarios), also in a shard's results:
    # merged shards are put back in the order one unsharded run would have
    plan_index: int | None = None

    @property
    def is_finding(self) -> bool:
        return self.verdict == "failed"


@dataclass(slots=True)
class StepLatency:
    """Load mode: how long one step of the scenario took, over every session."""

    path: str  # steps[2], steps[0].include.steps[1]
    name: str
    latency: LatencySummary = field(default_factory=LatencySummary)


@dataclass(slots=True)
class ReasonCount:
    reason: str
    count: int


@dataclass(slots=True)
class LoadSummary:
    """Load mode (run --repeat/--duration): aggregates over every session. The run's
    ``scenarios`` hold a bounded sample (failures first), not every session."""

    scenario: str  # file
    title: str
    target: str
    concurrency: int
    repeat: int | None = None
    duration_s: float | None = None
    rate: float | None = None
    sessions: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    elapsed_ms: float = 0.0
    sessions_per_s: float = 0.0
    session: LatencySummary = field(default_factory=LatencySummary)
    steps: list[StepLatency] = field(default_factory=list)
    reasons: list[ReasonCount] = field(default_factory=list)  # failures and errors, most first
    kept: int = 0  # sessions whose full result is in RunResult.scenarios
    engine: str = ""  # "compiled plan", or "general runner (why it did not compile)"


@dataclass(slots=True)
class RunResult:
    format: int = RESULTS_FORMAT
    tool_version: str = ""
    started_at: str = ""
    finished_at: str = ""
    duration_ms: float = 0.0
    targets: list[TargetInfo] = field(default_factory=list)
    scenarios: list[ScenarioResult] = field(default_factory=list)
    # Why scenario runs are missing, e.g. "interrupted by SIGTERM: 3 of 10 scenario runs
    # finished"; None when the run went to the end.
    incomplete: str | None = None
    load: LoadSummary | None = None  # load mode only
    title: str = ""  # the report's title (run --title, else the library's description)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(VERDICTS, 0)
        for result in self.scenarios:
            out[result.verdict] += 1
        return out

    @property
    def ok(self) -> bool:
        return all(s.verdict in ("passed", "skipped") for s in self.scenarios)

    def findings_by_severity(self) -> list[tuple[str, int]]:
        """(severity, failed scenario runs), worst first, every severity listed."""
        counts = Counter(r.severity for r in self.scenarios if r.is_finding)
        extra = sorted(s for s in counts if s not in SEVERITY_ORDER)  # from newer writers
        return [(s, counts[s]) for s in (*SEVERITY_ORDER, *extra)]


# --- JSON round-trip ----------------------------------------------------------


def to_dict(run: RunResult) -> dict[str, Any]:
    data = dataclasses.asdict(run)
    if data["load"] is None:  # load mode only: other results stay as they were
        del data["load"]
    if not data["title"]:  # written only when there is one: older files match
        del data["title"]
    for target in [*data["targets"], *(s["target"] for s in data["scenarios"])]:
        if target["facts"] is None:  # domain targets only
            del target["facts"]
    for scenario in data["scenarios"]:
        for entry in scenario["transcript"]:
            if entry["step"] is None:  # written only when there is one: older files match
                del entry["step"]
    return data


def to_json(run: RunResult, indent: int | None = 2) -> str:
    """The JSON text of to_dict(run), without the trailing newline a file gets."""
    return "".join(iter_json(run, indent)).removesuffix("\n")


def write_json(run: RunResult, path: Path, indent: int | None = None) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for chunk in iter_json(run, indent):
            handle.write(chunk)


def iter_json(run: RunResult, indent: int | None = None) -> Iterator[str]:
    """The JSON results file in pieces (a trailing newline included), for streaming.

    The same value as ``to_dict(run)`` (keys in the same order; json.dumps of it with
    the same ``indent`` gives the same text), but built one scenario result at a time:
    writing 5,000 results never holds the whole text, nor a dict tree of every result.
    ``indent=None``: compact (no spaces); a number: indented for humans.
    Lone surrogates come out as the text ``\\udcXX`` (see escape_surrogates).
    """
    if indent is None:
        dumps = _DUMPS_COMPACT
        item, nl, pad, pad2 = ",", "", "", ""
    else:
        dumps = functools.partial(_DUMPS_COMPACT, indent=indent, separators=(",", ": "))
        item, nl, pad, pad2 = ",", "\n", "\n" + " " * indent, "\n" + " " * (2 * indent)
    colon = ":" if indent is None else ": "
    yield "{"
    first = True
    for name in _RUN_FIELDS:
        value = getattr(run, name)
        if (name == "load" and value is None) or (name == "title" and not value):
            continue  # written only when there is one: older files match
        key = ("" if first else item) + pad + dumps(name) + colon
        first = False
        if name != "scenarios":
            yield _escape_json(key + dumps(value).replace("\n", pad))
        elif not value:
            yield key + "[]"
        else:
            yield key + "["
            for n, result in enumerate(value):
                text = dumps(result).replace("\n", pad2)
                yield _escape_json(("" if n == 0 else item) + pad2 + text)
            yield pad + "]"
    yield nl + "}\n"


def _escape_json(text: str) -> str:
    # json.dumps leaves lone surrogates raw inside strings, where UTF-8 cannot hold them:
    # write them as the text \udcXX (a JSON-escaped backslash), as every view shows them.
    try:
        text.encode("utf-8")  # far quicker than the regex on text that has none
    except UnicodeEncodeError:
        return _SURROGATE.sub(lambda m: f"\\\\u{ord(m.group()):04x}", text)
    return text


def _plain(obj: object) -> dict[str, Any]:
    """json.dumps' ``default``: a dataclass as its fields, one level at a time (what
    dataclasses.asdict gives, without copying the tree), with to_dict's omissions."""
    writer = _WRITERS.get(type(obj))
    if writer is None:
        if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
            raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
        writer = _WRITERS[type(obj)] = _writer(type(obj))
    return writer(obj)


# omitted from the JSON when None: only some results have them (older files match)
_OMITTED_WHEN_NONE = {"TranscriptEntry": "step", "TargetInfo": "facts"}


def _writer(cls: type) -> Callable[[Any], dict[str, Any]]:
    """A function making the dict of one dataclass, written out as a dict display (as
    dataclasses writes its __init__): a third faster than reading fields by name in a loop,
    for the ~20 objects of each result. The names are the dataclass's own fields."""
    names = [f.name for f in dataclasses.fields(cls)]

    def display(keep: list[str]) -> str:
        return "{" + ", ".join(f"{name!r}: o.{name}" for name in keep) + "}"

    source = "def write(o):\n"
    omitted = _OMITTED_WHEN_NONE.get(cls.__name__)
    if omitted is not None:
        rest = [name for name in names if name != omitted]
        source += f"    if o.{omitted} is None:\n        return {display(rest)}\n"
    source += f"    return {display(names)}\n"
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # built from dataclass field names only
    return namespace["write"]  # type: ignore[no-any-return]


_WRITERS: dict[type, Callable[[Any], dict[str, Any]]] = {}
_DUMPS_COMPACT = functools.partial(
    json.dumps, ensure_ascii=False, separators=(",", ":"), default=_plain
)
_RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunResult))


_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_surrogates(text: str) -> str:
    """Lone surrogates as the text ``\\udcXX``; the same in console, JSON, HTML and JUnit.

    They come from undecodable bytes in file names (surrogateescape). No UTF-8 writer
    can encode them; as text they stay visible evidence of the byte that was there.
    """
    try:
        text.encode("utf-8")  # far quicker than the regex on text that has none
    except UnicodeEncodeError:
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def from_dict(data: dict[str, Any]) -> RunResult:
    """Rebuild a RunResult from plain dicts: the inverse of to_dict (and of a results
    file's JSON). Fields a newer writer added are ignored; missing ones get defaults.

    Equal strings are kept once (server text, verdicts, paths and titles repeat in every
    result of a run): 5,000 results take a good part less memory.
    """
    memo: dict[str, str] = {}
    with paused_gc():
        return _build(RunResult, data, memo.setdefault)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection inside: for building (or rendering) the many small
    objects of a large run, which make no reference cycles. Each collection walks every
    object alive, the whole run; for 5,000 results that was a third of from_dict's time.
    Reference counting still frees everything as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_Share = Callable[[str, str], str]  # dict.setdefault of from_dict's memo


@dataclass(frozen=True, slots=True)
class _Shape:
    """How from_dict rebuilds one dataclass from its dict."""

    names: frozenset[str]  # its fields: any other key is a newer writer's, ignored
    texts: tuple[str, ...] = ()  # fields holding a string, shared through the memo
    text_lists: tuple[str, ...] = ()  # fields holding a list of strings, each shared
    nested: tuple[tuple[str, bool, type], ...] = ()  # (field, a list of them?, class)


def _build(cls: type, data: dict[str, Any], share: _Share) -> Any:
    shape = _SHAPES[cls]
    if data.keys() <= shape.names:
        kwargs = dict(data)
    else:  # forward compatible: ignore fields a newer writer added
        kwargs = {name: value for name, value in data.items() if name in shape.names}
    for name in shape.texts:
        value = kwargs.get(name)
        if type(value) is str:
            kwargs[name] = share(value, value)
    for name in shape.text_lists:
        value = kwargs.get(name)
        if value:
            kwargs[name] = [share(v, v) if type(v) is str else v for v in value]
    for name, many, inner in shape.nested:
        value = kwargs.get(name)
        if value is None:
            continue
        if inner is TranscriptEntry:
            kwargs[name] = _transcript(value, share)
        elif many:
            kwargs[name] = [_build(inner, item, share) for item in value]
        else:
            kwargs[name] = _build(inner, value, share)
    return cls(**kwargs)


def _transcript(entries: list[dict[str, Any]], share: _Share) -> list[TranscriptEntry]:
    # the hot path (~35 entries per result): positional, without a kwargs dict
    return [
        TranscriptEntry(e["t"], e["direction"], share(e["text"], e["text"]), e.get("step"))
        for e in entries
    ]


def _shape(cls: type, *nested: tuple[str, bool, type]) -> _Shape:
    texts, text_lists = [], []
    for f in dataclasses.fields(cls):
        kind = str(f.type)  # annotations are strings here (from __future__ import annotations)
        if kind in ("str", "str | None", "Verdict"):
            texts.append(f.name)
        elif kind == "list[str]":
            text_lists.append(f.name)
    names = frozenset(f.name for f in dataclasses.fields(cls))
    return _Shape(names, tuple(texts), tuple(text_lists), nested)


_SHAPES: dict[type, _Shape] = {
    RunResult: _shape(
        RunResult,
        ("targets", True, TargetInfo),
        ("scenarios", True, ScenarioResult),
        ("load", False, LoadSummary),
    ),
    ScenarioResult: _shape(
        ScenarioResult,
        ("target", False, TargetInfo),
        ("steps", True, StepResult),
        ("transcript", True, TranscriptEntry),
    ),
    StepResult: _shape(StepResult, ("replies", True, ReplyRecord), ("tls", False, TlsFacts)),
    TranscriptEntry: _shape(TranscriptEntry),
    ReplyRecord: _shape(ReplyRecord),
    TlsFacts: _shape(TlsFacts),
    TargetInfo: _shape(TargetInfo),
    LoadSummary: _shape(
        LoadSummary,
        ("session", False, LatencySummary),
        ("steps", True, StepLatency),
        ("reasons", True, ReasonCount),
    ),
    LatencySummary: _shape(LatencySummary),
    StepLatency: _shape(StepLatency, ("latency", False, LatencySummary)),
    ReasonCount: _shape(ReasonCount),
}


def merge(runs: list[RunResult]) -> RunResult:
    """Combine runs done in separate jobs into one (for ``smtpscript report``)."""
    if len(runs) == 1:
        return runs[0]
    targets: dict[tuple[str, str, int], TargetInfo] = {}
    for run in runs:
        for t in run.targets:
            targets.setdefault((t.name, t.host, t.port), t)
    scenarios = [s for r in runs for s in r.scenarios]
    if scenarios and all(s.plan_index is not None for s in scenarios):
        # shards of one plan: back in the order of a run that was not sharded
        scenarios.sort(key=lambda s: s.plan_index)  # type: ignore[arg-type, return-value]
        first = {}
        for s in scenarios:
            first.setdefault((s.target.name, s.target.host, s.target.port), s.plan_index)
        ordered = sorted(targets, key=lambda key: first.get(key, len(scenarios)))
        targets = {key: targets[key] for key in ordered}
    return RunResult(
        tool_version=runs[0].tool_version,
        started_at=min(r.started_at for r in runs),
        finished_at=max(r.finished_at for r in runs),
        duration_ms=sum(r.duration_ms for r in runs),
        targets=list(targets.values()),
        scenarios=scenarios,
        incomplete="; ".join(r.incomplete for r in runs if r.incomplete) or None,
        title=next((r.title for r in runs if r.title), ""),
    )
