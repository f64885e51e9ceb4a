"""Shared fixtures. Keep this file small: helpers live in their own modules."""

from __future__ import annotations

import pytest
from dovecot_env import DovecotServer, find_dovecot
from postfix_env import PostfixServer, find_postfix
from server_env import require


@pytest.fixture(scope="session")
def postfix() -> PostfixServer:
    """The loopback Postfix started by tests/postfix/setup.sh (.ci/run starts it).

    Missing server: a failure under CI (CI=true), a skip otherwise.
    """
    return require(find_postfix())  # type: ignore[return-value]


@pytest.fixture(scope="session")
def dovecot() -> DovecotServer:
    """The loopback Dovecot LMTP started by tests/dovecot/setup.sh (.ci/run starts it).

    Missing server: a failure under CI (CI=true), a skip otherwise.
    """
    return require(find_dovecot())  # type: ignore[return-value]


@pytest.fixture(scope="session")
def sandbox():  # type: ignore[no-untyped-def]
    """One embedded sandbox server (STARTTLS + implicit TLS) on free loopback ports."""
    from smtpscript.sandbox import Sandbox, SandboxConfig

    server = Sandbox(SandboxConfig(port=0, tls_port=0)).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sandbox_target(sandbox):  # type: ignore[no-untyped-def]
    """The sandbox as a run target, its CA trusted (as `--target sandbox` does)."""
    from smtpscript.targets import sandbox_target as make_target

    return make_target(sandbox.host, sandbox.port, sandbox.tls_port, str(sandbox.cert_path))


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    """Headless Chromium; missing: a failure under CI, a skip otherwise."""
    from chromium import Chromium, find_chromium

    binary = require((find_chromium(), "chromium is not installed"))
    with Chromium(binary, timeout=15.0) as page:
        yield page
