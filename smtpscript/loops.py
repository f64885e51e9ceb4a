"""Which event loop runs the scenarios: asyncio's own, or uvloop when installed
(`pip install 'smtpscript[fast]'`). Both pass the same test suite; uvloop spends
less CPU per session, which load mode feels."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from smtpscript.errors import ConfigError

LOOPS = ("auto", "asyncio", "uvloop")
ENV = "SMTPSCRIPT_LOOP"  # the default for --loop (the test suite runs once with each)


def loop_factory(name: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for asyncio.Runner: None is asyncio's default loop.

    ``auto`` (the default) is uvloop when it can be imported, else asyncio; ``uvloop``
    asks for it and says how to get it when it is missing.
    """
    choice = name or os.environ.get(ENV) or "auto"
    if choice not in LOOPS:
        raise ConfigError(f"--loop {choice!r}: use one of {', '.join(LOOPS)}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "--loop uvloop: uvloop is not installed (pip install 'smtpscript[fast]')"
            ) from None
        return None
    return uvloop.new_event_loop


def loop_name(factory: Callable[[], asyncio.AbstractEventLoop] | None) -> str:
    return "asyncio" if factory is None else "uvloop"
