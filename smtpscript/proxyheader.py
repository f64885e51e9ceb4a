"""PROXY protocol headers, version 1 (text) and 2 (binary), as bytes (sans-IO).

A load balancer that speaks HAProxy's PROXY protocol ("proxy-protocol.txt")
opens its connection to the mail server with one header naming the real
client; the server then treats that address as the client (logs, access
rules, Received:). Sending the header ourselves lets a scenario check what a
server behind such a proxy does for a claimed client.

Only the "PROXY" command over TCP is built: that is what a proxy sends for a
relayed client. Addresses are checked here (and by validation, through
:func:`parse_address`) so that a bad value never reaches the wire.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import TYPE_CHECKING

from smtpscript.errors import LocalProtocolError

if TYPE_CHECKING:
    from smtpscript.model import ProxySettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Address = tuple[IPAddress, int]  # an address and a port

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"  # 12 bytes, section 2.2
V2_PROXY = 0x21  # version 2 (high nibble), command PROXY (low nibble)
V2_TCP4 = 0x11  # AF_INET (high nibble), STREAM (low nibble)
V2_TCP6 = 0x21  # AF_INET6, STREAM
ADDRESS_FORMS = "IPv4:port (203.0.113.7:40000) or [IPv6]:port ([2001:db8::7]:40000)"


class ProxyHeaderError(LocalProtocolError):
    """An address or port a PROXY header cannot carry; the message is user-facing."""


def parse_address(text: str) -> Address:
    """``203.0.113.7:40000`` or ``[2001:db8::7]:40000`` as (address, port)."""
    host, port = _split(text)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ProxyHeaderError(f"{host!r} is not an IP address; use {ADDRESS_FORMS}") from None
    bracketed = text.startswith("[")
    if address.version == 6 and not bracketed:
        raise ProxyHeaderError(f"write an IPv6 address in brackets: [{host}]:{port}")
    if address.version == 4 and bracketed:
        raise ProxyHeaderError(f"brackets are for IPv6 addresses; write {host}:{port}")
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        # neither header form has room for a zone: the server would get another address
        raise ProxyHeaderError(f"{host!r}: a PROXY header cannot carry a zone (%...)")
    return address, port


def _split(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if sep and rest.startswith(":") else ""
    else:
        host, sep, port_text = text.rpartition(":")
    if not host or not port_text:
        raise ProxyHeaderError(f"{text!r} has no port; use {ADDRESS_FORMS}")
    # ASCII digits only: str.isdigit() also accepts '²' and other digits int() refuses
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ProxyHeaderError(f"port {port_text!r} in {text!r} is not a number from 1 to 65535")
    return host, int(port_text)


def parse_pair(source: str, destination: str) -> tuple[Address, Address]:
    """Both ends, checked to be of one family (a header names one: TCP4 or TCP6)."""
    src, dst = parse_address(source), parse_address(destination)
    if src[0].version != dst[0].version:
        raise ProxyHeaderError(family_message(src[0], dst[0]))
    return src, dst


def family_message(source: IPAddress, destination: IPAddress) -> str:
    return (
        f"source is IPv{source.version} but destination is IPv{destination.version}: a PROXY "
        "header carries one address family, both must be IPv4 or both IPv6"
    )


def encode(version: int, source: str, destination: str) -> bytes:
    """The header announcing a TCP connection from ``source`` to ``destination``."""
    (src, sport), (dst, dport) = parse_pair(source, destination)
    if version == 1:
        return v1(src, sport, dst, dport)
    if version == 2:
        return v2(src, sport, dst, dport)
    raise ProxyHeaderError(f"PROXY protocol version {version!r} does not exist (1 or 2)")


def preamble(proxy: ProxySettings | None) -> bytes | None:
    """The bytes to send first on a connection with these settings (None: no header)."""
    if proxy is None:
        return None
    return encode(proxy.version, proxy.source, proxy.destination)


def v1(src: IPAddress, sport: int, dst: IPAddress, dport: int) -> bytes:
    """``PROXY TCP4 src dst sport dport CRLF`` (section 2.1; IPv6 without brackets)."""
    family = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode("ascii")


def v2(src: IPAddress, sport: int, dst: IPAddress, dport: int) -> bytes:
    """Signature, version/command, family/transport, length, addresses, ports (2.2)."""
    family = V2_TCP4 if src.version == 4 else V2_TCP6
    block = src.packed + dst.packed + struct.pack("!HH", sport, dport)
    return V2_SIGNATURE + struct.pack("!BBH", V2_PROXY, family, len(block)) + block


def describe(data: bytes) -> str:
    """A header as the transcript shows it: v1 as its text, v2 decoded (it is binary)."""
    if data.startswith(b"PROXY ") and data.endswith(b"\r\n"):
        return data[:-2].decode("ascii", "replace")
    if data.startswith(V2_SIGNATURE) and len(data) >= 16:
        return _describe_v2(data)
    return f"({len(data)} bytes sent before the banner)"


def _describe_v2(data: bytes) -> str:
    _, family, length = struct.unpack_from("!BBH", data, 12)
    size = {V2_TCP4: 4, V2_TCP6: 16}.get(family)
    block = data[16 : 16 + length]
    if size is None or len(block) < 2 * size + 4:
        return f"PROXY v2 header ({len(data)} bytes, binary)"
    src = ipaddress.ip_address(block[:size])
    dst = ipaddress.ip_address(block[size : 2 * size])
    sport, dport = struct.unpack_from("!HH", block, 2 * size)
    name = "TCP4" if size == 4 else "TCP6"
    return (
        f"PROXY v2 {name} {_hostport(src, sport)} -> {_hostport(dst, dport)} "
        f"({len(data)} bytes, binary)"
    )


def _hostport(address: IPAddress, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
