"""Bounded templates: no template hangs the process or takes unbounded memory.

Every limit gives one TemplateError line that names it, and gives it fast: the
checks run before the big value is built. The time and memory bounds asserted
here are generous sanity bounds, not measurements.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator

import pytest
from scenario_helpers import run_file, write

from smtpscript import jinjabounds
from smtpscript.cli import run_cli
from smtpscript.loading import load_paths
from smtpscript.templating import TemplateError, evaluate, render

SIZE = f"{jinjabounds.MAX_SIZE:,}"
TOO_LONG = f"would make a value longer than {SIZE} characters \\(the limit\\)"
WORK = "too much work: over 1,000,000 steps \\(the limit; "
RECURSION = "calls or values nested too deeply \\(recursion\\)"


def width(name: str, value: str) -> str:
    return f"^template error: '{name}' width {value} is over the limit of {SIZE}$"


def refused(source: str, pattern: str, context: dict[str, object] | None = None) -> str:
    """Render ``source``; it must fail with a TemplateError matching ``pattern``, quickly."""
    start = time.perf_counter()
    with pytest.raises(TemplateError, match=pattern) as info:
        render(source, context or {})
    assert time.perf_counter() - start < 10, "a limit must stop a template early"
    return str(info.value)


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Small limits: the limits are module constants read at run time."""
    monkeypatch.setattr(jinjabounds, "MAX_OUTPUT", 1000)
    monkeypatch.setattr(jinjabounds, "MAX_SIZE", 1000)
    yield


# --- output ------------------------------------------------------------------------


def test_output_is_capped_while_streaming(small):
    message = refused(
        "{% for i in range(100000) %}{{ 'x' * 10 }}{% endfor %}",
        "^template error: output longer than 1,000 characters \\(the limit\\)$",
    )
    assert "\n" not in message


def test_output_cap_stops_rendering_early_at_the_default_limit():
    # 100,000 x 1,000 characters would be 100 MB; rendering stops at 32 MiB
    refused(
        "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
        f"^template error: output longer than {jinjabounds.MAX_OUTPUT:,} characters",
    )


def test_an_smtp_sized_message_body_still_renders():
    # a DATA body must be able to exceed a server's SIZE limit (Postfix: 10 MB)
    assert len(render("{{ 'x' * 11000000 }}", {})) == 11_000_000


# --- operators -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        ("{{ 'a' * 10**10 }}", f"^template error: '\\*' {TOO_LONG}$"),
        ("{{ 10**10 * 'a' }}", f"^template error: '\\*' {TOO_LONG}$"),
        ("{{ [1, 2] * 10**10 }}", f"^template error: '\\*' {TOO_LONG}$"),
        ("{{ ('ab',) * 10**10 }}", f"^template error: '\\*' {TOO_LONG}$"),
        (
            "{{ 9**(9**9) }}",
            "^template error: '\\*\\*' would make a number of 1,228,093,895 bits, "
            "over the limit of 16,384$",
        ),
        ("{{ 2 ** (10**9) }}", "^template error: '\\*\\*' would make a number of 1,000,000,000"),
        ("{{ (10**4000) * (10**4000) }}", "^template error: '\\*' would make a number of "),
        ("{{ '%999999999s' % 'x' }}", width("%", "999999999")),
        ("{{ '%-999999999d' % 1 }}", width("%", "999999999")),
        ("{{ '%*d' % (999999999, 1) }}", width("%", "999999999")),
        ("{{ '%.999999999f' % 1.5 }}", width("%", "999999999")),
        ("{{ '%(a)999999999s' % {'a': 1} }}", width("%", "999999999")),
        ("{{ '%((a))999999999s' % {'(a)': 1} }}", width("%", "999999999")),  # nested parens
        ("{{ '%s' % (10**10 * 'a') }}", f"^template error: '\\*' {TOO_LONG}$"),
    ],
)
def test_operators_are_bounded_before_they_allocate(source, pattern):
    refused(source, pattern)


def test_repetition_concatenation_and_formatting_are_bounded_by_their_result(small):
    refused("{{ 'ab' * 501 }}", "^template error: '\\*' would make a value longer than 1,000")
    refused("{{ ('a' * 600) + ('b' * 600) }}", "^template error: '\\+' would make a value longer")
    refused("{{ ['a' * 600] + ['b' * 600] }}", "^template error: '\\+' would make a value longer")
    refused("{{ '%s%500s' % (a, a) }}", "^template error: '%' would make a value", {"a": "x" * 300})
    refused("{{ '%(a)s%(a)s' % {'a': 'x' * 600} }}", "^template error: '%' would make a value")
    assert render("{{ 'ab' * 500 }}", {}) == "ab" * 500


def test_operators_still_compute_ordinary_values():
    assert render("{{ 'ab' * 3 }}|{{ 3 * 'a' }}|{{ [1] * 3 }}|{{ 'ab' * -1 }}", {}) == (
        "ababab|aaa|[1, 1, 1]|"
    )
    assert render("{{ 2**64 }} {{ 2**-3 }} {{ 10 % 3 }} {{ 1 + 2 }}", {}) == (
        "18446744073709551616 0.125 1 3"
    )
    assert render("{{ '%5s|%-3d|%.2f' % ('a', 7, 1.5) }}", {}) == "    a|7  |1.50"
    assert render("{{ '%(a)s %(b)s' % {'a': 1, 'b': 2} }}", {}) == "1 2"
    assert render("{{ 'a' + 'b' }}{{ [1] + [2] }}{{ (1,) + (2,) }}", {}) == "ab[1, 2](1, 2)"


def test_power_towers_are_read_left_to_right_and_stay_small():
    # Jinja reads 9**9**9 as (9**9)**9: a 77-digit number, not 9**387420489
    assert render("{{ 9**9**9 }}", {}) == str(9**81)


def test_constants_are_not_folded_at_compile_time():
    # intercepted operators are not folded by Jinja's compiler: compiling is instant
    start = time.perf_counter()
    for source in ("{{ 'a' * 10**10 }}", "{{ 9**(9**9) }}", "{{ 'ab' ~ ('c' * 10**10) }}"):
        with pytest.raises(TemplateError):
            render(source, {})
    assert time.perf_counter() - start < 5


def test_filters_are_not_folded_into_big_constants_in_cached_code():
    # compiled templates are cached: a folded 32 MiB constant would stay in memory
    from smtpscript.templating import environment

    code = environment().compile("{{ 'a'|center(30000000) }}{{ 'x' * 3 }}", raw=True)
    assert len(code) < 10_000
    assert render("{{ 'a'|center(3) }}", {}) == " a "


def test_the_environment_renders_within_a_budget_when_used_directly():
    from smtpscript.templating import environment

    template = environment().from_string("{% for i in range(100000) %}{% for j in range(100000) %}"
                                         "{% endfor %}{% endfor %}")  # fmt: skip
    with pytest.raises(jinjabounds.LimitError, match="too much work"):
        template.render()
    assert environment().from_string("{{ x }}!").render(x=1) == "1!"


def test_big_values_are_refused_without_allocating_them():
    tracemalloc.start()
    try:
        for source in ("{{ 'a' * 10**10 }}", "{{ 9**(9**9) }}", "{{ 'a'.ljust(10**9) }}"):
            with pytest.raises(TemplateError):
                render(source, {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000


# --- concatenation, loops, calls ---------------------------------------------------------


def test_tilde_doubling_stops_fast_and_small():
    source = (
        "{% set ns = namespace(x='ab') %}{% for i in range(60) %}"
        "{% set ns.x = ns.x ~ ns.x %}{% endfor %}"
    )
    tracemalloc.start()
    try:
        refused(source, f"^template error: '~' {TOO_LONG}$")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 300_000_000  # a few copies of the 32 MiB limit, not 2**60 bytes


def test_plus_doubling_stops_too(small):
    refused(
        "{% set ns = namespace(x='ab') %}{% for i in range(60) %}"
        "{% set ns.x = ns.x + ns.x %}{% endfor %}",
        "^template error: '\\+' would make a value longer than 1,000",
    )


def test_nested_loops_stop_at_the_work_limit():
    message = refused(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        f"^template error: {WORK}",
    )
    assert message == (
        "template error: too much work: over 1,000,000 steps (the limit; a loop iteration "
        "counts 1 per node of its body, a call 10, every 128 bytes built 1)"
    )


def test_a_recursive_loop_counts_its_inner_iterations():
    refused(
        "{% for x in range(1000) recursive %}{% if loop.depth < 4 %}"
        "{{ loop(range(1000)) }}{% endif %}{% endfor %}",
        f"^template error: {WORK}",
    )


def test_exponential_macro_recursion_stops_at_the_work_limit():
    refused(
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(60) }}",
        f"^template error: {WORK}",
    )


@pytest.mark.parametrize(
    "source",
    [
        "{% macro f(n) %}{{ f(n - 1) }}{{ f(n - 1) }}{% endmacro %}{{ f(60) }}",  # no base case
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    ],
)
def test_endless_macro_recursion_is_one_template_error(source):
    assert refused(source, f"^template error: {RECURSION}$") == (
        "template error: calls or values nested too deeply (recursion)"
    )


def test_calls_in_a_loop_count_as_work():
    refused(
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ 'a'.upper() }}"
        "{% endfor %}{% endfor %}",
        f"^template error: {WORK}",
    )


def test_the_wall_clock_is_a_backstop(monkeypatch):
    monkeypatch.setattr(jinjabounds, "MAX_SECONDS", 0.0)
    monkeypatch.setattr(jinjabounds, "CLOCK_EVERY", 1)
    refused(
        "{% for i in range(1000) %}{{ i }}{% endfor %}",
        "^template error: took longer than 0 seconds \\(the limit\\)$",
    )


def test_each_render_has_its_own_budget(monkeypatch):
    monkeypatch.setattr(jinjabounds, "MAX_WORK", 5000)
    source = "{% for i in range(100) %}{{ i }}{% endfor %}"
    for _ in range(100):  # 100 renders of about 400 steps: each within its own budget
        render(source, {})


# --- nested values -----------------------------------------------------------------------


def test_nested_lists_sharing_one_list_are_measured_not_printed():
    # 10**7 references to one string: printing it would build gigabytes
    levels = "".join(f"{{% set l{i} = [{', '.join([f'l{i - 1}'] * 10)}] %}}" for i in range(1, 8))
    # measuring is work too: whichever limit comes first stops it
    refused("{% set l0 = ['x'] %}" + levels + "{{ l7 }}", f"^template error: (a literal|{WORK})")


def test_a_namespace_cannot_grow_into_a_huge_nest():
    refused(
        "{% set ns = namespace(x=[]) %}{% for i in range(40) %}{% set ns.x = [ns.x, ns.x] %}"
        "{% endfor %}{{ ns.x == ns.x[:] }}",
        f"^template error: (a literal|a call|{WORK})",
    )


def test_values_nested_too_deeply_are_refused():
    refused(
        "{% set ns = namespace(x=[]) %}{% for i in range(100) %}{% set ns.x = [ns.x] %}"
        "{% endfor %}",
        "^template error: a literal: values nested more than 64 deep \\(the limit\\)$",
    )
    refused(
        "{% set ns = namespace() %}{% set ns.x = [ns] %}{{ ns }}",
        "^template error: a placeholder: values nested more than 64 deep",
    )


def test_context_values_that_print_too_long_are_refused(small):
    shared = ["x" * 100] * 100
    refused(
        "{{ data }}", "^template error: a placeholder would make a value longer", {"data": shared}
    )
    refused("{{ data|string }}", "^template error: 'string' would make", {"data": shared})
    refused("{{ 'a' ~ data }}", "^template error: '~' would make", {"data": shared})


# --- filters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        ("{{ 'a'|center(1000000000) }}", width("center", "1,000,000,000")),
        ("{{ 'a'|indent(10**9) }}", width("indent", "1,000,000,000")),
        ("{{ ('a\n' * 100000)|indent('    ' * 1000) }}", f"^template error: 'indent' {TOO_LONG}$"),
        ("{{ '%999999999s'|format('x') }}", width("format", "999999999")),
        ("{{ '%*s'|format(10**9, 'x') }}", width("format", "1000000000")),
        (
            "{{ 'a b c'|wordwrap(1, wrapstring='\n' * 20000000) }}",
            f"^template error: 'wordwrap' {TOO_LONG}$",
        ),
        ("{{ 'abc'|replace('', 'x' * 20000000) }}", f"^template error: 'replace' {TOO_LONG}$"),
        (
            "{{ ['x' * 20000000, 'y']|join('z' * 20000000) }}",
            f"^template error: 'join' {TOO_LONG}$",
        ),
        ("{{ range(10)|batch(10**9, 0)|list }}", width("batch", "1,000,000,000")),
        ("{{ range(10)|slice(10**9)|list }}", width("slice", "1,000,000,000")),
        ("{{ {'a': [1, 2]}|tojson(indent=10**9) }}", f"^template error: 'tojson' {TOO_LONG}$"),
        ("{{ ([['x'] * 1000] * 1000)|sum(start=[]) }}", f"^template error: {WORK}"),
        ("{{ 5|round(-10**9) }}", "^template error: 'round' would make a number of "),
        ("{{ 5.5|round(10**9, 'floor') }}", "^template error: 'round' would make a number of "),
    ],
)
def test_filters_with_size_parameters_are_bounded(source, pattern):
    refused(source, pattern)


def test_filters_that_grow_text_are_bounded_by_their_result(small):
    refused("{{ ('<' * 300)|e }}", "^template error: 'e' would make a value longer than 1,000")
    refused("{{ ('é' * 300)|urlencode }}", "^template error: 'urlencode' would make")
    refused("{{ ['x' * 600, 'y' * 300]|join('-' * 200) }}", "^template error: 'join' would make")


ITEMS = "would make more than 1,048,576 items \\(the limit\\)$"


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("{{ ('x' * 2000000)|list|length }}", "list"),
        ("{{ ('x' * 2000000)|sort|length }}", "sort"),
        ("{{ ('x' * 2000000)|batch(1)|list|length }}", "batch"),
        ("{{ ('x' * 2000000)|join(',')|length }}", "join"),
        ("{{ ','.join('x' * 2000000)|length }}", "join"),
        ("{{ ('x' * 2000000).split('x')|length }}", "split"),
        ("{{ (' ' * 3000000).split()|length }}", "split"),
        ("{{ ('\n' * 2000000).splitlines()|length }}", "splitlines"),
        ("{{ ('\n' * 2000000)|indent(0)|length }}", "indent"),
        ("{{ ('a ' * 1500000)|title|length }}", "title"),
        ("{{ ('a ' * 1500000)|wordwrap|length }}", "wordwrap"),
    ],
)
def test_a_string_is_not_turned_into_millions_of_items(source, name):
    # a list of 32 million one-character strings would take 256 MB of pointers alone
    refused(source, f"^template error: '{name}' {ITEMS}")


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("{{ ('<>' * 10000000)|e }}", "e"),  # four times longer
        ("{{ ('&' * 10000000)|escape }}", "escape"),
        ("{{ ('ﬃ' * 20000000)|upper }}", "upper"),  # 'FFI': three times longer
        ("{{ ('ﬃ' * 20000000).upper() }}", "upper"),
        ("{{ ('é' * 5000000)|urlencode }}", "urlencode"),  # %C3%A9
        ("{{ ('x' * 10000000).encode('utf-32') }}", "encode"),
        ("{{ ('x' * 12000000).encode().hex(':') }}", "hex"),
    ],
)
def test_text_that_grows_is_refused_before_it_is_built(source, name):
    tracemalloc.start()
    try:
        refused(source, f"^template error: '{name}' {TOO_LONG}$")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 150_000_000  # the input (up to 80 MB of wide characters), not its growth


def test_wordwrap_cutting_one_huge_word_into_pieces_is_work():
    # textwrap slices what is left of a long word again and again: quadratic
    refused("{{ ('a' * 1000000)|wordwrap(1) }}", f"^template error: {WORK}")
    assert render("{{ ('hello world ' * 1000)|wordwrap(79)|length }}", {}) == "11999"


def test_lazy_filters_cost_a_step_per_item():
    refused("{{ ('x' * 30000000)|select|list|length }}", f"^template error: {WORK}")
    assert render("{{ ('x' * 30000000)|reverse|length }}", {}) == "30000000"


def test_splitting_small_strings_still_works():
    source = (
        "{{ 'a\nb'.splitlines() }}{{ 'a b'.split() }}{{ 'a,b,c'.rsplit(',', 1) }}"
        "{{ 'a\nb'.encode().splitlines() }}{{ 'hello world'|title }}{{ '<b>x</b> y'|striptags }}"
        "{{ 'a b c'|wordcount }}{{ range(3)|reverse|list }}"
    )
    assert render(source, {}) == (
        "['a', 'b']['a', 'b']['a,b', 'c'][b'a', b'b']Hello Worldx y3[2, 1, 0]"
    )


def test_truncate_never_grows_its_text():
    # Jinja asserts length >= len(end), so the result is at most the longer of the two
    assert render("{{ 'abc'|truncate(10**9) }}", {}) == "abc"
    refused("{{ 'abc'|truncate(1) }}", "^template error: expected length >= 3, got 1$")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 'ab'|center(6) }}|", "  ab  |"),
        ("{{ 'a\nb'|indent(2, first=true) }}", "  a\n  b"),
        ("{{ '%s-%s'|format('a', 'b') }}", "a-b"),
        ("{{ 'a b c'|wordwrap(1) }}", "a\nb\nc"),
        ("{{ 'a b c'|wordwrap(1, wrapstring='<br>') }}", "a<br>b<br>c"),
        ("{{ 'abc'|replace('b', 'xx') }}", "axxc"),
        ("{{ [1, 2, 3]|join(',') }}", "1,2,3"),
        ("{{ [{'n': 'a'}, {'n': 'b'}]|join(',', attribute='n') }}", "a,b"),
        ("{{ [1, 2, 3]|batch(2, 0)|list }}", "[[1, 2], [3, 0]]"),
        ("{{ [1, 2, 3]|slice(2)|list }}", "[[1, 2], [3]]"),
        ("{{ 'hello world'|truncate(9, end='.', leeway=0) }}", "hello."),
        ("{{ [1, 2]|sum }}{{ [[1], [2]]|sum(start=[]) }}", "3[1, 2]"),
        ("{{ {'a': [1]}|tojson }}{{ {'a': 1}|tojson(indent=1) }}", '{"a": [1]}{\n "a": 1\n}'),
        ("{{ 'alice'|b64 }}={{ 'YWxpY2U='|b64decode }}", "YWxpY2U==alice"),
        ("{{ ['b', 'a']|map('upper')|join }}", "BA"),
        ("{{ 1234|round(-2) }} {{ 2.567|round(2, 'floor') }}", "1200 2.56"),
    ],
)
def test_bounded_filters_still_work(source, expected):
    assert render(source, {}) == expected


@pytest.mark.parametrize("name", ["pprint", "urlize"])
def test_filters_that_cannot_be_bounded_cheaply_are_gone(name):
    refused("{{ 'a'|" + name + " }}", f"^template error: no filter named '{name}'")


def test_lipsum_is_gone_and_range_is_kept():
    refused("{{ lipsum(10**9) }}", "^undefined variable: 'lipsum' is undefined$")
    refused("{% for i in range(10**9) %}{% endfor %}", "Range too big")
    assert render("{{ range(3)|list }}", {}) == "[0, 1, 2]"


# --- str, bytes and int methods ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        ("{{ 'a'.ljust(10**9) }}", width("ljust", "1,000,000,000")),
        ("{{ 'a'.rjust(10**9, '.') }}", width("rjust", "1,000,000,000")),
        ("{{ 'a'.center(10**9) }}", width("center", "1,000,000,000")),
        ("{{ 'a'.zfill(10**9) }}", width("zfill", "1,000,000,000")),
        ("{{ 'a'.encode().ljust(10**9) }}", width("ljust", "1,000,000,000")),
        ("{{ 'a\tb'.expandtabs(10**9) }}", f"^template error: 'expandtabs' {TOO_LONG}$"),
        ("{{ 'abc'.replace('', 'x' * 20000000) }}", f"^template error: 'replace' {TOO_LONG}$"),
        ("{{ ('x' * 20000000).join(['a', 'b', 'c']) }}", f"^template error: 'join' {TOO_LONG}$"),
        (
            "{{ 'abc'.translate({97: 'x' * 20000000}) }}",
            f"^template error: 'translate' {TOO_LONG}$",
        ),
        ("{{ '{:>999999999}'.format(1) }}", width("format", "999999999")),
        ("{{ '{0:{1}}'.format(1, 10**9) }}", width("format", "1000000000")),
        ("{{ '{a:>999999999}'.format_map({'a': 1}) }}", width("format", "999999999")),
        ("{{ ('{0}' * 100).format('y' * 1000000) }}", f"^template error: 'format' {TOO_LONG}$"),
        ("{{ (1).to_bytes(10**9, 'big') }}", width("to_bytes", "1,000,000,000")),
    ],
)
def test_str_methods_with_size_parameters_are_bounded(source, pattern):
    refused(source, pattern)


def test_str_methods_still_work():
    source = (
        "{{ 'a'.rjust(3, '.') }}|{{ 'a'.center(3) }}|{{ '7'.zfill(3) }}|{{ 'a\tb'.expandtabs(2) }}"
        "|{{ 'abc'.replace('b', 'x') }}|{{ '-'.join(['a', 'b']) }}|{{ 'abc'.translate({97: 'x'}) }}"
        "|{{ '{:>3}'.format(1) }}|{{ '{a}'.format_map({'a': 2}) }}|{{ (1).to_bytes(2, 'big') }}"
    )
    assert render(source, {}) == "..a| a |007|a b|axc|a-b|xbc|  1|2|b'\\x00\\x01'"


@pytest.mark.parametrize(
    "source",
    [
        "{% set l = [1] %}{{ l.append(2) }}",
        "{% set l = [1] %}{{ l.extend(l) }}",
        "{% set d = {} %}{{ d.update({'a': 1}) }}",
        "{% set d = {'a': 1} %}{{ d.pop('a') }}",
    ],
)
def test_lists_and_dicts_cannot_be_modified(source):
    refused(source, "^template error: access to attribute '\\w+' of '(list|dict)' object is unsafe")


# --- errors ------------------------------------------------------------------------------------


def test_memory_errors_become_one_template_error():
    class Huge:
        def __str__(self) -> str:
            raise MemoryError

    assert refused("{{ x }}", "^template error: out of memory$", {"x": Huge()})


def test_when_expressions_have_the_same_limits():
    with pytest.raises(TemplateError, match=f"^expression error: '\\*' {TOO_LONG}$"):
        evaluate("'a' * 10**10 == 'a'", {})
    with pytest.raises(TemplateError, match=f"^expression error: {WORK}"):
        evaluate("range(100000)|map('string')|map('center', 1000000)|list", {})
    assert evaluate("'PLAIN' in caps.AUTH", {"caps": {"AUTH": "PLAIN LOGIN"}}) is True


# --- validation and a real run ------------------------------------------------------------------

UNKNOWN = """\
smtpscript: 1
title: unknown filters and tests
when: "x is definedd"
vars:
  x: "{{ 'a' | upperr }}"
steps:
  - send: "MAIL FROM:<{{ x | lowerr }}>"
  - send: "RCPT TO:<a@b>"
    when: "x | lenght > 1"
  - data: |
      line one
      {% filter uper %}x{% endfilter %}
"""
UNKNOWN_PROBLEMS = [
    "expression error: no test named 'definedd' (did you mean 'defined'?)",
    "template error: no filter named 'upperr' (did you mean 'upper'?)",
    "template error: no filter named 'lowerr' (did you mean 'lower'?)",
    "expression error: no filter named 'lenght' (did you mean 'length'?)",
    "template error: no filter named 'uper' (did you mean 'upper'?)",
]


def test_unknown_filters_and_tests_are_validation_problems(tmp_path):
    path = write(tmp_path, UNKNOWN)
    problems = load_paths([path]).problems
    assert [str(p).split(": ", 1)[1] for p in problems] == [
        "when: " + UNKNOWN_PROBLEMS[0],
        "vars.x: " + UNKNOWN_PROBLEMS[1],
        "steps[0].send: " + UNKNOWN_PROBLEMS[2],
        "steps[1].when: " + UNKNOWN_PROBLEMS[3],
        "steps[2].data: " + UNKNOWN_PROBLEMS[4],
    ]
    assert [(p.line, p.column) for p in problems] == [(3, 7), (5, 6), (7, 11), (9, 11), (12, 7)]


def test_validate_reports_an_unknown_filter_with_its_position(tmp_path, monkeypatch, capsys):
    write(tmp_path, "smtpscript: 1\ntitle: t\nsteps:\n  - send: \"{{ 'a' | upperr }}\"\n")
    monkeypatch.chdir(tmp_path)
    assert run_cli(["validate", "s.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (
        "s.yaml:4:11: steps[0].send: template error: no filter named 'upperr' "
        "(did you mean 'upper'?)"
    )


def test_an_unknown_filter_at_run_time_is_a_template_error():
    refused("{{ 'a' | upperr }}", "^template error: no filter named 'upperr' \\(did you mean")
    with pytest.raises(TemplateError, match=r"^expression error: no test named 'definedd'"):
        evaluate("x is definedd", {})


def test_a_huge_send_line_is_an_error_verdict_not_a_hang(tmp_path, sandbox_target):
    path = write(
        tmp_path,
        "smtpscript: 1\ntitle: huge\nsteps:\n  - ehlo: client.test\n"
        "  - send: \"{{ 'a' * 10**10 }}\"\n",
    )
    start = time.perf_counter()
    result = run_file(path, sandbox_target)
    assert time.perf_counter() - start < 10
    assert result.verdict == "error"
    assert result.steps[-1].message == (
        f"template error: '*' would make a value longer than {SIZE} characters (the limit)"
    )
