"""The catalogue of invalid scenarios: every mistake gives exact, plain error lines.

Each case is a file ``bad.yaml`` (plus, for includes, the files it includes),
validated with ``smtpscript validate bad.yaml`` in-process from a temporary
working directory, so that the file names shown are stable. Each case asserts
the full error lines (file:line:column: JSON path: message) in order, the
summary line, and exit status 2.
"""

from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from smtpscript import schemafile, semantics, validation
from smtpscript.actions import ACTION_NAMES
from smtpscript.cli import run_cli
from smtpscript.loading import load_paths
from smtpscript.yamlsource import parse_document

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
HINT = '(use e.g. 250, "2xx", "25x", "any" or "closed")'
STATUS_HINT = '(use e.g. "5.7.1" or "5.7.x")'
UNDEFINED = "define it under vars:, in the library's smtpscript.yaml, or pass --var"
ACTIONS = ", ".join(ACTION_NAMES)  # every registered action, in their documented order
TAG_HINT = "only plain YAML data (text, numbers, true/false, lists, mappings) is allowed"


def laughs() -> str:
    """A "billion laughs" file: 10 lines that expand to 10^9 strings."""
    lines = ["smtpscript: 1", "title: t", "a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join([*lines, "steps:", "  - send: QUIT", ""])


@dataclass
class Case:
    yaml: str | bytes
    errors: list[str]
    files: dict[str, str] = field(default_factory=dict)  # other files (fragments)

    def text(self) -> str | bytes:
        if isinstance(self.yaml, bytes):
            return self.yaml
        return textwrap.dedent(self.yaml).lstrip("\n")


FRAGMENT = """\
smtpscript: 1
fragment: true
vars:
  helo: client.example.org
steps:
  - connect: {}
    expect: 220
  - ehlo: "{{ helo }}"
    expect: 2x
"""

CATALOGUE: dict[str, Case] = {
    # --- YAML itself ------------------------------------------------------------
    "syntax_unclosed_quote": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: "QUIT
            expect: 221
        """,
        ["bad.yaml:4:11: YAML syntax error: this quoted string is never closed"],
    ),
    "syntax_colon_in_value": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: MAIL FROM: <probe@example.org>
        """,
        [
            "bad.yaml:4:20: YAML syntax error: ':' is not allowed here: quote a value that "
            "contains ': ' (e.g. send: \"MAIL FROM: <a@example.org>\") or check the indentation"
        ],
    ),
    "syntax_missing_colon": Case(
        """
        smtpscript: 1
        title t
        steps:
          - send: QUIT
        """,
        ["bad.yaml:2:1: YAML syntax error: expected 'key: value' here (missing ':'?)"],
    ),
    "syntax_unclosed_list": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: QUIT
            expect: [221, 250
        """,
        [
            "bad.yaml:5:13: YAML syntax error: this '[' is never closed: expected ',' or ']' "
            "but found the end of the file"
        ],
    ),
    "syntax_two_documents": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: QUIT
        ---
        title: u
        """,
        ["bad.yaml:5:1: YAML syntax error: a second document ('---'): a file holds one scenario"],
    ),
    "syntax_undefined_alias": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: QUIT
            expect: *code
        """,
        ["bad.yaml:5:13: YAML syntax error: alias '*code' refers to no anchor '&code' before it"],
    ),
    "tab_indentation": Case(
        b"smtpscript: 1\ntitle: t\nsteps:\n  - send: QUIT\n\t  expect: 221\n",
        ["bad.yaml:5:1: tab character in indentation: YAML indents with spaces only"],
    ),
    "duplicate_key": Case(
        """
        smtpscript: 1
        title: first
        steps:
          - send: QUIT
        title: second
        """,
        ["bad.yaml:5:1: title: duplicate key 'title' (first defined on line 2)"],
    ),
    "duplicate_key_in_step": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: "RCPT TO:<victim@example.net>"
            expect: 250
            expect: 550
        """,
        ["bad.yaml:6:5: steps[0].expect: duplicate key 'expect' (first defined on line 5)"],
    ),
    "not_utf8": Case(
        b"smtpscript: 1\ntitle: Caf\xe9 relay check\nsteps:\n  - send: QUIT\n",
        ["bad.yaml:2:11: file is not UTF-8 text (byte 0xe9)"],
    ),
    "empty_file": Case(
        "",
        ["bad.yaml:1:1: file is empty: expected a mapping with smtpscript:, title:, steps:"],
    ),
    "only_comments": Case(
        "# nothing here yet\n",
        ["bad.yaml:1:1: file is empty: expected a mapping with smtpscript:, title:, steps:"],
    ),
    "top_level_list": Case(
        """
        - send: QUIT
        - send: NOOP
        """,
        [
            "bad.yaml:1:1: the top level must be a mapping (smtpscript:, title:, steps:, ...), "
            "not a list"
        ],
    ),
    "top_level_text": Case(
        "just some text\n",
        [
            "bad.yaml:1:1: the top level must be a mapping (smtpscript:, title:, steps:, ...), "
            "not a string"
        ],
    ),
    "billion_laughs": Case(
        laughs(),
        [
            "bad.yaml:8:5: aliases expand this document to more than 100000 values "
            "(a 'billion laughs' file?): refused"
        ],
    ),
    "too_deep": Case(
        "smtpscript: 1\ntitle: t\nvars:\n  x: " + "[" * 60 + "]" * 60 + "\nsteps: [{send: QUIT}]\n",
        ["bad.yaml:4:54: nested more than 50 levels deep"],
    ),
    "python_object_tag": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: !!python/object/apply:os.system ["echo owned"]
        """,
        [f"bad.yaml:4:11: unsupported YAML tag '!!python/object/apply:os.system': {TAG_HINT}"],
    ),
    "binary_tag": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - raw: !!binary UVVJVA0K
        """,
        [f"bad.yaml:4:10: unsupported YAML tag '!!binary': {TAG_HINT}"],
    ),
    # --- top level ----------------------------------------------------------------
    "missing_version": Case(
        """
        title: t
        steps:
          - send: QUIT
        """,
        [
            "bad.yaml:1:1: missing required key 'smtpscript' "
            "(the format version: add 'smtpscript: 1')"
        ],
    ),
    "unknown_version": Case(
        """
        smtpscript: 2
        title: t
        steps:
          - send: QUIT
        """,
        [
            "bad.yaml:1:13: smtpscript: unsupported format version 2: "
            "this smtpscript reads version 1"
        ],
    ),
    "version_as_text": Case(
        """
        smtpscript: "1"
        title: t
        steps:
          - send: QUIT
        """,
        ["bad.yaml:1:13: smtpscript: the format version must be the number 1, not the text '1'"],
    ),
    "missing_title": Case(
        """
        smtpscript: 1
        steps:
          - send: QUIT
        """,
        ["bad.yaml:1:1: missing required key 'title'"],
    ),
    "empty_title": Case(
        """
        smtpscript: 1
        title: ""
        steps:
          - send: QUIT
        """,
        ["bad.yaml:2:8: title: must not be empty"],
    ),
    "missing_steps": Case(
        """
        smtpscript: 1
        title: t
        """,
        ["bad.yaml:1:1: missing required key 'steps'"],
    ),
    "empty_steps": Case(
        """
        smtpscript: 1
        title: t
        steps: []
        """,
        ["bad.yaml:3:8: steps: a scenario needs at least one step"],
    ),
    "steps_not_a_list": Case(
        """
        smtpscript: 1
        title: t
        steps:
          send: QUIT
        """,
        ["bad.yaml:4:3: steps: must be a list, not a mapping"],
    ),
    "unknown_key": Case(
        """
        smtpscript: 1
        title: t
        author: me
        steps:
          - send: QUIT
        """,
        ["bad.yaml:3:1: author: unknown key 'author'"],
    ),
    "misspelt_required_key": Case(
        """
        smtpscript: 1
        tittle: t
        steps:
          - send: QUIT
        """,
        [
            "bad.yaml:1:1: missing required key 'title'",
            "bad.yaml:2:1: tittle: unknown key 'tittle' (did you mean 'title'?)",
        ],
    ),
    "wrong_type_tags": Case(
        """
        smtpscript: 1
        title: t
        tags: relay
        steps:
          - send: QUIT
        """,
        ["bad.yaml:3:7: tags: must be a list, not a string"],
    ),
    "severity_typo": Case(
        """
        smtpscript: 1
        title: t
        severity: hihg
        steps:
          - send: QUIT
        """,
        [
            "bad.yaml:3:11: severity: 'hihg' is not one of: info, low, medium, high, critical "
            "(did you mean 'high'?)"
        ],
    ),
    "negative_timeout": Case(
        """
        smtpscript: 1
        title: t
        target:
          timeout: -5
        steps:
          - send: QUIT
        """,
        ["bad.yaml:4:12: target.timeout: must be greater than 0, not -5"],
    ),
    "bad_tls_mode": Case(
        """
        smtpscript: 1
        title: t
        target:
          tls: starttls
        steps:
          - send: QUIT
        """,
        ["bad.yaml:4:8: target.tls: 'starttls' is not one of: none, implicit"],
    ),
    "bad_vars_name": Case(
        """
        smtpscript: 1
        title: t
        vars:
          mail-from: probe@example.org
        steps:
          - send: QUIT
        """,
        [
            "bad.yaml:4:3: vars.mail-from: 'mail-from' is not a valid variable name: use letters, "
            "digits and _, not starting with a digit (did you mean 'mail_from'?)"
        ],
    ),
    "bad_when_expression": Case(
        """
        smtpscript: 1
        title: t
        when: "env.SMTP_PASSWORD is"
        steps:
          - send: QUIT
        """,
        ["bad.yaml:3:7: when: expression error: unexpected end of expression, expected 'name'"],
    ),
    "fragment_with_title": Case(
        """
        smtpscript: 1
        fragment: true
        title: t
        steps:
          - send: QUIT
        """,
        [
            "bad.yaml:3:1: title: a fragment takes only smtpscript, fragment, description, vars "
            "and steps, not 'title'"
        ],
    ),
    # --- steps: actions and keys ----------------------------------------------------
    "two_actions": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: QUIT
            ehlo: client.example.org
        """,
        [
            "bad.yaml:4:5: steps[0]: a step takes exactly one action, found 'send' and 'ehlo': "
            "split it into separate steps"
        ],
    ),
    "no_action": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - expect: 220
        """,
        [f"bad.yaml:4:5: steps[0]: a step needs one action ({ACTIONS}); found none"],
    ),
    "misspelt_action": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - sned: QUIT
        """,
        ["bad.yaml:4:5: steps[0].sned: unknown key 'sned' (did you mean 'send'?)"],
    ),
    "misspelt_step_key": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: QUIT
            exepct: 221
        """,
        ["bad.yaml:5:5: steps[0].exepct: unknown key 'exepct' (did you mean 'expect'?)"],
    ),
    "step_not_a_mapping": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - QUIT
        """,
        ["bad.yaml:4:5: steps[0]: a step must be a mapping such as 'send: QUIT', not a string"],
    ),
    "wrong_type_timeout": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: QUIT
            timeout: soon
        """,
        ["bad.yaml:5:14: steps[0].timeout: must be a number, not a string"],
    ),
    "zero_step_timeout": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: QUIT
            timeout: 0
        """,
        ["bad.yaml:5:14: steps[0].timeout: must be greater than 0, not 0"],
    ),
    "negative_sleep": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - sleep: -1
        """,
        ["bad.yaml:4:12: steps[0].sleep: must be at least 0, not -1"],
    ),
    "connect_two_problems": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - connect:
              port: 99999
              verify: maybe
        """,
        [
            "bad.yaml:5:13: steps[0].connect.port: must be at most 65535, not 99999",
            "bad.yaml:6:15: steps[0].connect.verify: must be true or false, not a string",
        ],
    ),
    "pipeline_non_send": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - pipeline:
              - ehlo: client.example.org
              - send: "MAIL FROM:<probe@example.org>"
        """,
        [
            "bad.yaml:5:9: steps[0].pipeline[0].ehlo: a pipeline holds only send steps: 'ehlo' "
            "cannot be pipelined"
        ],
    ),
    "with_without_include": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - ehlo: client.example.org
            with:
              helo: other.example.org
        """,
        ["bad.yaml:5:5: steps[0].with: 'with' only goes with an include step"],
    ),
    "tls_on_send": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: NOOP
            tls:
              min_version: TLSv1.2
        """,
        ["bad.yaml:5:5: steps[0].tls: a 'tls' expectation needs a connect or starttls step"],
    ),
    "expect_on_sleep": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - sleep: 2
            expect: 250
        """,
        [
            "bad.yaml:5:5: steps[0].expect: a sleep step reads no reply of its own: 'expect' "
            "does not apply here"
        ],
    ),
    "auth_without_password": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - auth:
              mechanism: PLAIN
              username: alice
        """,
        [
            "bad.yaml:5:7: steps[0].auth: AUTH PLAIN needs 'password' "
            '(e.g. password: "{{ env.SMTP_PASSWORD }}")'
        ],
    ),
    "auth_xoauth2_without_token": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - auth:
              mechanism: XOAUTH2
              username: alice
              password: secret
        """,
        [
            "bad.yaml:5:7: steps[0].auth: AUTH XOAUTH2 needs 'token' "
            '(e.g. token: "{{ env.SMTP_TOKEN }}")'
        ],
    ),
    "auth_mechanism_case": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - auth:
              mechanism: plain
              username: alice
              password: secret
        """,
        [
            "bad.yaml:5:18: steps[0].auth.mechanism: 'plain' is not one of: PLAIN, LOGIN, "
            "CRAM-MD5, XOAUTH2 (did you mean 'PLAIN'?)"
        ],
    ),
    "repeat_not_a_number": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: "RCPT TO:<user@example.org>"
            repeat: five
        """,
        [
            "bad.yaml:5:13: steps[0].repeat: 'five' is not a number: use a whole number, or a "
            "template giving one ('{{ count }}')"
        ],
    ),
    # --- reply patterns, regexes ---------------------------------------------------
    "bad_code_pattern": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: QUIT
            expect: 2x
        """,
        [f"bad.yaml:5:13: steps[0].expect: '2x' is not a reply-code pattern {HINT}"],
    ),
    "bad_code_in_list": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: "RCPT TO:<victim@example.net>"
            expect: [550, 6xx]
        """,
        [f"bad.yaml:5:19: steps[0].expect[1]: '6xx' is not a reply-code pattern {HINT}"],
    ),
    "code_out_of_range": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: QUIT
            expect: 600
        """,
        [
            "bad.yaml:5:13: steps[0].expect: 600 is not a reply code: codes run from 200 to 599 "
            + HINT
        ],
    ),
    "code_boolean": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: QUIT
            expect: yes
        """,
        [f"bad.yaml:5:13: steps[0].expect: true is not a reply-code pattern {HINT}"],
    ),
    "expect_closed_with_match": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: QUIT
            expect: closed
            match: "(?i)bye"
        """,
        ["bad.yaml:6:5: steps[0].match: 'match' needs a reply, but 'expect: closed' expects none"],
    ),
    "bad_enhanced_status": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: "RCPT TO:<victim@example.net>"
            expect: 550
            status: 5.7
        """,
        [f"bad.yaml:6:13: steps[0].status: 5.7 is not an enhanced status pattern {STATUS_HINT}"],
    ),
    "bad_enhanced_status_class": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: "RCPT TO:<victim@example.net>"
            status: 6.1.1
        """,
        [
            "bad.yaml:5:13: steps[0].status: '6.1.1' is not an enhanced status pattern "
            + STATUS_HINT
        ],
    ),
    "bad_regex_match": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: "RCPT TO:<victim@example.net>"
            match: "(?i)relay (denied"
        """,
        [
            "bad.yaml:5:12: steps[0].match: bad regular expression '(?i)relay (denied': "
            "missing ), unterminated subpattern at position 10"
        ],
    ),
    "bad_regex_capture": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: DATA
            capture:
              queue_id: "queued as [A-Z"
        """,
        [
            "bad.yaml:6:17: steps[0].capture.queue_id: bad regular expression 'queued as [A-Z': "
            "unterminated character set at position 10"
        ],
    ),
    "bad_capture_name": Case(
        r"""
        smtpscript: 1
        title: t
        steps:
          - send: DATA
            capture:
              queue-id: "queued as (\\w+)"
        """,
        [
            "bad.yaml:6:7: steps[0].capture.queue-id: 'queue-id' is not a valid variable name: "
            "use letters, digits and _, not starting with a digit (did you mean 'queue_id'?)"
        ],
    ),
    # --- templates and variables -----------------------------------------------------
    "bad_template": Case(
        """
        smtpscript: 1
        title: t
        vars:
          sender: probe@example.org
        steps:
          - send: "MAIL FROM:<{{ sender }>"
        """,
        [
            "bad.yaml:6:11: steps[0].send: template error: unexpected '}': a placeholder is "
            "written {{ name }}"
        ],
    ),
    "bad_template_unclosed": Case(
        """
        smtpscript: 1
        title: t
        vars:
          sender: probe@example.org
        steps:
          - send: "MAIL FROM:<{{ sender >"
        """,
        ["bad.yaml:6:11: steps[0].send: template error: '{{' is never closed (add '}}')"],
    ),
    "bad_template_in_block": Case(
        """
        smtpscript: 1
        title: t
        vars:
          name: Alice
        steps:
          - data:
              body: |
                Hello {{ name }},

                {% if name %}this block is never closed
        """,
        [
            "bad.yaml:10:9: steps[0].data.body: template error: '{% if %}' is never closed "
            "(add '{% endif %}')"
        ],
    ),
    "bad_step_when": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - send: QUIT
            when: "'AUTH' in caps and and"
        """,
        ["bad.yaml:5:11: steps[0].when: expression error: 'and' needs a value on each side"],
    ),
    "undefined_variable": Case(
        """
        smtpscript: 1
        title: t
        vars:
          helo: client.example.org
        steps:
          - ehlo: "{{ hello }}"
          - send: "MAIL FROM:<{{ sender }}>"
        """,
        [
            "bad.yaml:6:11: steps[0].ehlo: undefined variable 'hello' (did you mean 'helo'?): "
            f"{UNDEFINED} hello=...",
            f"bad.yaml:7:11: steps[1].send: undefined variable 'sender': {UNDEFINED} sender=...",
        ],
    ),
    "used_before_capture": Case(
        r"""
        smtpscript: 1
        title: t
        steps:
          - send: "NOOP {{ queue_id }}"
          - send: DATA
            capture:
              queue_id: "queued as (\\w+)"
        """,
        [
            "bad.yaml:4:11: steps[0].send: variable 'queue_id' is used before it is captured "
            "(by steps[1].capture.queue_id): a capture is set only once its step has run"
        ],
    ),
    # --- includes ------------------------------------------------------------------
    "include_missing_file": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - include: fragments/greet.yaml
        """,
        ["bad.yaml:4:14: steps[0].include: included file not found: fragments/greet.yaml"],
    ),
    "include_cycle": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - include: loop.yaml
        """,
        [
            "loop.yaml:4:14: steps[0].include: include cycle: loop.yaml includes itself "
            "(directly or indirectly)"
        ],
        files={"loop.yaml": "smtpscript: 1\nfragment: true\nsteps:\n  - include: loop.yaml\n"},
    ),
    "include_not_a_fragment": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - include: other.yaml
        """,
        [
            "bad.yaml:4:14: steps[0].include: other.yaml is not a fragment "
            "(add 'fragment: true' to it)"
        ],
        files={"other.yaml": "smtpscript: 1\ntitle: other\nsteps:\n  - send: NOOP\n"},
    ),
    "error_inside_fragment": Case(
        """
        smtpscript: 1
        title: t
        steps:
          - include: fragments/greet.yaml
            with:
              helo: me.example.org
          - send: QUIT
        """,
        [f"fragments/greet.yaml:9:13: steps[1].expect: '2x' is not a reply-code pattern {HINT}"],
        files={"fragments/greet.yaml": FRAGMENT},
    ),
}


def _write(tmp_path: Path, case: Case) -> None:
    for name, text in {**case.files, "bad.yaml": case.text()}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")


def test_the_catalogue_is_big_enough():
    assert len(CATALOGUE) >= 30


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_invalid_scenario(name, tmp_path, monkeypatch, capsys):
    case = CATALOGUE[name]
    _write(tmp_path, case)
    monkeypatch.chdir(tmp_path)
    status = run_cli(["validate", "bad.yaml"])
    out, err = capsys.readouterr()
    *lines, summary = err.splitlines()
    assert lines == case.errors
    n = len(case.errors)
    files = len({line.split(":")[0] for line in case.errors})
    assert summary == (
        f"1 file: 0 valid scenarios; {n} problem{'s' if n > 1 else ''} "
        f"in {files} file{'s' if files > 1 else ''}"
    )
    assert status == 2
    assert out == ""


def test_billion_laughs_is_refused_fast(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs(), encoding="utf-8")
    start = time.perf_counter()
    result = load_paths([path])
    assert time.perf_counter() - start < 0.5
    assert [p.message for p in result.problems] == [
        "aliases expand this document to more than 100000 values (a 'billion laughs' file?): "
        "refused"
    ]


def test_defining_the_variables_with_var_makes_the_file_valid(tmp_path, monkeypatch, capsys):
    _write(tmp_path, CATALOGUE["undefined_variable"])
    monkeypatch.chdir(tmp_path)
    status = run_cli(["validate", "bad.yaml", "--var", "hello=me.example", "--var", "sender=a@b"])
    out, err = capsys.readouterr()
    assert (status, out, err) == (0, "1 file: 1 valid scenario: all valid\n", "")
    # one of the two is not enough
    assert run_cli(["validate", "bad.yaml", "--var", "hello=me.example"]) == 2
    assert "undefined variable 'sender'" in capsys.readouterr().err


VALID_CAPTURES = r"""
smtpscript: 1
title: captures and includes define variables for later steps
steps:
  - include: fragments/queue.yaml
  - send: "NOOP {{ greeting }}"
  - send: DATA
    capture:
      queue_id: "queued as (\\w+)"
  - send: "NOOP {{ queue_id }}"
  - pipeline:
      - send: "MAIL FROM:<a@example.org>"
        capture:
          mail_reply: "(.*)"
  - send: "NOOP {{ mail_reply }} {{ caps.SIZE }} {{ target.host }} {{ env.HOME }}"
    repeat: 2
    when: "index is defined and reply is defined"
"""

QUEUE_FRAGMENT = """\
smtpscript: 1
fragment: true
steps:
  - connect: {}
    capture:
      greeting: "^(\\\\S+)"
"""


def test_captured_variables_are_usable_in_later_steps(tmp_path, monkeypatch, capsys):
    (tmp_path / "fragments").mkdir()
    (tmp_path / "fragments" / "queue.yaml").write_text(QUEUE_FRAGMENT, encoding="utf-8")
    (tmp_path / "ok.yaml").write_text(VALID_CAPTURES, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert run_cli(["validate", "ok.yaml"]) == 0, capsys.readouterr().err


def test_names_after_an_unreadable_include_are_not_reported_as_undefined(tmp_path):
    (tmp_path / "s.yaml").write_text(
        "smtpscript: 1\ntitle: t\nsteps:\n  - include: missing.yaml\n  - send: 'NOOP {{ x }}'\n",
        encoding="utf-8",
    )
    result = load_paths([tmp_path / "s.yaml"])
    assert [p.message for p in result.problems] == ["included file not found: missing.yaml"]


THREE_MISTAKES = """\
smtpscript: 1
title: three mistakes, found by three different phases
steps:
  - send: "MAIL FROM:<{{ sender }}>"
    expect: 2x
  - send: QUIT
    expect: 221
    expect: 250
  - ehlo: client.example.org
    timout: 5
"""


def test_every_problem_of_a_file_is_reported_sorted_by_position(tmp_path, monkeypatch, capsys):
    (tmp_path / "three.yaml").write_text(THREE_MISTAKES, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert run_cli(["validate", "three.yaml"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"three.yaml:4:11: steps[0].send: undefined variable 'sender': {UNDEFINED} sender=...",
        f"three.yaml:5:13: steps[0].expect: '2x' is not a reply-code pattern {HINT}",
        "three.yaml:8:5: steps[1].expect: duplicate key 'expect' (first defined on line 7)",
        "three.yaml:10:5: steps[2].timout: unknown key 'timout' (did you mean 'timeout'?)",
        "1 file: 0 valid scenarios; 4 problems in 1 file",
    ]


def test_problems_of_several_files_are_all_reported(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "lib"
    (folder / "sub").mkdir(parents=True)
    for name in ("bad_code_pattern", "tab_indentation", "misspelt_required_key"):
        text = CATALOGUE[name].text()
        path = folder / "sub" / f"{name}.yaml" if name == "tab_indentation" else folder / name
        path = path.with_suffix(".yaml")
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
    (folder / "good.yml").write_text(
        "smtpscript: 1\ntitle: fine\nsteps:\n  - send: NOOP\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    assert run_cli(["validate", "lib"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"lib/bad_code_pattern.yaml:5:13: steps[0].expect: '2x' is not a reply-code pattern {HINT}",
        "lib/misspelt_required_key.yaml:1:1: missing required key 'title'",
        "lib/misspelt_required_key.yaml:2:1: tittle: unknown key 'tittle' (did you mean 'title'?)",
        "lib/sub/tab_indentation.yaml:5:1: tab character in indentation: YAML indents with "
        "spaces only",
        "4 files: 1 valid scenario; 4 problems in 3 files",
    ]


def test_a_broken_fragment_included_twice_is_reported_once(tmp_path, monkeypatch, capsys):
    (tmp_path / "fragments").mkdir()
    (tmp_path / "fragments" / "greet.yaml").write_text(FRAGMENT, encoding="utf-8")
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(
            "smtpscript: 1\ntitle: t\nsteps:\n  - include: fragments/greet.yaml\n",
            encoding="utf-8",
        )
    monkeypatch.chdir(tmp_path)
    assert run_cli(["validate", "."]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"fragments/greet.yaml:9:13: steps[1].expect: '2x' is not a reply-code pattern {HINT}",
        "3 files: 0 valid scenarios; 1 problem in 1 file",
    ]


# --- the schema phase's fast path --------------------------------------------------


def _documents() -> list[object]:
    """Data of every catalogue case that parses, plus valid scenarios: both verdicts."""
    out = []
    for case in CATALOGUE.values():
        raw = case.text()
        try:
            doc = parse_document(raw if isinstance(raw, bytes) else raw.encode(), "x.yaml")
        except Exception:
            continue
        out.append(doc.data)
    for path in sorted(
        Path(__file__).resolve().parent.parent.joinpath("scenarios").rglob("*.yaml")
    ):
        out.append(parse_document(path.read_bytes(), path.name).data)
    return out


def test_the_compiled_schema_check_agrees_with_jsonschema():
    fast = schemafile.fast_check("scenario")
    assert fast is not None, "the fast path must understand every keyword the schema uses"
    slow = Draft202012Validator(validation.load_schema("scenario"))
    documents = _documents()
    # and some values jsonschema treats specially: true is not 1, 1.0 is an integer
    documents += [
        {"smtpscript": True, "title": "t", "steps": [{"send": "x"}]},
        {"smtpscript": 1.0, "title": "t", "steps": [{"send": "x"}]},
        {"smtpscript": 1, "title": "t", "steps": [{"send": "x", "repeat": 2.0}]},
        {"smtpscript": 1, "title": "t", "steps": [{"send": "x", "repeat": True}]},
        {"smtpscript": 1, "title": "t", "fragment": 1, "steps": [{"send": "x"}]},
        {"smtpscript": 1, "title": "t", "steps": [{"connect": None}, {"read": {}}]},
        {"smtpscript": 1, "title": "t", "steps": [{"data": {"headers": {"X": 1.5}}}]},
        {"smtpscript": 1, "title": "t", "steps": [{"data": {"headers": {"X": [1]}}}]},
        {"smtpscript": 1, "title": "t", "steps": [{"send": "x", "expect": [250, "5xx"]}]},
        {"smtpscript": 1, "title": "t", "steps": [{"send": "x", "status": "5.7.X"}]},
    ]
    verdicts = [(fast(doc), slow.is_valid(doc)) for doc in documents]
    disagree = [doc for doc, (a, b) in zip(documents, verdicts, strict=True) if a != b]
    assert not disagree
    assert {v for v, _ in verdicts} == {True, False}


@pytest.mark.parametrize(
    "source",
    [
        "{{ helo }}",
        "MAIL FROM:<{{ sender }}> SIZE={{ caps.SIZE }}",
        "{{a}}{{ b.c.d }}",
        "{{\n  multi\n}}",
        "{{ true }}",
        "{{ none }}",
        "{{ and }}",
        "{{ not }}",
        "{{{ helo }}}",
        "{ {{ helo }} }",
        "{{- helo -}}",
        "{{ helo }",
        "{{ a | b64 }}",
        "{{ a ~ b }}",
        "{% for x in items %}{{ x }}{% endfor %}",
        "{% if a %}{{ b }}{% endif %}",
        "{# comment #}{{ c }}",
        "{{ 'x' }}",
        "{{ a[0] }}",
    ],
)
def test_the_template_fast_path_agrees_with_jinja(source):
    from smtpscript import templating

    error, names = semantics._analyse_template(source)
    slow = templating.syntax_error(source)
    assert (error is None) == (slow is None)
    if error is None:
        assert names == templating.names_used(source)
