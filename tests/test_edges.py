"""Inputs at the edges: every bad value is one clear line and exit 2, never a traceback,
a hang or unbounded memory. Real files (FIFOs, device links, sparse files) and the real
CLI in-process; one implicit-TLS run against the sandbox."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import textwrap
from collections.abc import Iterator

import pytest
from scenario_helpers import explain, run_file, write

from smtpscript.cli import run_cli
from smtpscript.errors import ConfigError
from smtpscript.schemafile import fast_check, validator
from smtpscript.targets import FORMS, parse_target
from smtpscript.yamlsource import parse_document

VALID = "smtpscript: 1\ntitle: t\nsteps:\n  - send: QUIT\n    expect: 221\n"


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM interrupts a blocking open() or read()."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, list[str]]:
    """(exit status, stdout, stderr lines) of one in-process CLI call, within 20 s."""
    with deadline(20):
        status = run_cli(list(args))
    out, err = capsys.readouterr()
    return status, out, err.splitlines()


# --- -t/--target ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port", "tls"),
    [
        ("mx.example.org", "mx.example.org", None, None),
        ("mx.example.org:2525", "mx.example.org", 2525, None),
        ("127.0.0.1:25", "127.0.0.1", 25, None),
        ("[::1]:2525", "::1", 2525, None),
        ("::1", "::1", None, None),
        ("smtp://h", "h", 25, "none"),
        ("smtp://h:25", "h", 25, "none"),
        ("smtp://h:587/", "h", 587, "none"),
        ("smtps://h", "h", 465, "implicit"),
        ("SMTPS://h:4650", "h", 4650, "implicit"),
        ("smtp://[::1]:2525", "::1", 2525, "none"),
        ("smtps://[::1]", "::1", 465, "implicit"),
        ("  h:00025 ", "h", 25, None),
    ],
)
def test_target_forms(text, host, port, tls):
    target = parse_target(text, ca_file="ca.pem")
    assert (target.endpoint.host, target.endpoint.port, target.endpoint.tls) == (host, port, tls)
    assert target.endpoint.tls_options.ca_file == "ca.pem"
    assert target.name == text.strip()


PORT = "port must be a number from 1 to 65535"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("h:²", PORT),  # str.isdigit() says yes, int() says no
        ("h:\uff11\uff12", PORT),  # fullwidth digits
        ("h:0", PORT),
        ("h:65536", PORT),
        ("h:", PORT),
        ("h:-1", PORT),
        ("h:+25", PORT),
        ("smtp://h:x", PORT),
        ("http://h", f"unsupported scheme 'http://'; use {FORMS}"),
        ("pop3://h:110", "unsupported scheme 'pop3://'"),
        ("smtp://user:pw@h", "only a host and a port may follow the scheme"),
        ("smtp://h/path", "no user, path or query"),
        ("smtp://h:25?x=1", "no user, path or query"),
        ("smtp://", "no host"),
        ("smtps://:465", "no host"),
        ("a b", "spaces or control characters"),
        ("h\x00st:25", "spaces or control characters"),
        ("h\tx", "spaces or control characters"),
        ("user@h", "a host name has no"),
        ("/tmp/socket", "a host name has no"),
        ("[::1", "expected [IPv6] or [IPv6]:PORT"),
        ("[::1]25", "expected [IPv6] or [IPv6]:PORT"),
        ("[mx.example.org]:25", "'mx.example.org' is not an IPv6 address"),
        ("h:25:26", "is not an IPv6 address"),
        ("", "empty value"),
    ],
)
def test_bad_targets_are_config_errors(text, why):
    with pytest.raises(ConfigError) as info:
        parse_target(text)
    message = str(info.value)
    assert message.startswith("--target") and why in message
    assert "\n" not in message and "\x00" not in message


@pytest.mark.parametrize("text", ["h:²", "h:\uff11\uff12", "smtp://u:p@h", "http://h", "h\x01"])
def test_a_bad_target_on_the_command_line_is_one_line_and_exit_2(tmp_path, capsys, text):
    scenario = write(tmp_path, VALID)
    status, out, err = cli(capsys, "run", str(scenario), "-t", text)
    assert status == 2 and out == ""
    assert len(err) == 1 and err[0].startswith("smtpscript: error: --target ")


def test_smtps_target_gets_the_banner_over_tls(tmp_path, sandbox):
    scenario = write(
        tmp_path,
        textwrap.dedent("""\
        smtpscript: 1
        title: banner over implicit TLS
        steps:
          - connect: {}
            expect: 220
            tls: {verified: true}
          - ehlo: client.test
          - send: QUIT
            expect: 221
        """),
    )
    url = f"smtps://{sandbox.host}:{sandbox.tls_port}"
    result = run_file(scenario, parse_target(url, ca_file=str(sandbox.cert_path)))
    assert result.verdict == "passed", explain(result)
    banner = result.steps[0]
    assert banner.tls is not None and banner.tls.verified and banner.tls.version
    assert banner.replies[0].code == 220
    assert result.target.port == sandbox.tls_port


def test_smtps_target_from_the_command_line(tmp_path, capsys, sandbox):
    scenario = write(tmp_path, "smtpscript: 1\ntitle: tls\nsteps:\n  - connect: {}\n")
    url = f"smtps://{sandbox.host}:{sandbox.tls_port}"
    out = tmp_path / "r.json"
    args = [
        "run",
        str(scenario),
        "-t",
        url,
        "--ca-file",
        str(sandbox.cert_path),
        "--json",
        str(out),
    ]
    status, _, err = cli(capsys, *args)
    assert status == 0, err
    step = json.loads(out.read_text())["scenarios"][0]["steps"][0]
    assert step["tls"]["verified"] is True and step["replies"][0]["code"] == 220


def test_smtp_target_is_plain_even_on_the_sandbox(tmp_path, sandbox):
    scenario = write(tmp_path, "smtpscript: 1\ntitle: plain\nsteps:\n  - connect: {}\n")
    result = run_file(scenario, parse_target(f"smtp://{sandbox.host}:{sandbox.port}"))
    assert result.verdict == "passed", explain(result)
    assert result.steps[0].tls is None


# --- scenario files that are not files -------------------------------------------------


def test_validate_a_folder_with_a_fifo_skips_it_and_does_not_hang(tmp_path, capsys):
    write(tmp_path, VALID, "ok.yaml")
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "zero.yml").symlink_to("/dev/zero")
    status, out, err = cli(capsys, "validate", str(tmp_path))
    assert status == 0, err
    assert out == "1 file: 1 valid scenario: all valid\n"


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda p: os.mkfifo(p), "not a regular file or directory (a FIFO)"),
        (
            lambda p: p.symlink_to("/dev/zero"),
            "not a regular file or directory (a character device)",
        ),
        (lambda p: p.symlink_to(p.parent / "gone.yaml"), "broken symbolic link"),
    ],
)
def test_validate_refuses_a_named_fifo_or_device(tmp_path, capsys, make, why):
    path = tmp_path / "odd.yaml"
    make(path)
    status, out, err = cli(capsys, "validate", str(path))
    assert status == 2 and out == ""
    assert err == [f"smtpscript: error: {path}: {why}"]


def test_validate_refuses_an_oversized_file_in_one_line(tmp_path, capsys, monkeypatch):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * (4 * 1024 * 1024))
    monkeypatch.chdir(tmp_path)
    status, _, err = cli(capsys, "validate", "big.yaml")
    assert status == 2
    assert err == [
        "big.yaml:1:1: file is larger than 4 MiB",
        "1 file: 0 valid scenarios; 1 problem in 1 file",
    ]


def test_nan_infinity_and_surrogates_are_positioned_problems(tmp_path, capsys, monkeypatch):
    write(
        tmp_path,
        "smtpscript: 1\ntitle: t\ntarget: {timeout: .nan}\nsteps:\n"
        '  - sleep: -.Inf\n  - raw: "DATA\\ud800\\r\\n"\n',
        "odd.yaml",
    )
    monkeypatch.chdir(tmp_path)
    status, _, err = cli(capsys, "validate", "odd.yaml")
    assert status == 2
    assert err[0] == (
        "odd.yaml:3:19: target.timeout: '.nan' is not a finite number "
        "(NaN and infinity are not allowed)"
    )
    assert err[1].startswith("odd.yaml:5:12: steps[0].sleep: '-.Inf' is not a finite number")
    assert err[2].startswith("odd.yaml:6:10: steps[1].raw: contains \\ud800, a UTF-16 surrogate")
    assert len(err) == 4


def test_a_timeout_beyond_an_hour_is_a_validation_error(tmp_path, capsys, monkeypatch):
    huge = "1" + "0" * 400  # used to overflow converting to float in the event loop
    write(
        tmp_path, f"smtpscript: 1\ntitle: t\ntarget: {{timeout: {huge}}}\nsteps: [{{send: QUIT}}]\n"
    )
    monkeypatch.chdir(tmp_path)
    status, _, err = cli(capsys, "validate", "s.yaml")
    assert status == 2
    assert err[0] == (
        "s.yaml:3:19: target.timeout: must be at most 3600, not 100000000000... "
        "(a number of 401 characters)"
    )


# --- data header names -----------------------------------------------------------------

HEADERS = """\
smtpscript: 1
title: t
steps:
  - data:
      headers:
        Subject: fine
        X-Probe-1: fine
        "Bcc\\r\\nX": cr-lf
        "To:": colon
        "Sub ject": space
        "X\\n": lf
        "Ü": non-ascii
      body: hi
"""


def test_header_names_must_be_rfc5322_field_names(tmp_path, capsys, monkeypatch):
    write(tmp_path, HEADERS)
    monkeypatch.chdir(tmp_path)
    status, _, err = cli(capsys, "validate", "s.yaml")
    rule = "is not a valid header name: use printable ASCII without spaces, ':' or line breaks"
    assert status == 2
    assert [line.split(" (RFC")[0] for line in err[:-1]] == [
        f"s.yaml:8:9: steps[0].data.headers['Bcc\\r\\nX']: 'Bcc\\r\\nX' {rule}",
        f"s.yaml:9:9: steps[0].data.headers['To:']: 'To:' {rule}",
        f"s.yaml:10:9: steps[0].data.headers['Sub ject']: 'Sub ject' {rule}",
        f"s.yaml:11:9: steps[0].data.headers['X\\n']: 'X\\n' {rule}",
        f"s.yaml:12:9: steps[0].data.headers.Ü: 'Ü' {rule}",
    ]
    assert err[-1] == "1 file: 0 valid scenarios; 5 problems in 1 file"


@pytest.mark.parametrize("name", ["Subject", "X-A_b.c~!", "Bcc\r\nX", "To:", "A B", "X\n", "", "Ü"])
def test_the_fast_checker_agrees_with_jsonschema_on_header_names(name):
    data = parse_document(VALID.encode(), "s.yaml").data
    data["steps"][0] = {"data": {"headers": {name: "v"}, "body": "b"}}
    check = fast_check("scenario")
    assert check is not None
    expected = not list(validator("scenario").iter_errors(data))
    assert check(data) is expected
    assert expected is (name in ("Subject", "X-A_b.c~!"))


def test_variable_and_capture_names_with_a_trailing_newline_are_refused(tmp_path, capsys):
    # Python's '$' also matches before a final newline; the schema patterns guard against it
    text = 'smtpscript: 1\ntitle: t\nvars: {"a\\n": 1}\nsteps:\n  - send: QUIT\n'
    text += '    capture: {"q\\n": "(.*)"}\n'
    status, _, err = cli(capsys, "validate", str(write(tmp_path, text)))
    assert status == 2
    assert "vars['a\\n']: 'a\\n' is not a valid variable name" in err[0]
    assert "steps[0].capture['q\\n']: 'q\\n' is not a valid variable name" in err[1]


# --- smtpscript report: hostile results JSON ----------------------------------------------

GOOD_RESULTS = {
    "format": 1,
    "tool_version": "x",
    "started_at": "",
    "finished_at": "",
    "duration_ms": 0,
    "targets": [],
    "scenarios": [],
}


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


HOSTILE = {
    "nan.json": (
        '{"format": 1, "duration_ms": NaN}',
        "not JSON smtpscript writes: NaN is not a JSON number",
    ),
    "inf.json": ('{"x": -Infinity}', "-Infinity is not a JSON number"),
    "overflow.json": ('{"duration_ms": 1e999}', "1e999 is too large a number"),
    "bigint.json": ('{"duration_ms": ' + "9" * 5000 + "}", "a number with more than 100 digits"),
    "deep.json": ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
    "deepobj.json": (_nested(50_000), "nested too deeply"),
    "list.json": ("[1, 2]", "the top level is a list, not an object"),
    "string.json": ('"results"', "the top level is a string, not an object"),
    "null.json": ("null", "the top level is a single value, not an object"),
    "surrogate.json": ('{"tool_version": "\\ud800"}', "a string holds a lone surrogate"),
    "truncated.json": ('{"format": ', ":1:12: not JSON: Expecting value"),
    "empty.json": ("", ":1:1: not JSON: Expecting value"),
    "format.json": ('{"format": "' + "9" * 1000 + '"}', "unsupported results format '99999"),
    "schema.json": (
        json.dumps({**GOOD_RESULTS, "duration_ms": "x" * 100_000}),
        "not smtpscript results",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_report_refuses_hostile_json_in_one_line(tmp_path, capsys, name):
    text, why = HOSTILE[name]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    out = tmp_path / "out.json"
    status, stdout, err = cli(capsys, "report", str(path), "--json", str(out))
    assert status == 2 and stdout == "" and not out.exists()
    assert len(err) == 1 and err[0].startswith(f"smtpscript: error: {path}")
    assert why in err[0] and len(err[0]) < 500


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (
            lambda p: p.write_bytes(b'{"tool_version": "caf\xe9"}'),
            "not UTF-8 text (byte 0xe9 at offset 21)",
        ),
        (lambda p: os.mkfifo(p), "not a regular file (a FIFO)"),
        (lambda p: p.symlink_to("/dev/zero"), "not a regular file (a character device)"),
        (lambda p: p.mkdir(), "not a regular file (a directory)"),
        (lambda p: None, "cannot read: No such file or directory"),
    ],
)
def test_report_refuses_files_it_cannot_read_as_text(tmp_path, capsys, make, why):
    path = tmp_path / "r.json"
    make(path)
    status, _, err = cli(capsys, "report", str(path), "--json", str(tmp_path / "out.json"))
    assert status == 2
    assert err == [f"smtpscript: error: {path}: {why}"]


def test_report_refuses_a_results_file_over_512_mib_without_reading_it(tmp_path, capsys):
    path = tmp_path / "huge.json"
    with path.open("wb") as out:
        out.truncate(513 * 1024 * 1024)  # sparse: no disk, and never read
    status, _, err = cli(capsys, "report", str(path), "--json", str(tmp_path / "out.json"))
    assert status == 2
    assert err == [f"smtpscript: error: {path}: larger than 512 MiB: not a results file"]


def test_report_still_reads_good_results(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(GOOD_RESULTS), encoding="utf-8")
    status, _, err = cli(capsys, "report", str(path), "--json", str(tmp_path / "out.json"))
    assert status == 0, err
    assert json.loads((tmp_path / "out.json").read_text())["scenarios"] == []
