"""Reading YAML with marks: positions, refusals PyYAML would not make, and parity
between libyaml's parser and the pure-Python one."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from smtpscript import yamlsource
from smtpscript.errors import ScenarioError
from smtpscript.yamlsource import format_path, parse_document, read_document

REPO = Path(__file__).resolve().parent.parent

DOC = b"""\
smtpscript: 1
title: marks
vars:
  helo: client.example.org
steps:
  - send: "MAIL FROM:<a@example.org>"
    expect: [250, "2xx"]
  - data:
      body: |
        line one
        line two
"""


def parse(text: str | bytes, name: str = "t.yaml") -> yamlsource.Document:
    return parse_document(text.encode() if isinstance(text, str) else text, name)


def problems(text: str | bytes) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


def test_values_and_keys_keep_their_line_and_column():
    doc = parse(DOC)
    assert doc.data["steps"][0]["expect"] == [250, "2xx"]
    assert doc.value_marks[()] == (1, 1)
    assert doc.value_marks[("vars", "helo")] == (4, 9)
    assert doc.key_marks[("vars", "helo")] == (4, 3)
    assert doc.value_marks[("steps", 0)] == (6, 5)
    assert doc.key_marks[("steps", 0, "expect")] == (7, 5)
    assert doc.value_marks[("steps", 0, "expect", 1)] == (7, 19)
    # a literal block: the mark of its value is the '|', its text starts a line below
    assert doc.value_marks[("steps", 1, "data", "body")] == (9, 13)
    assert doc.block_marks[("steps", 1, "data", "body")] == (10, 9)


def test_mark_falls_back_to_the_nearest_ancestor():
    doc = parse(DOC)
    assert doc.mark(("steps", 0, "match")) == (6, 5)
    assert doc.mark(("steps", 0, "expect"), key=True) == (7, 5)
    assert doc.mark(("nothing", "here")) == (1, 1)
    problem = doc.problem(("steps", 0, "expect", 1), "message")
    assert str(problem) == "t.yaml:7:19: steps[0].expect[1]: message"


def test_format_path():
    assert format_path(()) == ""
    assert format_path(("steps", 3, "expect")) == "steps[3].expect"
    assert format_path(("steps", 0, "pipeline", 1, "capture", "id")) == (
        "steps[0].pipeline[1].capture.id"
    )


def _all_scenario_files() -> list[Path]:
    return sorted((REPO / "scenarios").rglob("*.yaml"))


@pytest.mark.parametrize("path", _all_scenario_files(), ids=lambda p: p.name)
def test_data_is_what_pyyaml_reads(path):
    assert parse(path.read_bytes()).data == yaml.safe_load(path.read_bytes())


def test_libyaml_is_used_when_pyyaml_has_it():
    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML built without libyaml")
    assert yamlsource._FAST_LOADER is not None
    node = yaml.compose("a: 1", Loader=yamlsource._FAST_LOADER)
    assert node.value[0][0].value == "a"


MIXED = """\
smtpscript: 1
title: "parity: quoted, plain, block, flow, anchors"
defaults: &defaults
  expect: 250
  timeout: 2.5
values: [yes, No, ~, null, 0x1f, 017, 1_000, 1.5e+3, -3, "7", '8', !!str 9, 2024-01-02]
folded: >
  one
  two
keys: {on: 1, 1: one, null: x, "quoted": y}
steps:
  - send: QUIT
    <<: *defaults
  - <<: [{send: A, expect: 1}, {send: B, name: b}]
    expect: 221
"""


def test_libyaml_and_pure_python_parsers_give_the_same_data_and_marks(monkeypatch):
    fast = parse(MIXED)
    monkeypatch.setattr(yamlsource, "_FAST_LOADER", None)
    slow = parse(MIXED)
    assert fast.data == slow.data
    assert fast.value_marks == slow.value_marks
    assert fast.key_marks == slow.key_marks


def test_keys_are_text_values_are_typed_and_dates_stay_text():
    data = parse(MIXED).data
    assert data["values"] == [
        True, False, None, None, 31, 15, 1000, 1500.0, -3, "7", "8", "9", "2024-01-02",
    ]  # fmt: skip
    assert data["keys"] == {"on": 1, "1": "one", "null": "x", "quoted": "y"}
    assert data["folded"] == "one two\n"


def test_merge_keys_explicit_keys_win_and_keep_their_marks():
    doc = parse(MIXED)
    first, second = doc.data["steps"]
    assert first == {"send": "QUIT", "expect": 250, "timeout": 2.5}
    # earlier mappings in a merge list win over later ones; explicit keys over both
    assert second == {"send": "A", "expect": 221, "name": "b"}
    assert doc.key_marks[("steps", 1, "expect")] == (15, 5)


def test_anchors_and_aliases_within_bounds_are_expanded():
    lines = ["base: &b [" + ", ".join(["x"] * 10) + "]"]
    lines += [f"l{i}: &l{i} [*{'b' if i == 0 else f'l{i - 1}'}, *b]" for i in range(8)]
    doc = parse("\n".join(lines))
    assert len(doc.data["l7"]) == 2
    assert doc.data["l0"] == [["x"] * 10, ["x"] * 10]


def test_billion_laughs_is_measured_not_expanded():
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 30)]
    start = time.perf_counter()
    found = problems("\n".join(lines))
    assert time.perf_counter() - start < 0.5
    assert found == [
        "t.yaml:6:5: aliases expand this document to more than 100000 values "
        "(a 'billion laughs' file?): refused"
    ]


def test_an_alias_inside_its_own_anchor_is_refused():
    assert problems("a: &x [1, *x]\n") == ["t.yaml:1:4: nested more than 50 levels deep"]


def test_nesting_is_bounded_with_and_without_aliases():
    assert parse("a: " + "[" * 45 + "]" * 45).data["a"] is not None
    # where it is reported depends on the libyaml build (newer ones stop at depth 1000
    # themselves); what matters is one clear line, not a RecursionError
    (deep,) = problems("a: " + "[" * 3000 + "]" * 3000)
    assert deep.startswith("t.yaml:1:") and deep.endswith(": nested more than 50 levels deep")
    chain = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [[[[[*a{i - 1}]]]]]" for i in range(1, 30)]
    assert problems("\n".join(chain)) == ["t.yaml:2:13: nested more than 50 levels deep"]


def test_every_duplicate_key_is_recorded_and_the_first_value_kept():
    doc = parse("a: 1\nb: 2\na: 3\nc:\n  x: 1\n  x: 2\n")
    assert doc.data == {"a": 1, "b": 2, "c": {"x": 1}}
    assert [str(p) for p in doc.problems] == [
        "t.yaml:3:1: a: duplicate key 'a' (first defined on line 1)",
        "t.yaml:6:3: c.x: duplicate key 'x' (first defined on line 5)",
    ]


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("a: !!python/name:os.system x\n", "!!python/name:os.system"),
        ("a: !!set {x, y}\n", "!!set"),
        ("a: !!omap [{x: 1}]\n", "!!omap"),
        ("a: !custom 5\n", "!custom"),
        ("? !!python/tuple [1, 2]\n: x\n", "!!python/tuple"),
    ],
)
def test_tags_beyond_plain_data_are_refused(text, tag):
    [message] = problems(text)
    assert f"unsupported YAML tag '{tag}'" in message


def test_complex_keys_are_refused():
    assert problems("? [a, b]\n: x\n") == [
        "t.yaml:1:3: mapping keys must be plain words, not lists or mappings"
    ]


def test_tabs():
    assert problems("a:\n\t- x\n") == [
        "t.yaml:2:1: tab character in indentation: YAML indents with spaces only"
    ]
    # a tab between a key and its value is only a separator
    assert parse("a:\tb\nc: [1,\t2]\n").data == {"a": "b", "c": [1, 2]}


def test_utf8_with_bom_is_read_and_other_encodings_are_refused():
    assert parse("\ufeffa: café\n".encode()).data == {"a": "café"}
    assert problems("a: x\nb: ok\nc: caf\xe9\n".encode("latin-1")) == [
        "t.yaml:3:7: file is not UTF-8 text (byte 0xe9)"
    ]
    assert problems("a: x\n".encode("utf-16")) == ["t.yaml:1:1: file is not UTF-8 text (byte 0xff)"]


def test_a_huge_file_is_refused_before_parsing():
    raw = b"a: " + b"x" * (yamlsource.MAX_FILE_BYTES + 1)
    assert problems(raw) == ["t.yaml:1:1: file is larger than 4 MiB"]


def test_an_unreadable_file_is_one_problem(tmp_path):
    with pytest.raises(ScenarioError) as info:
        read_document(tmp_path / "missing.yaml", "missing.yaml")
    assert str(info.value) == "missing.yaml:1:1: cannot read file: No such file or directory"


def test_read_document_uses_the_display_name(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(DOC)
    assert read_document(path, "lib/s.yaml").file == "lib/s.yaml"
    assert read_document(path).file == str(path)


# --- values JSON has no room for; files that are not files ----------------------------

NOT_FINITE = """\
smtpscript: 1
title: t
target: {timeout: .nan}
vars:
  a: [1, -.Inf]
  b: .NaN
steps:
  - sleep: .inf
  - send: QUIT
    timeout: 1.0e+999
"""


def test_nan_and_infinity_are_refused_wherever_they_stand():
    finite = "is not a finite number (NaN and infinity are not allowed)"
    assert problems(NOT_FINITE) == [
        f"t.yaml:3:19: target.timeout: '.nan' {finite}",
        f"t.yaml:5:10: vars.a[1]: '-.Inf' {finite}",
        f"t.yaml:6:6: vars.b: '.NaN' {finite}",
        f"t.yaml:8:12: steps[0].sleep: '.inf' {finite}",
        f"t.yaml:10:14: steps[1].timeout: '1.0e+999' {finite}",  # overflows to infinity
    ]
    assert problems("a: !!float .inf\n") == [f"t.yaml:1:4: a: '.inf' {finite}"]
    assert parse("a: [1.5, -0.0, '.nan', .nan_x]\n").data == {"a": [1.5, -0.0, ".nan", ".nan_x"]}


def test_surrogate_escapes_are_refused_with_their_place():
    why = (
        "a UTF-16 surrogate escape, which is not a character: write the character itself, "
        "or \\UXXXXXXXX for one above U+FFFF"
    )
    text = 'steps:\n  - raw: "ok \\ud800"\n  - send: "\\udfff"\nvars: {"k\\udc00": 1}\n'
    assert problems(text) == [
        f"t.yaml:2:10: steps[0].raw: contains \\ud800, {why}",
        f"t.yaml:3:11: steps[1].send: contains \\udfff, {why}",
        f"t.yaml:4:8: vars: a key contains \\udc00, {why}",
    ]
    # a pair is refused too (libyaml refuses it as well); the character itself is fine
    assert problems('a: "\\ud83d\\ude00"\n')[0].startswith("t.yaml:1:4: a: contains \\ud83d")
    assert parse('a: "\\U0001F600 😀"\n').data == {"a": "\U0001f600 \U0001f600"}


def test_surrogates_are_refused_by_both_parsers(monkeypatch):
    text = 'a: "\\ud800"\n'
    first = problems(text)
    monkeypatch.setattr(yamlsource, "_FAST_LOADER", None)
    assert problems(text) == first


def test_a_number_too_long_for_python_says_so():
    assert problems("a: " + "9" * 5000 + "\n") == [
        "t.yaml:1:4: a number with more than 4300 digits: quote it if it is text"
    ]


def test_paths_quote_keys_that_would_not_read_as_one_name():
    assert format_path(("vars", "a\nb")) == "vars['a\\nb']"
    assert format_path(("data", "headers", "To:")) == "data.headers['To:']"
    assert format_path(("headers", "")) == "headers['']"
    assert format_path(("headers", "Sub ject", 0)) == "headers['Sub ject'][0]"
    assert format_path(("vars", "mail-from")) == "vars.mail-from"


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    start = time.perf_counter()
    with pytest.raises(ScenarioError) as info:
        read_document(fifo, "pipe.yaml")
    assert str(info.value) == "pipe.yaml:1:1: not a regular file (a FIFO)"
    assert time.perf_counter() - start < 1


def test_a_device_behind_a_link_is_never_read(tmp_path):
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    tracemalloc.start()
    try:
        with pytest.raises(ScenarioError) as info:
            read_document(link, "zero.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value) == "zero.yaml:1:1: not a regular file (a character device)"
    assert peak < 1024 * 1024


def test_a_huge_sparse_file_is_refused_by_its_size_not_read(tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as out:
        out.truncate(1024 * 1024 * 1024)  # 1 GiB of nothing: sparse, costs no disk
    tracemalloc.start()
    try:
        with pytest.raises(ScenarioError) as info:
            read_document(path, "huge.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value) == "huge.yaml:1:1: file is larger than 4 MiB"
    assert peak < 1024 * 1024


def test_the_bounded_reader_stops_one_byte_past_the_limit(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert yamlsource.read_bounded(path, 100) == b"x" * 100
    with pytest.raises(yamlsource.FileTooLarge):
        yamlsource.read_bounded(path, 99)
    with pytest.raises(yamlsource.NotRegularFile, match="a directory"):
        yamlsource.read_bounded(tmp_path, 100)
