"""Shared fixtures. Keep this file small: helpers live in their own modules."""

from __future__ import annotations

import os

import pytest
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
