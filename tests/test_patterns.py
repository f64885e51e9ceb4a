"""The reply-code and enhanced-status pattern language."""

from __future__ import annotations

import pytest

from smtpscript.patterns import (
    DEFAULT_REPLY,
    CodePattern,
    PatternError,
    StatusPattern,
    parse_code_alternative,
    parse_code_pattern,
    parse_status_pattern,
)

HINT = '(use e.g. 250, "2xx", "25x", "any" or "closed")'


@pytest.mark.parametrize(
    ("value", "alternatives"),
    [
        (250, ("250",)),
        ("250", ("250",)),
        ("2xx", ("2xx",)),
        ("2XX", ("2xx",)),
        ("25x", ("25x",)),
        ("2yz", ("2yz",)),
        (" 5xx ", ("5xx",)),
        ("any", ("any",)),
        ("ANY", ("any",)),
        ("closed", ("closed",)),
        ([550, 554], ("550", "554")),
        ([250, "closed"], ("250", "closed")),
    ],
)
def test_valid_code_patterns(value, alternatives):
    assert parse_code_pattern(value) == CodePattern(alternatives)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2x", f"'2x' is not a reply-code pattern {HINT}"),
        ("2xxx", f"'2xxx' is not a reply-code pattern {HINT}"),
        ("6xx", f"'6xx' is not a reply-code pattern {HINT}"),
        ("1xx", f"'1xx' is not a reply-code pattern {HINT}"),
        ("25a", f"'25a' is not a reply-code pattern {HINT}"),
        ("", f"'' is not a reply-code pattern {HINT}"),
        (600, f"600 is not a reply code: codes run from 200 to 599 {HINT}"),
        (199, f"199 is not a reply code: codes run from 200 to 599 {HINT}"),
        (True, f"true is not a reply-code pattern {HINT}"),
        (None, f"null (empty) is not a reply-code pattern {HINT}"),
        (2.5, f"2.5 is not a reply-code pattern {HINT}"),
        ({"a": 1}, f"{{a: 1}} is not a reply-code pattern {HINT}"),
        ([], f"an empty list matches no reply {HINT}"),
        ([250, [251]], f"[251] is not a reply-code pattern {HINT}"),
    ],
)
def test_invalid_code_patterns(value, message):
    with pytest.raises(PatternError) as info:
        parse_code_pattern(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("pattern", "code", "expected"),
    [
        (250, 250, True),
        (250, 251, False),
        ("2xx", 200, True),
        ("2xx", 299, True),
        ("2xx", 300, False),
        ("25x", 252, True),
        ("25x", 260, False),
        ("2yz", 221, True),
        ("5x1", 551, True),
        ("5x1", 552, False),
        ([550, 554], 554, True),
        ([550, 554], 553, False),
        ("any", 421, True),
        ("closed", 221, False),
    ],
)
def test_code_matching(pattern, code, expected):
    assert parse_code_pattern(pattern).matches(code) is expected


def test_pattern_properties_and_text():
    closed = parse_code_pattern(["closed", 421])
    assert closed.expects_closed and not closed.accepts_any_reply
    assert parse_code_pattern("any").accepts_any_reply
    assert str(parse_code_pattern([550, "5xx"])) == "550 or 5xx"
    assert str(DEFAULT_REPLY) == "2xx or 3xx"
    assert DEFAULT_REPLY.matches(354) and DEFAULT_REPLY.matches(250)
    assert not DEFAULT_REPLY.matches(421)
    assert parse_code_alternative(221) == "221"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("5.7.1", "5.7.1"),
        ("5.7.x", "5.7.x"),
        ("5.X.X", "5.x.x"),
        ("x.1.1", "x.1.1"),
        ("2.1.005", "2.1.5"),
        (" 4.4.2 ", "4.4.2"),
        ("5.123.999", "5.123.999"),
    ],
)
def test_valid_status_patterns(value, text):
    assert parse_status_pattern(value) == StatusPattern(text)
    assert str(parse_status_pattern(value)) == text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("5.7", "'5.7'"),
        (5.7, "5.7"),
        ("6.1.1", "'6.1.1'"),
        ("3.1.1", "'3.1.1'"),
        ("5.7.1.2", "'5.7.1.2'"),
        ("5.1000.1", "'5.1000.1'"),
        ("5.y.1", "'5.y.1'"),
        (571, "571"),
        (None, "null (empty)"),
        (False, "false"),
    ],
)
def test_invalid_status_patterns(value, shown):
    with pytest.raises(PatternError) as info:
        parse_status_pattern(value)
    assert str(info.value) == (
        f'{shown} is not an enhanced status pattern (use e.g. "5.7.1" or "5.7.x")'
    )


@pytest.mark.parametrize(
    ("pattern", "status", "expected"),
    [
        ("5.7.1", "5.7.1", True),
        ("5.7.1", "5.7.2", False),
        ("5.7.x", "5.7.26", True),
        ("5.x.x", "5.1.1", True),
        ("5.x.x", "4.1.1", False),
        ("x.1.1", "4.1.1", True),
        ("5.7.1", None, False),
        ("5.7.1", "5.7", False),
        ("2.1.5", "2.1.05", True),
        ("2.1.5", "2.1.x", False),
    ],
)
def test_status_matching(pattern, status, expected):
    assert parse_status_pattern(pattern).matches(status) is expected
