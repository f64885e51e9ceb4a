"""--loop: asyncio's own loop or uvloop; both run the same scenarios."""

from __future__ import annotations

import pytest
from scenario_helpers import cli, steps_file

from smtpscript.errors import ConfigError
from smtpscript.loops import loop_factory


def test_asyncio_is_the_plain_loop(monkeypatch):
    monkeypatch.delenv("SMTPSCRIPT_LOOP", raising=False)
    assert loop_factory("asyncio") is None


def test_uvloop_when_installed():
    uvloop = pytest.importorskip("uvloop")
    assert loop_factory("uvloop") is uvloop.new_event_loop
    assert loop_factory("auto") is uvloop.new_event_loop


def test_the_environment_sets_the_default(monkeypatch):
    monkeypatch.setenv("SMTPSCRIPT_LOOP", "asyncio")
    assert loop_factory(None) is None


def test_an_unknown_loop_is_a_config_error():
    with pytest.raises(ConfigError, match="--loop 'tokio': use one of auto, asyncio, uvloop"):
        loop_factory("tokio")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_scenario_runs_on_either_loop(tmp_path, capsys, loop):
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    path = steps_file(tmp_path, "- ehlo: loop.example.org\n- starttls: {}\n- send: NOOP")
    status, out, _ = cli(capsys, "run", path, "-t", "sandbox", "--loop", loop)
    assert status == 0, out
