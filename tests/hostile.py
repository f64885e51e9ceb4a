"""A scripted fake SMTP server over real loopback sockets, for misbehaving-server tests.

Each test hands ``Hostile`` a script: an async function that receives a
``Conn`` for every accepted connection and does whatever a broken or
malicious server would do (bare LF, silence, a 10 MB line, slowloris, a
reset, non-UTF-8, STARTTLS response injection). The server runs its own event
loop in a thread, so the runner under test keeps ``asyncio.run`` to itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType

Script = Callable[["Conn"], Awaitable[None]]
STOP_TIMEOUT = 5.0


class Conn:
    """One accepted connection, with the few moves a script needs."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.received: list[bytes] = []  # command lines as the client sent them

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self) -> bytes:
        """The next line from the client (b"" at EOF)."""
        data = await self.reader.readline()
        if data:
            self.received.append(data)
        return data

    async def dribble(self, data: bytes, delay: float) -> None:
        """Send one byte at a time, ``delay`` seconds apart (slowloris)."""
        for i in range(len(data)):
            await self.send(data[i : i + 1])
            await asyncio.sleep(delay)

    async def serve(
        self,
        replies: dict[bytes, bytes],
        default: bytes = b"250 2.0.0 Ok\r\n",
        stop_after: bytes | None = None,
    ) -> None:
        """Answer each command by its verb until QUIT or EOF; QUIT gets 221 and a close.

        ``stop_after``: return (without closing) once this verb has been answered.
        """
        while line := await self.line():
            verb = line.split()[0].upper() if line.split() else b""
            if verb == b"QUIT":
                await self.send(replies.get(b"QUIT", b"221 2.0.0 Bye\r\n"))
                return
            await self.send(replies.get(verb, default))
            if verb == stop_after:
                return

    async def drain_until_eof(self) -> None:
        """Read and keep whatever comes until the client goes away (never answer)."""
        while await self.line():
            pass

    async def starttls(self, context: ssl.SSLContext) -> None:
        await self.writer.start_tls(context)

    def reset(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0), not a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


class Hostile:
    """Listen on a free loopback port (127.0.0.1 unless told); run ``script`` for every connection.

    Use as a context manager. ``connections`` keeps every Conn (what the client
    sent is in ``conn.received``); ``errors`` keeps exceptions a script raised
    other than the client going away, so a test can assert the script itself
    did not break.
    """

    def __init__(self, script: Script, host: str = "127.0.0.1", unix_path: str | None = None):
        self.script = script
        self.host = host
        self.unix_path = unix_path  # listen on this UNIX socket instead of TCP
        self.port = 0
        self.connections: list[Conn] = []
        self.errors: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def received(self) -> list[bytes]:
        return [line for conn in self.connections for line in conn.received]

    def __enter__(self) -> Hostile:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(STOP_TIMEOUT)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(STOP_TIMEOUT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_TIMEOUT)
        self._loop.close()

    async def _start(self) -> None:
        if self.unix_path:
            self._server = await asyncio.start_unix_server(self._accept, self.unix_path)
            return
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        # Let connections accepted already be set up first: on Python 3.11 a server
        # closed under a pending accept fails an assertion and leaks that socket.
        current = asyncio.current_task()
        while accepting := [
            t
            for t in asyncio.all_tasks()
            if t is not current and t.get_coro().__name__ == "_accept_connection2"
        ]:
            await asyncio.wait(accepting, timeout=STOP_TIMEOUT)
        self._server.close()  # in the same step as the check: no accept can slip in
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in self.connections:  # a task cancelled before it ran never closed its own
            await _close(conn.writer)
        await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):  # type: ignore[no-untyped-def]
        """Called by asyncio the moment a connection is accepted; returns the script's run."""
        conn = Conn(reader, writer)
        self.connections.append(conn)
        return self._handle(conn)

    async def _handle(self, conn: Conn) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.script(conn)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client hung up on us: that is what these tests provoke
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # a broken script: let the test see it
            self.errors.append(exc)
        finally:
            self._tasks.discard(task)
            await _close(conn.writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close gracefully (FIN after what was written); never wait long for a stuck peer.

    Waiting for wait_closed() even when the transport is already closing (after a
    reset) lets its socket be closed before the loop stops, not left to the GC.
    """
    if not writer.transport.is_closing():
        writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1)


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A loopback port whose listener never accepts and whose queue is full: Linux drops
    further SYNs there, so a connect to it hangs until the client's own timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                filler = socket.socket()
                filler.setblocking(False)
                fillers.append(filler)
                filler.connect_ex(("127.0.0.1", port))
            yield port
        finally:
            for filler in fillers:
                filler.close()
