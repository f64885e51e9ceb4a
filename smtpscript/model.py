"""The scenario model: frozen dataclasses built from validated YAML.

The runner consumes only these; it never sees raw YAML. String fields that the
format documents as templates stay unrendered here (rendering needs run-time
variables); patterns and regexes are already checked by validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from smtpscript.patterns import CodePattern, StatusPattern

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")
TlsMode = Literal["none", "implicit"]

DEFAULT_PORT = 25
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class SourcePos:
    """Where a node stands in its file (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class TlsOptions:
    """TLS client options; ``None`` means "not set here" so layers can merge."""

    verify: bool | None = None
    server_name: str | None = None
    ca_file: str | None = None
    min_version: str | None = None
    max_version: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    def overlay(self, inner: TlsOptions) -> TlsOptions:
        """Options of an inner layer (connect, starttls) win over ours."""
        changes = {f.name: getattr(inner, f.name) for f in fields(inner)}
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class ProxySettings:
    """A PROXY protocol header to send before anything else (smtpscript.proxyheader).

    ``source`` and ``destination`` are plain ``IPv4:port`` or ``[IPv6]:port`` strings
    (not templates): validation checks them, so the header can always be built.
    """

    version: int
    source: str
    destination: str


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect; scenario ``target`` and ``connect`` steps both use it."""

    host: str | None = None
    port: int | None = None
    tls: TlsMode | None = None
    tls_options: TlsOptions = field(default_factory=TlsOptions)
    timeout: float | None = None
    connect_timeout: float | None = None
    source_address: str | None = None
    socket_path: str | None = None  # a UNIX socket instead of host and port (unix:/path)
    proxy: ProxySettings | None = None  # a PROXY header sent first, before TLS and the banner

    def where(self) -> str:
        """Where it connects, for labels: host:port or unix:/path."""
        if self.socket_path:
            return hostport(self.socket_path, 0)
        return hostport(self.host or "", self.port or DEFAULT_PORT)

    def overlay(self, inner: Endpoint) -> Endpoint:
        return Endpoint(
            socket_path=inner.socket_path or (None if inner.host else self.socket_path),
            host=inner.host or self.host,
            port=inner.port if inner.port is not None else self.port,
            tls=inner.tls or self.tls,
            tls_options=self.tls_options.overlay(inner.tls_options),
            timeout=inner.timeout if inner.timeout is not None else self.timeout,
            connect_timeout=(
                inner.connect_timeout if inner.connect_timeout is not None else self.connect_timeout
            ),
            source_address=inner.source_address or self.source_address,
            proxy=inner.proxy or self.proxy,
        )


@dataclass(frozen=True)
class TlsExpectation:
    """Assertions on the TLS facts of a connect/starttls step."""

    min_version: str | None = None
    verified: bool | None = None
    days_left: int | str | None = None  # a number, or a template giving one ("{{ min_days }}")
    name_matches: bool | None = None
    established: bool | None = None  # False: the handshake must fail (an old version refused)


@dataclass(frozen=True)
class Expectation:
    """What a step's reply must look like; ``codes=None`` means the action's default."""

    codes: CodePattern | None = None
    status: StatusPattern | None = None
    match: str | None = None
    tls: TlsExpectation | None = None
    # LMTP: the reply for each accepted recipient after the message, in RCPT order
    each: tuple[CodePattern, ...] | None = None


# --- groups of steps (the other actions' models live in smtpscript/actions) -------


@dataclass(frozen=True)
class Pipeline:
    """A pipeline group: its send lines written at once (RFC 2920), one reply judged per line."""

    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Group:
    """An included fragment: its steps run with ``with`` vars layered over the scenario's
    names (--var and --vars-file still win) and the fragment's own ``vars`` under them
    (defaults for what nobody set)."""

    source: str
    steps: tuple[Step, ...]
    with_vars: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)


# A step's action: the model of one of the modules in smtpscript/actions (found by its
# kind), or a Pipeline or Group, which the loader and the runner expand themselves.
Action = Any


@dataclass(frozen=True)
class Step:
    """One step of a scenario: its action, where it is written, and what it expects."""

    action: Action
    kind: str  # the YAML action key, e.g. "send", "ehlo", "include"
    path: str  # JSON path in the scenario, e.g. "steps[3]"
    pos: SourcePos
    name: str | None = None
    expect: Expectation = field(default_factory=Expectation)
    capture: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None
    when: str | None = None
    repeat: int | str | None = None
    continue_on_fail: bool = False
    # the include steps that brought it in, outermost first (empty in the scenario itself)
    included_from: tuple[SourcePos, ...] = ()


@dataclass(frozen=True)
class Scenario:
    """One scenario file: its steps and what the reports say about it."""

    version: int
    title: str
    file: str
    pos: SourcePos
    steps: tuple[Step, ...]
    description: str = ""
    severity: Severity = "medium"
    tags: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    remediation: str = ""  # how to fix a failure (shown with the finding); may be empty
    finding: str = ""  # what a failure means, in words (the reports lead with it); may be empty
    skip_reason: str = ""  # why it is skipped when ``when`` is false, in words
    target: Endpoint = field(default_factory=Endpoint)
    vars: dict[str, Any] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    public_env: tuple[str, ...] = ()
    when: str | None = None
    # where top-level values stand ("when", "vars.NAME"), for errors raised at run time
    marks: dict[str, SourcePos] = field(default_factory=dict)
    # variables its templates (and its fragments') read: tells a --var that nothing uses
    names_used: frozenset[str] = frozenset()


@dataclass(frozen=True)
class VarLayer:
    """One source of variables (library vars, a vars file, --var); ``label`` names it in
    errors about its values."""

    label: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Target:
    """A server to run against: from --target, the library's targets, or the sandbox.

    Its ``endpoint`` sits between the scenario's ``target`` defaults and a
    ``connect`` step: host and port replace the scenario's, TLS trust
    settings (ca_file, server_name) layer in. ``implicit_tls_port`` is where
    to go when a scenario asks for implicit TLS (the sandbox has one).
    """

    name: str
    endpoint: Endpoint
    vars: dict[str, Any] = field(default_factory=dict)
    implicit_tls_port: int | None = None
    tags: tuple[str, ...] = ()
    # scenario runs at once against it (None: the run's default, see RunOptions)
    max_connections: int | None = None
    # a domain target's facts (smtpscript.domains): its domain, this MX host, and its
    # MTA-STS and DANE posture; templates read them as target.domain, target.mx, mta_sts
    # and dane, and the results keep them. Empty for every other target.
    facts: dict[str, Any] = field(default_factory=dict)


def tls_options_from(data: dict[str, Any]) -> TlsOptions:
    """TLS options from their validated YAML mapping."""
    keys = (
        "verify",
        "server_name",
        "ca_file",
        "min_version",
        "max_version",
        "client_cert",
        "client_key",
    )
    return TlsOptions(**{k: data[k] for k in keys if k in data})


def endpoint_from(data: dict[str, Any]) -> Endpoint:
    """An endpoint from its validated YAML mapping (a target: or a connect: value)."""
    return Endpoint(
        host=data.get("host"),
        port=data.get("port"),
        tls=data.get("tls"),
        tls_options=tls_options_from(data),
        timeout=data.get("timeout"),
        connect_timeout=data.get("connect_timeout"),
        source_address=data.get("source_address"),
        proxy=proxy_from(data.get("proxy")),
    )


def proxy_from(data: dict[str, Any] | None) -> ProxySettings | None:
    """PROXY header settings from their validated YAML mapping."""
    if not data:
        return None
    return ProxySettings(data["version"], data["source"], data["destination"])


def hostport(host: str, port: int) -> str:
    """host:port as people write it: [IPv6]:port, and unix:/path for a socket path."""
    if host.startswith("/"):
        return f"unix:{host}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
