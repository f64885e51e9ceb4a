"""PROXY protocol headers (v1, v2) and XCLIENT: bytes, validation, a scripted server, Postfix.

The headers are checked byte by byte against HAProxy's proxy-protocol.txt (sections 2.1
and 2.2), written out here independently of smtpscript.proxyheader. Against the loopback
Postfix, the claimed client must reach its maillog and the Received: header.
"""

from __future__ import annotations

import socket
import ssl
import struct
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from hostile import Conn, Hostile
from postfix_env import header_values
from scenario_helpers import SCENARIOS, explain, run_file, write

from smtpscript import proxyheader
from smtpscript.actions.xclient import xtext
from smtpscript.cli import run_cli
from smtpscript.loading import load_paths
from smtpscript.results import ScenarioResult, StepResult
from smtpscript.runner import RunOptions, run
from smtpscript.sandbox import _make_certificate
from smtpscript.targets import parse_target

CLAIMED = "203.0.113.7"  # TEST-NET-3
SIGNATURE = bytes([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A])
EHLO_XCLIENT = (
    b"250-hostile.test\r\n250-XCLIENT NAME ADDR PROTO HELO\r\n250 ENHANCEDSTATUSCODES\r\n"
)


# --- headers, bytes only ------------------------------------------------------------


def test_v1_ipv4_is_one_text_line():
    header = proxyheader.encode(1, "203.0.113.7:40000", "198.51.100.1:25")
    assert header == b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 25\r\n"


def test_v1_ipv6_writes_addresses_without_brackets_in_compressed_form():
    header = proxyheader.encode(1, "[2001:DB8:0::7]:40000", "[2001:db8::25]:25")
    assert header == b"PROXY TCP6 2001:db8::7 2001:db8::25 40000 25\r\n"


def test_v2_ipv4_field_by_field():
    header = proxyheader.encode(2, "203.0.113.7:40000", "198.51.100.1:25")
    assert len(header) == 16 + 12
    assert header[0:12] == SIGNATURE
    assert header[12] == 0x21  # version 2 (high nibble), command PROXY (1)
    assert header[13] == 0x11  # AF_INET (1), STREAM (1)
    assert header[14:16] == b"\x00\x0c"  # 12 address bytes follow, network order
    assert header[16:20] == bytes([203, 0, 113, 7])
    assert header[20:24] == bytes([198, 51, 100, 1])
    assert header[24:26] == (40000).to_bytes(2, "big")
    assert header[26:28] == (25).to_bytes(2, "big")


def test_v2_ipv6_field_by_field():
    header = proxyheader.encode(2, "[2001:db8::7]:40000", "[2001:db8::25]:587")
    assert len(header) == 16 + 36
    assert header[0:12] == SIGNATURE
    assert header[12] == 0x21
    assert header[13] == 0x21  # AF_INET6 (2), STREAM (1)
    assert struct.unpack("!H", header[14:16]) == (36,)
    assert header[16:32] == bytes.fromhex("20010db8000000000000000000000007")
    assert header[32:48] == bytes.fromhex("20010db8000000000000000000000025")
    assert struct.unpack("!HH", header[48:52]) == (40000, 587)


def test_the_transcript_shows_v1_as_text_and_v2_decoded():
    v1 = proxyheader.encode(1, "203.0.113.7:40000", "198.51.100.1:25")
    v2 = proxyheader.encode(2, "[2001:db8::7]:40000", "[2001:db8::25]:25")
    assert proxyheader.describe(v1) == "PROXY TCP4 203.0.113.7 198.51.100.1 40000 25"
    assert proxyheader.describe(v2) == (
        "PROXY v2 TCP6 [2001:db8::7]:40000 -> [2001:db8::25]:25 (52 bytes, binary)"
    )


@pytest.mark.parametrize(
    ("source", "destination", "message"),
    [
        ("203.0.113.7", "198.51.100.1:25", "has no port"),
        ("203.0.113.7:0", "198.51.100.1:25", "not a number from 1 to 65535"),
        ("203.0.113.7:65536", "198.51.100.1:25", "not a number from 1 to 65535"),
        ("203.0.113.7:\uff12\uff15", "198.51.100.1:25", "not a number from 1 to 65535"),
        ("203.0.113.300:1", "198.51.100.1:25", "is not an IP address"),
        ("mx.example:1", "198.51.100.1:25", "is not an IP address"),
        ("2001:db8::7:40000", "[2001:db8::25]:25", "in brackets"),
        ("[203.0.113.7]:1", "198.51.100.1:25", "brackets are for IPv6"),
        ("[2001:db8::7]", "[2001:db8::25]:25", "has no port"),
        ("[fe80::1%eth0]:1", "[2001:db8::25]:25", "zone"),
        ("203.0.113.7:1", "[2001:db8::25]:25", "both must be IPv4 or both IPv6"),
    ],
)
def test_bad_addresses_are_refused_with_a_reason(source, destination, message):
    with pytest.raises(proxyheader.ProxyHeaderError, match=message):
        proxyheader.encode(1, source, destination)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("client.example", "client.example"),
        ("[UNAVAILABLE]", "[UNAVAILABLE]"),
        ("[TEMPUNAVAIL]", "[TEMPUNAVAIL]"),
        ("a+b=c d", "a+2Bb+3Dc+20d"),
        ("x\r\nRSET", "x+0D+0ARSET"),
        ("jörg", "j+C3+B6rg"),
    ],
)
def test_xclient_values_are_xtext(value, encoded):
    assert xtext(value) == encoded


# --- validation -----------------------------------------------------------------------

BAD = textwrap.dedent(
    """\
    smtpscript: 1
    title: bad proxy and xclient
    steps:
      - connect:
          proxy: {version: 2, source: "203.0.113.7:40000", destination: "[2001:db8::1]:25"}
      - connect:
          proxy: {version: 1, source: "203.0.113.7:99999", destination: "198.51.100.1"}
      - connect:
          proxy: {version: 3, source: "203.0.113.7:1", destination: "198.51.100.1:25"}
      - xclient: {NAME: client.example, name: x, CLIENT: y}
      - xclient: {}
    """
)
BAD_PROBLEMS = [
    "bad.yaml:5:69: steps[0].connect.proxy.destination: source is IPv4 but destination is "
    "IPv6: a PROXY header carries one address family, both must be IPv4 or both IPv6",
    "bad.yaml:7:35: steps[1].connect.proxy.source: port '99999' in '203.0.113.7:99999' is "
    "not a number from 1 to 65535",
    "bad.yaml:7:69: steps[1].connect.proxy.destination: '198.51.100.1' has no port; use "
    f"{proxyheader.ADDRESS_FORMS}",
    "bad.yaml:9:24: steps[2].connect.proxy.version: 3 is not one of: 1, 2",
    "bad.yaml:10:37: steps[3].xclient.name: unknown key 'name' (did you mean 'NAME'?)",
    "bad.yaml:10:46: steps[3].xclient.CLIENT: unknown key 'CLIENT'",
    "bad.yaml:11:14: steps[4].xclient: XCLIENT needs at least one attribute (NAME, ADDR, "
    "PROTO, HELO, REVERSE_NAME, PORT, LOGIN, DESTADDR, DESTPORT)",
]


def test_bad_proxy_values_and_xclient_attributes_are_validation_errors(tmp_path):
    path = write(tmp_path, BAD, "bad.yaml")
    loaded = load_paths([path])
    assert loaded.scenarios == []
    shown = [str(p).replace(str(tmp_path) + "/", "") for p in loaded.problems]
    assert shown == BAD_PROBLEMS


def test_validate_cli_reports_them_with_positions(tmp_path, monkeypatch, capsys):
    write(tmp_path, BAD, "bad.yaml")
    monkeypatch.chdir(tmp_path)
    status = run_cli(["validate", "bad.yaml"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.splitlines()[:-1] == BAD_PROBLEMS
    assert "Traceback" not in err


def test_good_proxy_and_xclient_steps_validate(tmp_path):
    path = write(
        tmp_path,
        textwrap.dedent(
            """\
            smtpscript: 1
            title: good
            target:
              proxy: {version: 2, source: "[2001:db8::7]:1", destination: "[2001:db8::25]:25"}
            vars: {addr: 203.0.113.7}
            steps:
              - connect:
                  proxy: {version: 1, source: "203.0.113.7:40000", destination: "198.51.100.1:25"}
              - xclient:
                  {NAME: client.example, ADDR: "{{ addr }}", PORT: 40000, LOGIN: "[UNAVAILABLE]"}
            """
        ),
    )
    loaded = load_paths([path])
    assert not loaded.problems, [str(p) for p in loaded.problems]
    scenario = loaded.scenarios[0]
    assert scenario.target.proxy is not None and scenario.target.proxy.version == 2
    connect = scenario.steps[0].action
    assert connect.endpoint.proxy.source == "203.0.113.7:40000"


# --- a scripted server that records the first bytes ------------------------------------


def first_bytes_then_smtp(size: int):  # type: ignore[no-untyped-def]
    """Read ``size`` bytes before the banner (the header), then a small SMTP server."""

    async def script(conn: Conn) -> None:
        conn.received.append(await conn.reader.readexactly(size))
        await conn.send(b"220 hostile.test ESMTP\r\n")
        await conn.serve({b"EHLO": b"250-hostile.test\r\n250 8BITMIME\r\n"})

    return script


def xclient_step(result: ScenarioResult) -> StepResult:
    return next(step for step in result.steps if step.kind == "xclient")


def run_path(path: Path, target: str, **overrides: str) -> ScenarioResult:
    loaded = load_paths([path], extra_names=overrides)
    assert not loaded.problems, [str(p) for p in loaded.problems]
    options = RunOptions(overrides=dict(overrides))
    return run(loaded.scenarios, [parse_target(target)], options).scenarios[0]


def proxy_scenario(tmp_path: Path, version: int, where: str = "connect") -> Path:
    proxy = f'{{version: {version}, source: "203.0.113.7:40000", destination: "198.51.100.1:25"}}'
    head = f"target:\n  proxy: {proxy}\n" if where == "target" else ""
    first = "  - connect: {}\n" if where == "target" else f"  - connect:\n      proxy: {proxy}\n"
    text = (
        f"smtpscript: 1\ntitle: proxy v{version}\n{head}steps:\n{first}"
        "  - ehlo: client.test\n  - send: QUIT\n    expect: 221\n"
    )
    return write(tmp_path, text, f"proxy-{version}-{where}.yaml")


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("where", ["connect", "target"])
def test_the_header_is_the_first_bytes_before_the_banner(tmp_path, version, where):
    expected = proxyheader.encode(version, "203.0.113.7:40000", "198.51.100.1:25")
    with Hostile(first_bytes_then_smtp(len(expected))) as server:
        result = run_path(proxy_scenario(tmp_path, version, where), f"127.0.0.1:{server.port}")
    assert result.verdict == "passed", explain(result)
    assert not server.errors
    assert server.connections[0].received[0] == expected
    assert server.connections[0].received[1].startswith(b"EHLO ")
    shown = [e.text for e in result.transcript if e.direction == "C"]
    assert shown[0] == proxyheader.describe(expected)
    assert shown[0].startswith("PROXY TCP4 " if version == 1 else "PROXY v2 TCP4 ")


def test_without_proxy_nothing_comes_before_the_client_command(tmp_path):
    async def script(conn: Conn) -> None:
        await conn.send(b"220 hostile.test ESMTP\r\n")
        await conn.serve({})

    path = write(tmp_path, "smtpscript: 1\ntitle: plain\nsteps:\n  - send: QUIT\n    expect: 2xx\n")
    with Hostile(script) as server:
        result = run_path(path, f"127.0.0.1:{server.port}")
    assert result.verdict == "passed", explain(result)
    assert server.received == [b"QUIT\r\n"]


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    cert, key = _make_certificate("hostile.test", tmp_path_factory.mktemp("cert"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def tls_after_header(context: ssl.SSLContext, size: int, got: list[bytes]) -> socket.socket:
    """A one-connection server: reads exactly ``size`` bytes in plain TCP, then TLS.

    A blocking socket, not asyncio streams: a StreamReader would read the ClientHello
    that follows the header into its buffer, where the TLS layer never sees it (a real
    PROXY-protocol server peeks at the header for the same reason).
    """
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            header = b""
            while len(header) < size and (chunk := conn.recv(size - len(header))):
                header += chunk
            got.append(header)
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"220 hostile.test ESMTP\r\n")
                got.append(tls.recv(100))
                tls.sendall(b"221 bye\r\n")

    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_with_implicit_tls_the_header_comes_before_the_handshake(tmp_path, server_tls):
    expected = proxyheader.encode(1, "203.0.113.7:40000", "198.51.100.1:465")
    path = write(
        tmp_path,
        textwrap.dedent(
            """\
            smtpscript: 1
            title: proxy then implicit TLS
            steps:
              - connect:
                  tls: implicit
                  verify: false
                  proxy: {version: 1, source: "203.0.113.7:40000", destination: "198.51.100.1:465"}
              - send: QUIT
                expect: 221
            """
        ),
    )
    got: list[bytes] = []
    with tls_after_header(server_tls, len(expected), got) as listener:
        port = listener.getsockname()[1]
        result = run_path(path, f"127.0.0.1:{port}")
    assert result.verdict == "passed", explain(result)
    assert got == [expected, b"QUIT\r\n"]
    assert result.steps[0].tls is not None and result.steps[0].tls.version


def test_a_bad_target_proxy_is_a_validation_error_like_a_connect_one(tmp_path):
    path = write(
        tmp_path,
        textwrap.dedent(
            """\
            smtpscript: 1
            title: bad target proxy
            target:
              proxy: {version: 1, source: "203.0.113.7:1", destination: "[2001:db8::25]:25"}
            steps:
              - send: QUIT
            """
        ),
    )
    problems = [str(p) for p in load_paths([path]).problems]
    assert problems == [
        f"{path}:4:61: target.proxy.destination: source is IPv4 but destination is IPv6: a "
        "PROXY header carries one address family, both must be IPv4 or both IPv6"
    ]


# --- XCLIENT against a scripted server --------------------------------------------------


async def xclient_server(conn: Conn) -> None:
    """Offers XCLIENT NAME ADDR PROTO HELO; XCLIENT gets a new greeting (as Postfix does)."""
    await conn.send(b"220 hostile.test ESMTP\r\n")
    while line := await conn.line():
        verb = line.split()[0].upper() if line.split() else b""
        if verb == b"EHLO":
            await conn.send(EHLO_XCLIENT)
        elif verb == b"XCLIENT":
            await conn.send(b"220 hostile.test ESMTP\r\n")
        elif verb == b"QUIT":
            await conn.send(b"221 bye\r\n")
            return
        else:
            await conn.send(b"250 ok\r\n")


def xclient_steps(tmp_path: Path, attributes: str, after: str = "") -> Path:
    text = (
        "smtpscript: 1\ntitle: xclient\nvars: {name: 'client.example'}\nsteps:\n"
        "  - ehlo: client.test\n"
        f"  - xclient: {attributes}\n{after}"
        "  - send: NOOP\n    when: \"'XCLIENT' in caps\"\n"
        "  - ehlo: client.test\n  - send: QUIT\n    expect: 221\n"
    )
    return write(tmp_path, text, "xclient.yaml")


def test_xclient_sends_xtext_values_expects_220_and_forgets_the_capabilities(tmp_path):
    path = xclient_steps(tmp_path, '{NAME: "{{ name }}", ADDR: 203.0.113.7, HELO: "a b+c"}')
    with Hostile(xclient_server) as server:
        result = run_path(path, f"127.0.0.1:{server.port}")
    assert result.verdict == "passed", explain(result)
    assert b"XCLIENT NAME=client.example ADDR=203.0.113.7 HELO=a+20b+2Bc\r\n" in server.received
    assert (
        xclient_step(result).name == "XCLIENT NAME=client.example ADDR=203.0.113.7 HELO=a+20b+2Bc"
    )
    noop = result.steps[result.steps.index(xclient_step(result)) + 1]
    assert noop.verdict == "skipped"  # caps emptied: the session starts over
    assert b"NOOP\r\n" not in server.received


def test_an_attribute_the_server_did_not_advertise_is_refused_before_sending(tmp_path):
    path = xclient_steps(tmp_path, "{NAME: client.example, LOGIN: alice}")
    with Hostile(xclient_server) as server:
        result = run_path(path, f"127.0.0.1:{server.port}")
    assert result.verdict == "error", explain(result)
    step = xclient_step(result)
    assert step.verdict == "error"
    assert step.message == (
        "XCLIENT LOGIN not sent: the server advertised only XCLIENT NAME ADDR PROTO HELO"
    )
    assert not any(line.startswith(b"XCLIENT") for line in server.received)


def test_xclient_is_sent_even_when_not_advertised(tmp_path):
    async def refuses(conn: Conn) -> None:
        await conn.send(b"220 hostile.test ESMTP\r\n")
        await conn.serve({b"XCLIENT": b"550 5.7.0 insufficient authorization\r\n"})

    path = xclient_steps(tmp_path, "{NAME: client.example}", "    expect: 550\n")
    with Hostile(refuses) as server:
        result = run_path(path, f"127.0.0.1:{server.port}")
    assert result.verdict == "passed", explain(result)
    assert b"XCLIENT NAME=client.example\r\n" in server.received


# --- the real Postfix ---------------------------------------------------------------------


def delivery_scenario(tmp_path: Path, token: str, first_steps: str) -> Path:
    text = (
        "smtpscript: 1\ntitle: delivery\nsteps:\n"
        f"{first_steps}"
        "  - send: 'MAIL FROM:<probe@client.test>'\n"
        "  - send: 'RCPT TO:<alice@postfix.test>'\n    expect: 250\n"
        f"  - data: {{headers: {{Subject: '{token}'}}, body: 'hello'}}\n"
        "  - send: QUIT\n    expect: 221\n"
    )
    return write(tmp_path, text, "delivery.yaml")


@pytest.mark.postfix
@pytest.mark.parametrize("version", [1, 2])
def test_postfix_takes_the_client_from_the_proxy_header(tmp_path, postfix, version):
    token = f"proxy-v{version}-{uuid.uuid4().hex}"
    proxy = f'{{version: {version}, source: "{CLAIMED}:40000", destination: "198.51.100.1:25"}}'
    first = f"  - connect:\n      proxy: {proxy}\n  - ehlo: client.test\n"
    start, since = postfix.maillog_size(), time.time()
    result = run_path(
        delivery_scenario(tmp_path, token, first), f"{postfix.host}:{postfix.proxy_port}"
    )
    assert result.verdict == "passed", explain(result)
    postfix.wait_for_maillog(rf"connect from unknown\[{CLAIMED}\]", start=start)
    message = postfix.wait_for_message(containing=token.encode(), since=since - 1)
    received = header_values(message, "Received")[0]
    assert received.startswith(f"from client.test (unknown [{CLAIMED}])"), received


@pytest.mark.postfix
def test_postfix_xclient_changes_the_client_name_in_received(tmp_path, postfix):
    token = f"xclient-{uuid.uuid4().hex}"
    first = (
        "  - ehlo: client.test\n"
        f"  - xclient: {{NAME: client.example, ADDR: {CLAIMED}}}\n"
        "  - ehlo: client.test\n"
    )
    start, since = postfix.maillog_size(), time.time()
    result = run_path(
        delivery_scenario(tmp_path, token, first), f"{postfix.host}:{postfix.xclient_port}"
    )
    assert result.verdict == "passed", explain(result)
    assert xclient_step(result).replies[0].code == 220  # Postfix greets again
    postfix.wait_for_maillog(rf"client=client\.example\[{CLAIMED}\]", start=start)
    message = postfix.wait_for_message(containing=token.encode(), since=since - 1)
    received = header_values(message, "Received")[0]
    assert received.startswith(f"from client.test (client.example [{CLAIMED}])"), received


@pytest.mark.postfix
def test_postfix_without_xclient_authorization_refuses_it(tmp_path, postfix):
    # the main port does not advertise XCLIENT: the command is sent, and Postfix says no
    path = xclient_steps(tmp_path, "{NAME: client.example}", "    expect: 550\n    status: 5.7.0\n")
    result = run_path(path, f"{postfix.host}:{postfix.port}")
    assert result.verdict == "passed", explain(result)
    assert xclient_step(result).sent == ["XCLIENT NAME=client.example"]


@pytest.mark.postfix
def test_proxy_protocol_scenario_against_the_postfix_proxy_listener(postfix):
    token = f"proxy-scenario-{uuid.uuid4().hex}"
    start, since = postfix.maillog_size(), time.time()
    result = run_file(
        SCENARIOS / "extensions" / "proxy-protocol.yaml",
        parse_target(f"{postfix.host}:{postfix.proxy_port}"),
        proxy_listener="true",
        recipient=f"alice@{postfix.domain}",
        check_id=token,
    )
    assert result.verdict == "passed", explain(result)
    assert [e.text for e in result.transcript if e.text.startswith("PROXY")] == [
        f"PROXY TCP4 {CLAIMED} 198.51.100.1 40000 25",
        f"PROXY v2 TCP4 {CLAIMED}:40001 -> 198.51.100.1:25 (28 bytes, binary)",
    ]
    postfix.wait_for_maillog(rf"connect from unknown\[{CLAIMED}\]", start=start)
    message = postfix.wait_for_message(containing=token.encode(), since=since - 1)
    assert f"(unknown [{CLAIMED}])" in header_values(message, "Received")[0]


@pytest.mark.postfix
def test_xclient_scenario_against_the_postfix_xclient_listener(postfix):
    token = f"xclient-scenario-{uuid.uuid4().hex}"
    since = time.time()
    result = run_file(
        SCENARIOS / "extensions" / "xclient.yaml",
        parse_target(f"{postfix.host}:{postfix.xclient_port}"),
        recipient=f"alice@{postfix.domain}",
        check_id=token,
    )
    assert result.verdict == "passed", explain(result)
    assert [s.verdict for s in result.steps if s.kind == "xclient"] == ["passed"]
    message = postfix.wait_for_message(containing=token.encode(), since=since - 1)
    assert f"(client.example [{CLAIMED}])" in header_values(message, "Received")[0]


def test_example_scenarios_pass_or_skip_on_the_sandbox(sandbox_target):
    proxy = run_file(SCENARIOS / "extensions" / "proxy-protocol.yaml", sandbox_target)
    assert proxy.verdict == "skipped", explain(proxy)
    xclient = run_file(SCENARIOS / "extensions" / "xclient.yaml", sandbox_target)
    assert xclient.verdict == "skipped", explain(xclient)
    assert xclient.reason == "XCLIENT is not offered: nothing to judge"
    assert not [s for s in xclient.steps if s.kind == "xclient"]
