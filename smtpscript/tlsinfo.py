"""TLS client contexts and certificate facts (no sockets here).

Facts are read from the peer certificate's DER bytes with `cryptography`, so
they are recorded whether or not verification was asked for.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import ipaddress
import os
import ssl
import warnings
from collections.abc import Iterator

from smtpscript.model import TlsOptions
from smtpscript.results import TlsFacts

TLS_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
VERSION_ORDER = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


def make_context(options: TlsOptions) -> ssl.SSLContext:
    """A client context; verify defaults to true (chain and host name checked).

    Made once per set of options and kept (loading the system's CA certificates takes
    tens of milliseconds, which every TLS session paid); a CA, certificate or key file
    that changes on disk makes a new one. Nothing changes a context once it is made.
    """
    return _context(options, _file_stamps(options))


def _file_stamps(options: TlsOptions) -> tuple[tuple[int, int, int] | None, ...]:
    stamps: list[tuple[int, int, int] | None] = []
    for path in (options.ca_file, options.client_cert, options.client_key):
        try:
            info = os.stat(path) if path else None
        except OSError:
            info = None  # loading it fails below, with the file's name (never cached)
        stamps.append((info.st_ino, info.st_mtime_ns, info.st_size) if info else None)
    return tuple(stamps)


@functools.lru_cache(maxsize=64)
def _context(options: TlsOptions, stamps: tuple[object, ...]) -> ssl.SSLContext:
    verify = options.verify is not False
    with _naming(options.ca_file):
        context = ssl.create_default_context(cafile=options.ca_file if verify else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    old = ("TLSv1", "TLSv1.1")
    if options.min_version in old or options.max_version in old:
        # auditors talk to old servers, and ask new ones whether they still accept old TLS
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # ssl deprecates TLSv1 and TLSv1.1: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        if options.max_version in old:
            context.minimum_version = TLS_VERSIONS["TLSv1"]
        if options.min_version:
            context.minimum_version = TLS_VERSIONS[options.min_version]
        if options.max_version:
            context.maximum_version = TLS_VERSIONS[options.max_version]
    if options.client_cert:
        with _naming(options.client_cert, options.client_key):
            context.load_cert_chain(options.client_cert, options.client_key)
    return context


@contextlib.contextmanager
def _naming(*paths: str | None) -> Iterator[None]:
    """ssl's file errors do not say which file: name the first one that cannot be read."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or isinstance(exc, ssl.SSLError):
            raise
        unreadable = next((p for p in paths if p and not os.access(p, os.R_OK)), paths[0])
        raise OSError(exc.errno, exc.strerror, unreadable) from None


def describe_verify_error(exc: ssl.SSLCertVerificationError) -> str:
    detail = getattr(exc, "verify_message", None) or exc.reason or str(exc)
    return f"certificate verify failed: {detail}{VERIFY_HINT}"


# what to do about it, for a server whose CA is private or whose name differs
VERIFY_HINT = (
    " (a private CA: --ca-file or the target's ca_file in smtpscript.yaml; to look without "
    "verifying: verify: false)"
)


def facts_from(
    ssl_object: ssl.SSLObject | ssl.SSLSocket,
    server_name: str,
    verified: bool,
    now: dt.datetime | None = None,
) -> TlsFacts:
    cipher = ssl_object.cipher()
    facts = TlsFacts(
        version=ssl_object.version(),
        cipher=cipher[0] if cipher else None,
        bits=cipher[2] if cipher else None,
        verified=verified,
        verify_error=None if verified else "not checked (verify: false)",
        server_name=server_name,
    )
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        _add_certificate(facts, der, server_name, now or dt.datetime.now(dt.UTC))
    return facts


def _add_certificate(facts: TlsFacts, der: bytes, server_name: str, now: dt.datetime) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    facts.cert_sha256 = hashlib.sha256(der).hexdigest()
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        facts.verify_error = f"unreadable certificate: {exc}"
        return
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    facts.spki_sha256 = hashlib.sha256(spki).hexdigest()
    facts.subject = cert.subject.rfc4514_string()
    facts.issuer = cert.issuer.rfc4514_string()
    facts.not_before = cert.not_valid_before_utc.isoformat()
    facts.not_after = cert.not_valid_after_utc.isoformat()
    facts.days_left = (cert.not_valid_after_utc - now).days
    facts.sans = _sans(cert)
    names = facts.sans or _common_names(cert)
    facts.name_matches = any(_name_matches(pattern, server_name) for pattern in names)


def _sans(cert: object) -> list[str]:
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        return []
    dns = ext.value.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress)]
    return [*dns, *ips]


def _common_names(cert: object) -> list[str]:
    from cryptography.x509.oid import NameOID

    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]  # type: ignore[attr-defined]


def _name_matches(pattern: str, name: str) -> bool:
    """RFC 6125 matching: exact (case-insensitive) or one left-most wildcard label; IPs exact."""
    try:
        return ipaddress.ip_address(pattern) == ipaddress.ip_address(name)
    except ValueError:
        pass
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def version_at_least(actual: str | None, minimum: str) -> bool:
    if actual not in VERSION_ORDER:
        return False
    return VERSION_ORDER.index(actual) >= VERSION_ORDER.index(minimum)
