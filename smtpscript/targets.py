"""Parse --target values: HOST[:PORT], [IPv6]:PORT, smtp://, smtps://, lmtp://, unix:/path
or 'sandbox'.

A target names where to connect, nothing more: credentials, paths and query
strings have no meaning here, so they are refused rather than half-understood.
"""

from __future__ import annotations

import ipaddress

from smtpscript.errors import ConfigError
from smtpscript.model import Endpoint, Target, TlsMode, TlsOptions

SANDBOX = "sandbox"
FORMS = (
    "HOST, HOST:PORT, [IPv6]:PORT, smtp://HOST[:PORT], smtps://HOST[:PORT], "
    "lmtp://HOST[:PORT], unix:/PATH or sandbox"
)
# scheme -> (TLS mode, default port); smtps is implicit TLS as RFC 8314 describes; LMTP
# (RFC 2033) has no port of its own: 24, "any private mail system", is where it usually is
SCHEMES: dict[str, tuple[TlsMode, int]] = {
    "smtp": ("none", 25),
    "smtps": ("implicit", 465),
    "lmtp": ("none", 24),
}
UNIX = "unix:"
_URL_ONLY = set("/?#@")  # parts of a URL other than host and port: never part of a target
_NOT_IN_HOST = _URL_ONLY | set("[]\\")


def parse_target(text: str, ca_file: str | None = None) -> Target:
    """A target from ``--target``; 'sandbox' is resolved by the caller who starts it.

    ``ca_file`` (--ca-file) is the CA to trust for TLS to it, e.g. a private CA.
    """
    value = text.strip()
    if not value:
        raise ConfigError(f"--target: empty value; use {FORMS}")
    if value.startswith(UNIX):
        return _unix_target(value, ca_file)
    tls, default_port, rest = _scheme(value)
    host, port = _split(value, rest)
    _check_host(value, host)
    endpoint = Endpoint(
        host=host,
        port=default_port if port is None else port,
        tls=tls,
        tls_options=TlsOptions(ca_file=ca_file),
    )
    return Target(name=value, endpoint=endpoint)


def _unix_target(value: str, ca_file: str | None) -> Target:
    """unix:/path: SMTP or LMTP over a UNIX-domain socket (the greeting says which)."""
    path = value.removeprefix(UNIX)
    if not path.startswith("/") or any(ord(c) < 32 for c in path):
        raise _bad(value, "a UNIX socket target is unix: and an absolute path")
    trust = TlsOptions(ca_file=ca_file)
    endpoint = Endpoint(host="localhost", socket_path=path, tls_options=trust)
    return Target(name=value, endpoint=endpoint)


def _scheme(value: str) -> tuple[TlsMode | None, int | None, str]:
    """(TLS mode, default port, the rest) of a URL; a plain HOST[:PORT] leaves both to the
    scenario."""
    if "://" not in value:
        return None, None, value
    scheme, _, rest = value.partition("://")
    if scheme.lower() not in SCHEMES:
        raise _bad(value, f"unsupported scheme '{scheme}://'")
    if rest.endswith("/"):  # smtp://host:25/ is how URLs are often pasted
        rest = rest[:-1]
    if any(char in _URL_ONLY for char in rest):
        raise _bad(value, "only a host and a port may follow the scheme (no user, path or query)")
    tls, port = SCHEMES[scheme.lower()]
    return tls, port, rest


def _split(value: str, rest: str) -> tuple[str, int | None]:
    if rest.startswith("["):
        host, sep, after = rest[1:].partition("]")
        if not sep or (after and not after.startswith(":")):
            raise _bad(value, "expected [IPv6] or [IPv6]:PORT")
        _check_ipv6(value, host)
        return host, _port(value, after[1:]) if after else None
    if rest.count(":") == 1:
        host, _, port = rest.partition(":")
        return host, _port(value, port)
    if ":" in rest:  # several colons: an IPv6 address without a port
        _check_ipv6(value, rest)
    return rest, None


def _port(value: str, text: str) -> int:
    # ASCII digits only: str.isdigit() also accepts '²' and fullwidth digits
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ConfigError(f"--target {value!r}: port must be a number from 1 to 65535")
    return int(text)


def _check_host(value: str, host: str) -> None:
    problem = host_problem(host)
    if problem:
        raise _bad(value, problem)


def host_problem(host: str) -> str | None:
    """What is wrong with a host name or address (a --target's, a library target's)."""
    if not host:
        return "no host"
    if any(not char.isprintable() or char.isspace() for char in host):
        return "the host contains spaces or control characters"
    if ":" not in host and any(char in _NOT_IN_HOST for char in host):
        return "a host name has no '/', '?', '#', '@', '[', ']' or '\\'"
    return None


def _check_ipv6(value: str, host: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise _bad(value, f"{host!r} is not an IPv6 address") from None


def _bad(value: str, why: str) -> ConfigError:
    return ConfigError(f"--target {value!r}: {why}; use {FORMS}")


def sandbox_target(host: str, port: int, tls_port: int | None, ca_file: str | None) -> Target:
    """The embedded server as a target; its CA is trusted so verify: true works against it."""
    return Target(
        name=SANDBOX,
        endpoint=Endpoint(host=host, port=port, tls_options=TlsOptions(ca_file=ca_file)),
        implicit_tls_port=tls_port,
    )
