"""Parse --target values: HOST, HOST:PORT, [IPv6]:PORT, or the built-in 'sandbox'."""

from __future__ import annotations

from smtpscript.errors import ConfigError
from smtpscript.model import Endpoint, Target, TlsOptions

SANDBOX = "sandbox"


def parse_target(text: str, ca_file: str | None = None) -> Target:
    """A target from ``HOST[:PORT]``; 'sandbox' is resolved by the caller who starts it.

    ``ca_file`` (--ca-file) is the CA to trust for TLS to it, e.g. a private CA.
    """
    value = text.strip()
    if not value:
        raise ConfigError("--target: empty value; use HOST, HOST:PORT, [IPv6]:PORT or sandbox")
    host, port = _split(value)
    trust = TlsOptions(ca_file=ca_file)
    return Target(name=value, endpoint=Endpoint(host=host, port=port, tls_options=trust))


def _split(value: str) -> tuple[str, int | None]:
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"--target {value!r}: expected [IPv6]:PORT")
        return host, _port(value, rest[1:]) if rest else None
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, _port(value, port)
    return value, None  # a bare host name, IPv4 or unbracketed IPv6 address


def _port(value: str, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ConfigError(f"--target {value!r}: port must be a number from 1 to 65535")
    return int(text)


def sandbox_target(host: str, port: int, tls_port: int | None, ca_file: str | None) -> Target:
    """The embedded server as a target; its CA is trusted so verify: true works against it."""
    return Target(
        name=SANDBOX,
        endpoint=Endpoint(host=host, port=port, tls_options=TlsOptions(ca_file=ca_file)),
        implicit_tls_port=tls_port,
    )
