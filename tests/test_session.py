"""Session: one asyncio connection over real loopback sockets (hostile scripts and sandbox)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

import pytest
from hostile import Conn, Hostile, full_backlog

from smtpscript.errors import RemoteProtocolError
from smtpscript.protocol import Reply
from smtpscript.session import Closed, ConnectError, ReplyTimeout, SendTimeout, Session

TIMEOUT = 5.0


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def opened(host: str, port: int, **kwargs: object) -> Session:
    session = Session()
    await session.open(host, port, timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]
    return session


def talk(server: Hostile, steps):  # type: ignore[no-untyped-def]
    """Open a session to ``server``, run ``steps(session)``, close; return what it returned."""

    async def main():  # type: ignore[no-untyped-def]
        session = await opened(server.host, server.port)
        try:
            return await steps(session)
        finally:
            await session.close()

    return asyncio.run(main())


# --- against the sandbox ---------------------------------------------------------------------


def test_banner_ehlo_and_transcript_events(sandbox):
    async def main() -> tuple[Reply | Closed, Reply | Closed, Session]:
        session = await opened(sandbox.host, sandbox.port, source_address="127.0.0.1")
        banner = await session.read_reply(TIMEOUT)
        await session.send(b"EHLO client.test\r\n")
        ehlo = await session.read_reply(TIMEOUT)
        await session.close()
        return banner, ehlo, session

    banner, ehlo, session = asyncio.run(main())
    assert isinstance(banner, Reply) and banner.code == 220
    assert isinstance(ehlo, Reply) and ehlo.code == 250 and "PIPELINING" in ehlo.lines
    kinds = [e.direction for e in session.events]
    assert kinds[0] == "*" and session.events[0].data == f"connected to 127.0.0.1:{sandbox.port}"
    assert "C" in kinds and "S" in kinds
    assert session.events[kinds.index("C")].data == b"EHLO client.test\r\n"
    received = b"".join(e.data for e in session.events if e.direction == "S")  # type: ignore[misc]
    assert received == banner.raw + ehlo.raw
    times = [e.t for e in session.events]
    assert times == sorted(times)
    assert not session.is_open


def test_implicit_tls_and_starttls_record_facts(sandbox):
    context = ssl.create_default_context(cafile=str(sandbox.cert_path))

    async def main() -> tuple[Session, Session]:
        implicit = await opened(
            sandbox.host, sandbox.tls_port, tls=context, server_name="localhost"
        )
        assert (await implicit.read_reply(TIMEOUT)).code == 220  # type: ignore[union-attr]
        await implicit.close()
        upgraded = await opened(sandbox.host, sandbox.port)
        await upgraded.read_reply(TIMEOUT)
        await upgraded.send(b"EHLO client.test\r\nSTARTTLS\r\n")
        await upgraded.read_reply(TIMEOUT)
        assert (await upgraded.read_reply(TIMEOUT)).code == 220  # type: ignore[union-attr]
        await upgraded.starttls(context, "localhost", TIMEOUT)
        await upgraded.send(b"EHLO client.test\r\n")
        reply = await upgraded.read_reply(TIMEOUT)
        assert isinstance(reply, Reply) and "STARTTLS" not in reply.lines
        await upgraded.close()
        return implicit, upgraded

    implicit, upgraded = asyncio.run(main())
    for session in (implicit, upgraded):
        assert session.tls is not None and session.tls.verified
        assert session.tls.version in ("TLSv1.2", "TLSv1.3")
    assert upgraded.injected == 0


def test_certificate_that_does_not_verify_is_a_connect_error(sandbox):
    context = ssl.create_default_context()  # the system store does not know the sandbox CA
    with pytest.raises(ConnectError, match="certificate verify failed") as info:
        asyncio.run(opened(sandbox.host, sandbox.tls_port, tls=context))
    assert info.value.verify_failed


# --- connection errors -----------------------------------------------------------------------


def test_refused():
    port = free_port()
    with pytest.raises(ConnectError, match=rf"^connection refused by 127\.0\.0\.1:{port}$"):
        asyncio.run(opened("127.0.0.1", port))


def test_unresolvable_host():
    started = time.monotonic()
    with pytest.raises(ConnectError, match=r"^cannot resolve host 'nonexistent\.invalid': "):
        asyncio.run(opened("nonexistent.invalid", 25))
    assert time.monotonic() - started < TIMEOUT + 1


def test_connect_timeout_when_the_backlog_is_full():
    with full_backlog() as port:

        async def main() -> None:
            await Session().open("127.0.0.1", port, timeout=0.5)

        started = time.monotonic()
        try:
            asyncio.run(main())
        except ConnectError as exc:
            assert str(exc) == f"connection to 127.0.0.1:{port} timed out after 0.5 s"
        else:
            pytest.skip("this kernel accepted the connection despite a full backlog")
        assert time.monotonic() - started < 0.5 + 1.5


def test_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")

    async def script(conn: Conn) -> None:
        await conn.send(b"220 six\r\n")

    with Hostile(script, host="::1") as server:
        reply = talk(server, lambda s: s.read_reply(TIMEOUT))
    assert isinstance(reply, Reply) and reply.lines == ("six",)


# --- reading replies -------------------------------------------------------------------------


def test_pipelined_replies_in_one_segment_come_out_one_by_one():
    async def script(conn: Conn) -> None:
        await conn.send(b"220 hi\r\n250 one\r\n250-two\r\n250 two b\r\n")
        await conn.drain_until_eof()

    async def steps(session: Session) -> list[Reply | Closed]:
        return [await session.read_reply(TIMEOUT) for _ in range(3)]

    with Hostile(script) as server:
        replies = talk(server, steps)
    assert [(r.code, r.lines) for r in replies] == [  # type: ignore[union-attr]
        (220, ("hi",)),
        (250, ("one",)),
        (250, ("two", "two b")),
    ]
    assert server.received == []  # the client only listened


def test_a_reply_split_byte_by_byte_is_assembled():
    async def script(conn: Conn) -> None:
        await conn.dribble(b"220-split\r\n220 done\r\n", 0.002)
        await conn.drain_until_eof()

    with Hostile(script) as server:
        reply = talk(server, lambda s: s.read_reply(TIMEOUT))
    assert isinstance(reply, Reply) and reply.lines == ("split", "done")


def test_the_timeout_is_a_deadline_for_the_whole_reply():
    async def script(conn: Conn) -> None:
        await conn.dribble(b"220 one byte every 50 ms never gets there\r\n", 0.05)

    with Hostile(script) as server:
        started = time.monotonic()
        with pytest.raises(ReplyTimeout, match=r"^no complete reply within 0.4 s$"):
            talk(server, lambda s: s.read_reply(0.4))
    assert time.monotonic() - started < 0.4 + 1.5


def test_closed_and_reset_are_told_apart():
    async def close(conn: Conn) -> None:
        await conn.send(b"220-partial\r\n220 ")

    async def reset(conn: Conn) -> None:
        await conn.line()
        conn.reset()

    with Hostile(close) as server:
        closed = talk(server, lambda s: s.read_reply(TIMEOUT))
    assert closed == Closed(partial=b"220-partial\r\n220 ", reset=False)
    assert closed.describe() == (  # type: ignore[union-attr]
        "server closed the connection after a partial reply '220-partial\\r\\n220 '"
    )

    async def send_then_read(session: Session) -> Reply | Closed:
        await session.send(b"EHLO x\r\n")
        return await session.read_reply(TIMEOUT)

    with Hostile(reset) as server:
        got = talk(server, send_then_read)
    assert got == Closed(partial=b"", reset=True)
    assert got.describe() == "server reset the connection"  # type: ignore[union-attr]


def test_after_close_further_reads_say_closed_at_once():
    async def script(conn: Conn) -> None:
        await conn.send(b"221 bye\r\n")

    async def steps(session: Session) -> list[Reply | Closed]:
        return [await session.read_reply(TIMEOUT) for _ in range(3)]

    with Hostile(script) as server:
        started = time.monotonic()
        first, second, third = talk(server, steps)
    assert isinstance(first, Reply) and first.code == 221
    assert isinstance(second, Closed) and isinstance(third, Closed)
    assert time.monotonic() - started < 2


def test_a_broken_stream_keeps_raising_the_protocol_error():
    async def script(conn: Conn) -> None:
        await conn.send(b"220 fine\r\n999 not a code\r\n")
        await conn.drain_until_eof()

    async def steps(session: Session) -> list[object]:
        out: list[object] = [await session.read_reply(TIMEOUT)]
        for _ in range(2):
            try:
                await session.read_reply(TIMEOUT)
            except RemoteProtocolError as exc:
                out.append(str(exc))
        return out

    with Hostile(script) as server:
        first, *errors = talk(server, steps)
    assert isinstance(first, Reply) and first.code == 220
    assert errors == ["reply code 999 out of range: '999 not a code\\r\\n'"] * 2


def test_send_after_close_is_a_connection_error():
    async def script(conn: Conn) -> None:
        await conn.send(b"220 hi\r\n")

    async def steps(session: Session) -> None:
        await session.close()
        await session.send(b"NOOP\r\n")

    with Hostile(script) as server, pytest.raises(ConnectionError, match="not connected"):
        talk(server, steps)


def test_a_send_to_a_server_that_does_not_read_times_out():
    async def script(conn: Conn) -> None:
        await asyncio.sleep(60)  # never read

    async def steps(session: Session) -> Session:
        started = time.monotonic()
        with pytest.raises(SendTimeout, match=r"^the server did not take our data within 0.5 s"):
            await session.send(b"x" * 24_000_000, "24 MB", timeout=0.5)
        assert time.monotonic() - started < 0.5 + 1.5
        return session

    with Hostile(script) as server:
        session = talk(server, steps)
    assert not session.is_open
    assert session.events[-1].data == "connection aborted: the server stopped reading"
