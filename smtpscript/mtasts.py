"""MTA-STS (RFC 8461): a domain's TXT record, its policy over HTTPS, and which MX hosts
the policy's patterns cover.

The policy is fetched the way a sending MTA fetches it: from
``https://mta-sts.DOMAIN/.well-known/mta-sts.txt`` (the name looked up with the
run's resolver), its certificate verified for that name, no redirect followed,
at most MAX_POLICY_BYTES within the timeout. Whatever goes wrong becomes the
``error`` fact, in words; nothing here raises.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smtpscript import __version__

if TYPE_CHECKING:
    from smtpscript.domains import Dns

TXT_PREFIX = "_mta-sts."
POLICY_HOST_PREFIX = "mta-sts."
POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 3.3: senders may refuse larger policies
MAX_AGE_LIMIT = 31_557_600  # RFC 8461 3.2: a year
MODES = ("enforce", "testing", "none")
_RECORD_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_FIELD = re.compile(r"([A-Za-z0-9_]+):[ \t]*(.*?)[ \t]*")


class PolicyError(ValueError):
    """A policy, or its TXT record, that a sender would refuse; the message says why."""


class FetchError(Exception):
    """The policy could not be fetched; the message says why."""


@dataclass(frozen=True)
class Policy:
    version: str
    mode: str
    max_age: int
    mx: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "mode": self.mode,
            "max_age": self.max_age,
            "mx": list(self.mx),
        }

    def covers(self, host: str) -> bool:
        return any(mx_matches(pattern, host) for pattern in self.mx)


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 4.1: a pattern is a host name, or ``*.`` and a domain, the wildcard standing
    for exactly one label, the left-most (``*.example.com`` covers ``mx1.example.com``,
    not ``example.com`` nor ``a.b.example.com``). Case and a final dot do not matter."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, _, rest = host.partition(".")
        return bool(first) and bool(rest) and rest == pattern[2:]
    return pattern == host


def parse_record(texts: list[str]) -> tuple[str, str]:
    """(record, id) from the TXT strings at _mta-sts.DOMAIN (RFC 8461 3.1): of the records
    starting ``v=STSv1;`` there must be exactly one, with a valid id."""
    records = [t for t in texts if t.startswith("v=STSv1;") or t == "v=STSv1"]
    if not records:
        raise PolicyError("no TXT record starting 'v=STSv1;'")
    if len(records) > 1:
        raise PolicyError(f"{len(records)} TXT records start 'v=STSv1;' (there must be one)")
    fields = {}
    for part in records[0].split(";")[1:]:
        key, sep, value = part.strip().partition("=")
        if part.strip() and not sep:
            raise PolicyError(f"TXT record {records[0]!r}: {part.strip()!r} is not key=value")
        fields.setdefault(key.strip(), value.strip())
    record_id = fields.get("id", "")
    if not _RECORD_ID.fullmatch(record_id):
        raise PolicyError(f"TXT record {records[0]!r}: id must be 1 to 32 letters or digits")
    return records[0], record_id


def parse_policy(text: str) -> Policy:
    """RFC 8461 3.2: ``key: value`` lines (CRLF or LF); unknown keys are ignored."""
    values: dict[str, str] = {}
    mx: list[str] = []
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        if not line.strip():
            continue
        found = _FIELD.fullmatch(line)
        if found is None:
            raise PolicyError(f"line {number}: {line[:60]!r} is not 'key: value'")
        key, value = found.groups()
        if key == "mx":
            mx.append(value)
        else:
            values.setdefault(key, value)
    version, mode, age = values.get("version"), values.get("mode"), values.get("max_age")
    if version != "STSv1":
        raise PolicyError(f"version is {version!r}, not 'STSv1'" if version else "no version")
    if mode not in MODES:
        raise PolicyError(f"mode is {mode!r}, not enforce, testing or none" if mode else "no mode")
    if age is None or not (age.isascii() and age.isdigit() and len(age) <= 10):
        raise PolicyError(f"max_age {age!r} is not a number of seconds" if age else "no max_age")
    if mode != "none" and not mx:
        raise PolicyError(f"mode {mode} without any mx pattern")
    for pattern in mx:
        if "*" in pattern.removeprefix("*.") or not pattern.strip("*."):
            raise PolicyError(f"mx pattern {pattern!r}: only a left-most '*.' may be a wildcard")
    return Policy(version, mode, min(int(age), MAX_AGE_LIMIT), tuple(mx))


def policy_url(domain: str, port: int = 443) -> str:
    where = POLICY_HOST_PREFIX + domain + ("" if port == 443 else f":{port}")
    return f"https://{where}{POLICY_PATH}"


def check(
    domain: str,
    mx_hosts: list[str],
    dns: Dns,
    *,
    ca_file: str | None = None,
    port: int = 443,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """The domain's MTA-STS facts: record, policy, mode, which MX hosts it covers, error."""
    facts: dict[str, Any] = {
        "record": None,
        "id": None,
        "url": policy_url(domain, port),
        "policy": None,
        "mode": None,
        "mx": {},  # every MX host of the domain: does the policy cover it?
        "all_mx_match": None,
        "unmatched": [],  # the MX hosts it does not cover
        "error": None,
    }
    try:
        facts["record"], facts["id"] = _record(domain, dns)
        text = fetch_policy(domain, dns, ca_file=ca_file, port=port, timeout=timeout)
        policy = parse_policy(text)
    except (PolicyError, FetchError) as exc:
        facts["error"] = str(exc)
        return facts
    facts["policy"] = policy.as_dict()
    facts["mode"] = policy.mode
    facts["mx"] = {host: policy.covers(host) for host in mx_hosts}
    facts["all_mx_match"] = all(facts["mx"].values())
    facts["unmatched"] = [host for host, covered in facts["mx"].items() if not covered]
    return facts


def for_host(facts: dict[str, Any], host: str) -> dict[str, Any]:
    """The domain's facts as one MX target sees them: ``mx_match``, does the policy cover
    this host (None without a policy)."""
    return {**facts, "mx_match": facts["mx"].get(host) if facts["policy"] else None}


def _record(domain: str, dns: Dns) -> tuple[str, str]:
    from smtpscript.domains import DnsFailure

    name = TXT_PREFIX + domain
    try:
        answer = dns.lookup(name, "TXT")
    except DnsFailure as exc:
        if exc.nxdomain:
            raise PolicyError(f"no MTA-STS policy: {name} has no TXT record") from None
        raise PolicyError(f"no MTA-STS record: {exc}") from None
    texts = [b"".join(r.strings).decode("utf-8", "replace") for r in answer.records]
    if not texts:
        raise PolicyError(f"no MTA-STS policy: {name} has no TXT record")
    try:
        return parse_record(texts)
    except PolicyError as exc:
        raise PolicyError(f"{name}: {exc}") from None


def fetch_policy(
    domain: str, dns: Dns, *, ca_file: str | None = None, port: int = 443, timeout: float = 5.0
) -> str:
    """The policy text, fetched as RFC 8461 3.3 says; FetchError with the reason."""
    from smtpscript.domains import DnsFailure

    host = POLICY_HOST_PREFIX + domain
    url = policy_url(domain, port)
    try:
        addresses = dns.addresses(host)
    except DnsFailure as exc:
        raise FetchError(f"policy {url}: {exc}") from None
    if not addresses:
        raise FetchError(f"policy {url}: {host} has no A/AAAA records")
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except OSError as exc:
        raise FetchError(f"--mta-sts-ca {ca_file}: {exc.strerror or exc}") from None
    watchdog = _Watchdog(timeout)
    try:
        with (
            socket.create_connection((addresses[0], port), timeout=timeout) as raw,
            watchdog.watching(raw),
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            watchdog.sock = tls
            return _get(tls, host, port)
    except ssl.SSLCertVerificationError as exc:
        detail = exc.verify_message or exc.reason
        raise FetchError(f"policy {url}: certificate not valid for {host}: {detail}") from None
    except (OSError, http.client.HTTPException) as exc:
        if watchdog.fired or isinstance(exc, TimeoutError):
            raise FetchError(f"policy {url}: no complete answer within {timeout:g} s") from None
        detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise FetchError(f"policy {url}: {detail}") from None


class _Watchdog:
    """Cuts the connection when the time is up: a server sending a byte now and then
    cannot stretch the fetch (a socket timeout only bounds each single read)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.sock: socket.socket | None = None
        self.fired = False

    @contextlib.contextmanager
    def watching(self, sock: socket.socket) -> Iterator[None]:
        self.sock = sock
        timer = threading.Timer(self.seconds, self._cut)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _cut(self) -> None:
        self.fired = True
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # whoever owns the descriptor now: raw or TLS
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _get(tls: ssl.SSLSocket, host: str, port: int) -> str:
    hosted = host if port == 443 else f"{host}:{port}"
    url = f"https://{hosted}{POLICY_PATH}"
    request = (
        f"GET {POLICY_PATH} HTTP/1.1\r\nHost: {hosted}\r\n"
        f"User-Agent: smtpscript/{__version__}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    )
    tls.sendall(request.encode("ascii"))
    response = http.client.HTTPResponse(tls, method="GET")
    try:
        response.begin()
        if 300 <= response.status < 400:
            where = response.getheader("Location", "?")
            raise FetchError(f"policy {url}: redirected to {where} (RFC 8461 3.3: not followed)")
        if response.status != 200:
            raise FetchError(f"policy {url}: HTTP {response.status} {response.reason}")
        kind = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if kind != "text/plain":
            raise FetchError(f"policy {url}: Content-Type {kind or 'missing'}, not text/plain")
        body = response.read(MAX_POLICY_BYTES + 1)
    finally:
        response.close()
    if len(body) > MAX_POLICY_BYTES:
        raise FetchError(f"policy {url}: larger than {MAX_POLICY_BYTES // 1024} KiB")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise FetchError(f"policy {url}: not UTF-8 text") from None
