"""What each -t value means: a library target NAME, @TAG, all, sandbox, mx:DOMAIN (its MX
hosts, smtpscript.domains), or an address.

Library names come first, so ``-t mx1`` never reaches DNS when the library
defines mx1. A bare word the library does not define is tried as a host name
(``-t localhost``) with a short, bounded lookup; when that fails too, the
error lists the names that do exist.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import replace

from smtpscript import model as m
from smtpscript.errors import ConfigError, did_you_mean
from smtpscript.library import Library, TargetSpec
from smtpscript.targets import SANDBOX, parse_target

ALL = "all"
TAG_PREFIX = "@"
LOOKUP_SECONDS = 3.0  # a resolver that does not answer must not stall the command


def select_targets(
    names: list[str],
    library: Library,
    targets: dict[str, TargetSpec],
    ca_file: str | None = None,
    resolver: str | None = None,
) -> list[TargetSpec]:
    """The targets ``names`` (-t values) stand for, in order, each once.

    ``targets``: the ones in effect (the library's, or the chosen environment's).
    A sandbox target's endpoint is filled in by whoever starts the sandbox.
    ``mx:DOMAIN`` stands for the domain's MX hosts, looked up (all domains at once)
    with ``resolver`` (--resolver IP[:PORT]; None: the system's).
    """
    domains = [n.strip() for n in names if n.strip() not in targets and _is_domain(n)]
    resolved = _resolve_domains(domains, resolver, ca_file) if domains else {}
    chosen: dict[str, TargetSpec] = {}
    for name in names:
        name = name.strip()
        specs = resolved[name] if name in resolved else _expand(name, library, targets, ca_file)
        for spec in specs:
            chosen.setdefault(spec.name, spec)
    return list(chosen.values())


def _is_domain(name: str) -> bool:
    return name.strip().lower().startswith("mx:")


def _resolve_domains(
    names: list[str], resolver: str | None, ca_file: str | None
) -> dict[str, list[TargetSpec]]:
    from smtpscript.domains import resolve_domains, target_specs

    found = resolve_domains(names, resolver)
    return {name: target_specs(mx, ca_file) for name, mx in found.items()}


def _expand(
    name: str, library: Library, targets: dict[str, TargetSpec], ca_file: str | None
) -> list[TargetSpec]:
    if name == ALL:
        if not targets:
            raise ConfigError(f"-t all: {_no_targets(library)}")
        return [_trusting(spec, ca_file) for spec in targets.values()]
    if name.startswith(TAG_PREFIX):
        tag = name.removeprefix(TAG_PREFIX)
        tagged = [spec for spec in targets.values() if tag in spec.tags]
        if not tagged:
            tags = sorted({t for spec in targets.values() for t in spec.tags})
            listed = f"tags: {', '.join(tags)}" if tags else _no_targets(library)
            raise ConfigError(
                f"-t {name}: no target has tag {tag!r} ({listed}){did_you_mean(tag, tags)}"
            )
        return [_trusting(spec, ca_file) for spec in tagged]
    if name in targets:
        return [_trusting(targets[name], ca_file)]
    if name == SANDBOX:
        return [sandbox_spec()]
    if _is_bare_word(name) and not _resolves(name):
        raise ConfigError(_unknown(name, library, targets))
    target = parse_target(name, ca_file)
    return [TargetSpec(name=target.name, where=target.endpoint.where(), target=target)]


def sandbox_spec(name: str = SANDBOX) -> TargetSpec:
    return TargetSpec(name=name, where=SANDBOX, target=m.Target(name, m.Endpoint()), sandbox=True)


def _trusting(spec: TargetSpec, ca_file: str | None) -> TargetSpec:
    """--ca-file for a library target that names no CA of its own."""
    options = spec.target.endpoint.tls_options
    if ca_file is None or options.ca_file is not None or spec.sandbox:
        return spec
    endpoint = replace(spec.target.endpoint, tls_options=replace(options, ca_file=ca_file))
    return replace(spec, target=replace(spec.target, endpoint=endpoint))


_BARE_WORD = re.compile(r"[A-Za-z0-9_-]+")


def _is_bare_word(name: str) -> bool:
    """mx1, not mx1.example.com, 192.0.2.1, host:25, [::1] or smtp://...: a word that
    is more likely a misspelt target name than a host (anything else is an address,
    and parse_target says what is wrong with it)."""
    return _BARE_WORD.fullmatch(name) is not None and name != "localhost"


def _resolves(host: str) -> bool:
    """Does ``host`` resolve, within LOOKUP_SECONDS? (getaddrinfo cannot be cancelled, so it
    runs in a daemon thread that is left behind if the resolver hangs.)"""
    answer: list[bool] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            answer.append(True)
        except (OSError, UnicodeError):
            answer.append(False)

    thread = threading.Thread(target=lookup, name="smtpscript-lookup", daemon=True)
    thread.start()
    thread.join(LOOKUP_SECONDS)
    return bool(answer and answer[0])


def _no_targets(library: Library) -> str:
    if library.path is None:
        return "no smtpscript.yaml found, so there are no named targets"
    return f"{library.path} defines no targets"


def _unknown(name: str, library: Library, targets: dict[str, TargetSpec]) -> str:
    if not targets:
        where = _no_targets(library)
    else:
        where = f"targets: {', '.join(sorted(targets))}{did_you_mean(name, sorted(targets))}"
    return (
        f"-t {name}: not a target name ({where}) and not a host name that resolves; "
        "use NAME, @TAG, all, sandbox, mx:DOMAIN or HOST[:PORT]"
    )
