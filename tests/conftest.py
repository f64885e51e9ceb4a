"""Shared fixtures. Keep this file small: helpers live in their own modules."""

from __future__ import annotations

import os

import pytest
from dovecot_env import DovecotServer, find_dovecot
from postfix_env import PostfixServer, find_postfix


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def postfix() -> PostfixServer:
    """The loopback Postfix started by tests/postfix/setup.sh (.ci/run starts it).

    Missing server: a failure under CI (CI=true), a skip otherwise.
    """
    server, why = find_postfix()
    if server is None:
        if _in_ci():
            pytest.fail(f"CI is set but {why}", pytrace=False)
        pytest.skip(why)
    return server


@pytest.fixture(scope="session")
def dovecot() -> DovecotServer:
    """The loopback Dovecot LMTP started by tests/dovecot/setup.sh (.ci/run starts it).

    Missing server: a failure under CI (CI=true), a skip otherwise.
    """
    server, why = find_dovecot()
    if server is None:
        if _in_ci():
            pytest.fail(f"CI is set but {why}", pytrace=False)
        pytest.skip(why)
    return server


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

    binary = find_chromium()
    if binary is None:
        if _in_ci():
            pytest.fail("CI is set but chromium is not installed", pytrace=False)
        pytest.skip("chromium is not installed")
    with Chromium(binary, timeout=15.0) as page:
        yield page
