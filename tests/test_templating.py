"""Sandboxed templates, StrictUndefined, filters, secret tracking."""

from __future__ import annotations

import base64

import pytest

from smtpscript.redaction import REDACTED
from smtpscript.templating import (
    BUILTIN_NAMES,
    EnvView,
    SecretTracker,
    TemplateError,
    evaluate,
    is_template,
    names_used,
    render,
    syntax_error,
)


def test_render_plain_text_and_variables():
    assert render("QUIT", {}) == "QUIT"
    assert render("MAIL FROM:<{{ sender }}>", {"sender": "a@example.org"}) == (
        "MAIL FROM:<a@example.org>"
    )
    assert render("{{ caps.SIZE }}", {"caps": {"SIZE": "10240000"}}) == "10240000"
    assert render("RCPT TO:<user{{ index }}@x>", {"index": 3}) == "RCPT TO:<user3@x>"
    assert render("line\n", {}) == "line\n"  # a trailing newline is kept
    assert render("{{ a }}\n", {"a": 1}) == "1\n"


def test_undefined_names_are_errors_not_empty_strings():
    with pytest.raises(TemplateError) as info:
        render("MAIL FROM:<{{ sender }}>", {})
    assert str(info.value) == "undefined variable: 'sender' is undefined"
    with pytest.raises(TemplateError) as info:
        render("{{ caps.AUTH }}", {"caps": {}})
    assert str(info.value) == "undefined variable: 'dict object' has no attribute 'AUTH'"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ (1).__class__.__base__ }}",
        "{{ caps.__class__ }}",
    ],
)
def test_the_sandbox_refuses_python_internals(source):
    with pytest.raises(TemplateError) as info:
        render(source, {"caps": {}})
    assert "unsafe" in str(info.value)


def test_the_sandbox_bounds_ranges():
    with pytest.raises(TemplateError, match="Range too big"):
        render("{% for i in range(10**9) %}{% endfor %}", {})


def test_b64_filters():
    assert render("{{ 'alice' | b64 }}", {}) == base64.b64encode(b"alice").decode()
    assert render("{{ '\0alice\0s3cret' | b64 }}", {}) == "AGFsaWNlAHMzY3JldA=="
    assert render("{{ 'AGFsaWNlAHMzY3JldA==' | b64decode }}", {}) == "\0alice\0s3cret"
    assert render("{{ 'café' | b64 | b64decode }}", {}) == "café"


def test_render_errors_are_one_template_error():
    with pytest.raises(TemplateError, match=r"^template error: "):
        render("{{ 1 / 0 }}", {})
    with pytest.raises(TemplateError, match=r"^template error: "):
        render("{{ x }", {"x": 1})


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # Jinja finds unknown filters and tests only when compiling (TemplateAssertionError)
        ("{{ 'a' | upperr }}", "template error: no filter named 'upperr' (did you mean 'upper'?)"),
        ("{{ 1 is oddd }}", "template error: no test named 'oddd' (did you mean 'odd'?)"),
        ("{{ '%(a)s' % {} }}", "template error: no key 'a'"),
        ("{{ [1, 2][5] }}", "undefined variable: list object has no element 5"),
        ("{{ cycler().next() }}", "template error: at least one item has to be provided"),
        ("{{ 'abc' | truncate(1) }}", "template error: expected length >= 3, got 1"),
        ("{{ 'a' * 10**10 }}", "template error: '*' would make a value longer than "
                               "33,554,432 characters (the limit)"),
    ],
)  # fmt: skip
def test_python_errors_inside_templates_are_one_template_error(source, message):
    with pytest.raises(TemplateError) as info:
        render(source, {})
    assert str(info.value) == message


def test_the_sandbox_is_immutable_and_bounded():
    # details and every limit: tests/test_template_limits.py
    with pytest.raises(TemplateError, match=r"'append' of 'list' object is unsafe"):
        render("{% set l = [1] %}{{ l.append(2) }}", {})
    with pytest.raises(TemplateError, match=r"^undefined variable: 'lipsum' is undefined$"):
        render("{{ lipsum(10**9) }}", {})
    with pytest.raises(TemplateError, match=r"^expression error: '\*\*' would make a number"):
        evaluate("9 ** (9 ** 9) > 1", {})


def test_evaluate_when_expressions():
    caps = {"STARTTLS": "", "AUTH": "PLAIN LOGIN"}
    assert evaluate("'STARTTLS' in caps", {"caps": caps}) is True
    assert evaluate("'PLAIN' in caps.AUTH", {"caps": caps}) is True
    assert evaluate("'CRAM-MD5' in caps.AUTH", {"caps": caps}) is False
    assert evaluate("env.SMTP_PASSWORD is defined", {"env": {}}) is False
    with pytest.raises(TemplateError, match=r"^undefined variable: 'nothing' is undefined"):
        evaluate("nothing == 1", {})
    with pytest.raises(TemplateError, match=r"^expression error: "):
        evaluate("1 +", {})


def test_static_helpers():
    assert is_template("{{ a }}") and is_template("{% if a %}{% endif %}") and is_template("{# #}")
    assert not is_template("QUIT") and not is_template("{ not a template }")
    assert syntax_error("{{ a }}") is None
    assert syntax_error("line one\n{{ a") == (2, "template error: unexpected end of template, "
                                                 "expected 'end of print statement'.")  # fmt: skip
    assert names_used("{{ a }} {{ b.c }} {% for i in items %}{{ i }}{% endfor %}") == {
        "a",
        "b",
        "items",
    }
    assert names_used("'X' in caps and y", expression=True) == {"caps", "y"}
    assert names_used("{{ broken") == set()
    assert {"caps", "target", "env", "index", "reply"} <= BUILTIN_NAMES


def test_secret_tracker_redacts_values_and_their_base64_forms():
    tracker = SecretTracker(["s3cret"])
    assert tracker
    encoded = base64.b64encode(b"s3cret").decode()
    text = f"AUTH PLAIN {encoded}\npassword s3cret, again s3cret"
    assert tracker.redact(text) == f"AUTH PLAIN {REDACTED}\npassword {REDACTED}, again {REDACTED}"
    assert "s3cret" not in tracker.redact(text) and encoded not in tracker.redact(text)
    assert tracker.redact("nothing secret here") == "nothing secret here"
    assert not SecretTracker() and SecretTracker().redact("s3cret") == "s3cret"


def test_secret_tracker_ignores_empty_values_and_blanks_longer_secrets_whole():
    tracker = SecretTracker(["", None, "abc"])  # type: ignore[list-item]
    tracker.add("abcdef")
    assert tracker.redact("xx abcdef yy abc") == f"xx {REDACTED} yy {REDACTED}"


def test_secret_tracker_auth_payloads():
    tracker = SecretTracker(["s3cret"])
    payload = base64.b64encode(b"\0alice\0s3cret").decode()
    tracker.add_payload(payload)
    assert tracker.redact(f"C: AUTH PLAIN {payload}") == f"C: AUTH PLAIN {REDACTED}"
    assert tracker.redact("server said s3cret") == f"server said {REDACTED}"
    # the user name inside the payload is no secret: it stays readable everywhere
    assert tracker.redact("AUTH PLAIN as alice") == "AUTH PLAIN as alice"
    tracker.add_payload("not base64 at all!")  # kept as it is, no crash
    assert tracker.redact("not base64 at all!") == REDACTED


def test_env_view_marks_values_read_as_secret_unless_public():
    tracker = SecretTracker()
    source = {"SMTP_PASSWORD": "hunter2", "SMTP_USER": "alice", "UNUSED": "quiet"}
    env = EnvView(tracker, public=["SMTP_USER"], source=source)
    context = {"env": env}
    assert render("{{ env.SMTP_USER }}:{{ env.SMTP_PASSWORD }}", context) == "alice:hunter2"
    assert tracker.redact("alice hunter2") == f"alice {REDACTED}"
    assert tracker.redact(base64.b64encode(b"hunter2").decode()) == REDACTED
    # a value never read is not a secret; asking whether a name exists reads nothing
    assert evaluate("'UNUSED' in env", context) is True
    assert tracker.redact("quiet") == "quiet"
    assert evaluate("env.MISSING is defined", context) is False
    assert len(env) == 3 and sorted(env) == sorted(source)


def test_env_view_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("SMTPSCRIPT_TEST_SECRET", "from-the-environment")
    tracker = SecretTracker()
    env = EnvView(tracker)
    assert env["SMTPSCRIPT_TEST_SECRET"] == "from-the-environment"
    assert tracker.redact("from-the-environment") == REDACTED


def test_carriage_returns_in_a_template_survive_rendering():
    # Jinja's lexer would turn CRLF and CR into LF: raw: steps must send what was written
    source = "MAIL FROM:<{{ who }}>\r\nbare LF\nbare CR\rend\r\n"
    assert render(source, {"who": "a@b"}) == "MAIL FROM:<a@b>\r\nbare LF\nbare CR\rend\r\n"
