"""DANE for SMTP (RFC 7672): an MX host's TLSA records against the certificate it presents.

The TLSA records of ``_PORT._tcp.MXHOST`` (port 25 for real MX hosts) are looked
up with the run's resolver, which also says whether it validated them (the AD
bit). When there are records, one short SMTP session (EHLO, STARTTLS, QUIT)
fetches the certificate chain the server presents, with SNI set to the MX host
name, and each record is matched against it:

- DANE-EE (usage 3): the server's own certificate, or its public key (selector 1);
  no name or expiry checks (RFC 7672 3.1.1).
- DANE-TA (usage 2): a certificate of the presented chain (or a self-issued server
  certificate) that the server certificate chains up to, and a server certificate
  whose names cover the MX host (RFC 7672 3.1.2, 3.2.3).
- PKIX-TA and PKIX-EE (0, 1) are unusable for SMTP (RFC 7672 3.1.3).

Nothing here raises: what goes wrong becomes the ``error`` fact, in words.
"""

from __future__ import annotations

import _ssl
import hashlib
import itertools
import socket
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from smtpscript import model as m
from smtpscript.protocol import Reply, ReplyParser, encode_command, parse_ehlo

if TYPE_CHECKING:
    from smtpscript.domains import Dns

USAGES = {0: "PKIX-TA", 1: "PKIX-EE", 2: "DANE-TA", 3: "DANE-EE"}
SELECTORS = {0: "Cert", 1: "SPKI"}
MATCHING = {0: "Full", 1: "SHA2-256", 2: "SHA2-512"}
PROBE_HELO = "smtpscript.invalid"  # RFC 2606: names no real host


class ProbeError(Exception):
    """The STARTTLS probe could not get a certificate; the message says why."""

    def __init__(self, message: str, *, starttls: bool | None = None):
        super().__init__(message)
        self.starttls = starttls


@dataclass(frozen=True, order=True)
class Tlsa:
    usage: int
    selector: int
    matching_type: int
    data: bytes

    @property
    def text(self) -> str:
        return f"{self.usage} {self.selector} {self.matching_type} {self.data.hex()}"

    @property
    def usable(self) -> bool:
        """RFC 7672 3.1.3: only DANE-TA and DANE-EE, with known selectors and matching types."""
        return (
            self.usage in (2, 3) and self.selector in SELECTORS and self.matching_type in MATCHING
        )

    def matches_der(self, der: bytes) -> bool:
        """Does the record's data stand for this certificate (DER), by its selector and
        matching type?"""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        if self.selector == 1:
            key = x509.load_der_x509_certificate(der).public_key()
            der = key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        digest = {0: lambda d: d, 1: _sha256, 2: _sha512}[self.matching_type](der)
        return digest == self.data


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _sha512(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()


def tlsa_name(host: str, port: int = 25) -> str:
    return f"_{port}._tcp.{host}"


def check(target: m.Target, dns: Dns, *, timeout: float = 5.0) -> dict[str, Any]:
    """The DANE facts of one MX target (see the module's doc)."""
    from smtpscript.domains import DnsFailure

    host = target.facts["mx"]["host"]
    port = target.endpoint.port or m.DEFAULT_PORT
    facts: dict[str, Any] = {
        "name": tlsa_name(host, port),
        "records": [],
        "ad": None,
        "starttls": None,
        "certificate": None,
        "match": None,
        "error": None,
    }
    try:
        answer = dns.lookup(facts["name"], "TLSA")
    except DnsFailure as exc:
        if not exc.nxdomain:
            facts["error"] = str(exc)
        return facts
    facts["ad"] = answer.ad
    # sorted: an RRset has no order, and reports compared across runs must not see one
    records = sorted(Tlsa(r.usage, r.selector, r.mtype, bytes(r.cert)) for r in answer.records)
    if not records:
        return facts
    if not target.facts["mx"]["addresses"]:
        facts["records"] = [_record_facts(r, None) for r in records]
        facts["error"] = f"{host} has no address to connect to"
        return facts
    try:
        chain, certificate = probe(target.endpoint.host or host, port, host, timeout)
    except ProbeError as exc:
        facts["records"] = [_record_facts(r, None) for r in records]
        facts["starttls"], facts["error"] = exc.starttls, str(exc)
        return facts
    facts["starttls"], facts["certificate"] = True, certificate
    try:
        results = [matches(r, chain, certificate["name_matches"]) for r in records]
    except ValueError as exc:  # a certificate cryptography cannot read: nothing can match
        facts["records"] = [_record_facts(r, None) for r in records]
        facts["error"] = f"unreadable certificate in the presented chain: {exc}"
        return facts
    facts["records"] = [_record_facts(r, ok) for r, ok in zip(records, results, strict=True)]
    usable = [ok for r, ok in zip(records, results, strict=True) if r.usable]
    facts["match"] = any(usable) if usable else None
    if not usable:
        facts["error"] = "no usable TLSA record (only DANE-TA 2 and DANE-EE 3 count for SMTP)"
    return facts


def _record_facts(record: Tlsa, ok: bool | None) -> dict[str, Any]:
    return {
        "usage": record.usage,
        "selector": record.selector,
        "matching_type": record.matching_type,
        "data": record.data.hex(),
        "text": record.text,
        "usable": record.usable,
        "matches": ok if record.usable else None,
    }


def matches(record: Tlsa, chain: list[bytes], name_matches: bool | None) -> bool:
    """Does the presented ``chain`` (server certificate first, DER) satisfy ``record``?"""
    if not chain or not record.usable:
        return False
    if record.usage == 3:
        return record.matches_der(chain[0])
    if not name_matches:  # DANE-TA: the server certificate must name the MX host
        return False
    return any(
        record.matches_der(der) and _chains_to(chain, depth)
        for depth, der in enumerate(chain)
        if depth > 0 or _self_issued(der)
    )


def _self_issued(der: bytes) -> bool:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return cert.subject == cert.issuer


def _chains_to(chain: list[bytes], depth: int) -> bool:
    """Is each certificate below ``depth`` signed by the next one up (the trust anchor at
    ``depth``)? Presented chains are in order (RFC 8446 4.4.2 asks for it)."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    certs = [x509.load_der_x509_certificate(der) for der in chain[: depth + 1]]
    for child, parent in itertools.pairwise(certs):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            return False
    return True


# --- the STARTTLS probe -------------------------------------------------------------------


def probe(
    address: str, port: int, server_name: str, timeout: float
) -> tuple[list[bytes], dict[str, Any]]:
    """(chain as presented, facts of the server certificate) from one SMTP session."""
    from smtpscript.tlsinfo import facts_from

    where = m.hostport(address, port)
    deadline = time.monotonic() + timeout * 3
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            replies = _Replies(sock, deadline)
            replies.expect(220, "banner")
            sock.sendall(encode_command(f"EHLO {PROBE_HELO}"))
            caps = parse_ehlo(replies.expect(250, "EHLO"))
            if "STARTTLS" not in caps:
                raise ProbeError(f"{where} does not offer STARTTLS", starttls=False)
            sock.sendall(encode_command("STARTTLS"))
            replies.expect(220, "STARTTLS")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # DANE authenticates; the Web PKI has no say
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            with context.wrap_socket(sock, server_hostname=server_name) as tls:
                chain = _presented_chain(tls)
                facts = facts_from(tls, server_name, verified=False)
                _quit(tls)
    except ProbeError:
        raise
    except ssl.SSLError as exc:
        reason = exc.reason or exc
        raise ProbeError(f"TLS handshake with {where} failed: {reason}", starttls=True) from None
    except TimeoutError:
        raise ProbeError(f"{where} did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise ProbeError(f"cannot connect to {where}: {exc.strerror or exc}") from None
    if not chain:
        raise ProbeError(f"{where} presented no certificate", starttls=True)
    certificate = {
        "sha256": facts.cert_sha256,
        "spki_sha256": facts.spki_sha256,
        "subject": facts.subject,
        "issuer": facts.issuer,
        "names": facts.sans,
        "name_matches": facts.name_matches,
        "chain_length": len(chain),
    }
    return chain, certificate


def _presented_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """The certificates the server sent, its own first. ssl has no public way to read the
    chain before Python 3.13 (get_unverified_chain); without it, the server certificate."""
    inner = getattr(tls, "_sslobj", None)
    reader = getattr(tls, "get_unverified_chain", None) or getattr(
        inner, "get_unverified_chain", None
    )
    if reader is not None:
        chain = reader() or []
        return [c if isinstance(c, bytes) else c.public_bytes(_ssl.ENCODING_DER) for c in chain]
    der = tls.getpeercert(binary_form=True)
    return [der] if der else []


def _quit(tls: ssl.SSLSocket) -> None:
    try:
        tls.sendall(b"QUIT\r\n")
        tls.recv(512)
    except OSError:
        pass  # the certificate is what we came for


class _Replies:
    """Complete replies from a blocking socket, all of them before one deadline."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.deadline = deadline
        self.parser = ReplyParser()

    def expect(self, code: int, what: str) -> Reply:
        reply = self.next()
        if reply.code != code:
            starttls = False if what == "STARTTLS" else None
            raise ProbeError(f"{what}: expected {code}, got {reply.short()}", starttls=starttls)
        return reply

    def next(self) -> Reply:
        from smtpscript.errors import RemoteProtocolError

        while True:
            try:
                reply = self.parser.next_reply()
            except RemoteProtocolError as exc:
                raise ProbeError(str(exc)) from None
            if reply is not None:
                return reply
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ProbeError("the server closed the connection")
            self.parser.feed(data)
