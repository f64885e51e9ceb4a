"""A Jinja sandbox whose every template has bounded output, time and memory.

Scenario files may be written by anyone, and Jinja's sandbox only guards
Python's internals: ``{{ 'a' * 10**10 }}``, ``{{ 9**(9**9) }}``, nested loops,
a macro calling itself twice, or ``~`` doubling a string in a loop would each
hang the process or eat its memory. Here:

- every render has a budget of work steps (loop iterations, calls, filters,
  operators, and one step for every ``BYTES_PER_STEP`` bytes built) and a
  wall-clock deadline as a backstop for what steps do not see. Steps are
  weighted to take roughly the same time (under a microsecond): a loop
  iteration costs one step per node of the loop's body, a call ``CALL_STEPS``;
- every value a template builds (with an operator, ``~``, a literal, a filter
  or a method call) is at most ``MAX_SIZE`` characters long, a container
  counting as long as it would print (measured without printing it, so a
  list holding one list ten times, ten levels deep, is cheap to refuse);
  size parameters (widths, counts, ``%`` and ``format`` fields), text that
  grows (escaping, case changes) and strings turned into lists of items
  (``MAX_ITEMS``) are checked *before* anything is allocated;
- the rendered output of one template is at most ``MAX_OUTPUT`` characters,
  counted while streaming, so rendering stops early;
- lists, dicts and sets cannot be modified (``append`` doubling is refused);
  ``lipsum``, ``pprint`` and ``urlize`` are gone.

How: the parsed template is rewritten before code generation (loops count
their iterations, ``~`` and literals check sizes), the operators above are
intercepted (which also stops Jinja folding them at compile time), every
filter is wrapped, and the sandbox's ``call`` checks methods' arguments.

Going over a limit raises ``LimitError``, one line naming the limit. The limits
are module constants, read at run time, so tests and callers can change them.
"""

from __future__ import annotations

import functools
import math
import re
import sys
import time
import types
from collections import ChainMap
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.filters import do_wordwrap, make_attrgetter
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
)
from jinja2.utils import Namespace, _PassArg, pass_environment, pass_eval_context
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

# A DATA body may have to be larger than the server's SIZE limit (Postfix: 10 MB by
# default, big providers 25-35 MB), so output and values may reach 32 MiB. What one
# render can build in all is bounded by the work budget: MAX_WORK * BYTES_PER_STEP.
MAX_OUTPUT = 32 << 20  # characters one template may render
MAX_SIZE = 32 << 20  # characters any one value built by a template may have
MAX_WORK = 1_000_000  # steps per render (see the module docstring)
BYTES_PER_STEP = 128  # building this many bytes costs one step (a character: 1 to 4)
COPIES_PER_STEP = 1 << 16  # characters copied by one slice, in a step's time
CALL_STEPS = 10  # a call (macro, method, global): measured at 5-8 us, ten empty iterations
MAX_INT_BITS = 1 << 14  # already more digits than Python will print (4,300)
MAX_DEPTH = 64  # containers nested deeper than this are refused
MAX_ITEMS = 1 << 20  # items a filter or method may make out of a string (8 MiB of pointers)
MAX_SECONDS = 5.0  # wall clock per render, for slow work the steps do not see
CLOCK_EVERY = 256  # steps between two looks at the clock

# Filters whose input is printed: a container given to them is measured first.
TEXT_FILTERS = frozenset(
    {"capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower"}
    | {"upper", "title", "trim", "striptags", "truncate", "wordcount", "replace", "string"}
    | {"safe", "urlencode", "xmlattr", "tojson", "b64", "b64decode"}
)
# Filters that make a list of their input's items: a string's characters are
# counted first, and a lazy input (map, select...) costs a step per item.
ITEM_FILTERS = frozenset({"list", "sort", "unique", "batch", "slice", "groupby", "join"})
# pprint indents nested values by the width of their keys, and urlize copies its
# target/rel text into every link: neither output can be bounded cheaply, and
# neither has a use in SMTP text.
REMOVED_FILTERS = frozenset({"pprint", "urlize"})

_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))
_CONTAINERS = (list, tuple, dict, set, frozenset, Namespace, *_VIEWS)
_SEQUENCES = (str, bytes, list, tuple)
_JINJA_KWARGS = frozenset({"_loop_vars", "_block_vars"})  # Jinja's own, not the template's


class LimitError(jinja2.TemplateRuntimeError):
    """A template went over one of the limits; the message names it."""


# --- the budget of one render -------------------------------------------------


@dataclass
class Budget:
    """What one render may still spend: template steps and time."""

    steps: int = 0
    deadline: float = field(default_factory=lambda: time.monotonic() + MAX_SECONDS)
    next_clock: int = CLOCK_EVERY

    def spend(self, steps: int = 1) -> None:
        self.steps += steps
        if self.steps > MAX_WORK:
            raise LimitError(
                f"too much work: over {MAX_WORK:,} steps (the limit; a loop iteration "
                f"counts 1 per node of its body, a call {CALL_STEPS}, "
                f"every {BYTES_PER_STEP} bytes built 1)"
            )
        if self.steps >= self.next_clock:
            self.next_clock = self.steps + CLOCK_EVERY
            if time.monotonic() > self.deadline:
                raise LimitError(f"took longer than {MAX_SECONDS:g} seconds (the limit)")


_BUDGET: ContextVar[Budget | None] = ContextVar("smtpscript_template_budget", default=None)


class NotRendering(Exception):
    """Work asked for outside ``render``/``evaluate``: Jinja folding constants.

    Refusing it makes Jinja leave the expression to run time, within a budget,
    instead of storing a big constant in compiled (and cached) code.
    """


def _budget() -> Budget:
    budget = _BUDGET.get()
    if budget is None:
        raise NotRendering("templates of this environment run through jinjabounds.render")
    return budget


def _charge(value: object, estimate: int = 0) -> None:
    """Spend steps for memory just built: a string's real size, else ``estimate`` bytes."""
    if isinstance(value, (str, bytes)):
        estimate = sys.getsizeof(value)
    if estimate >= BYTES_PER_STEP:  # below, it would cost nothing: skip the lookups
        _budget().spend(estimate // BYTES_PER_STEP)


@contextmanager
def budgeted() -> Iterator[Budget]:
    """A fresh budget for everything evaluated inside the block."""
    budget = Budget()
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def render(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """Render by streaming, stopping as soon as the output is over MAX_OUTPUT.

    The stream is what ``template.generate`` wraps, without its traceback
    rewriting: errors here become one line, and rewriting a RecursionError's
    thousand frames would cost more than the render.
    """
    parts: list[str] = []
    size = 0
    stream = template.root_render_func(template.new_context(_flat(context)))
    token = _BUDGET.set(Budget())  # budgeted(), without a context manager's cost per render
    try:
        with closing(stream) as chunks:
            for chunk in chunks:
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise LimitError(f"output longer than {MAX_OUTPUT:,} characters (the limit)")
                parts.append(chunk)
    finally:
        _BUDGET.reset(token)
    return "".join(parts)


def _flat(context: Mapping[str, Any]) -> dict[str, Any]:
    """``dict(context)``; a ChainMap merged map by map (dict() would look up every key
    in every map)."""
    if type(context) is not ChainMap:
        return dict(context)
    flat: dict[str, Any] = {}
    for layer in reversed(context.maps):
        flat.update(layer)
    return flat


# Names Jinja's generated code gives a meaning of its own (``self`` is the template).
_SPECIAL_NAMES = frozenset({"self", "super", "loop", "caller", "varargs", "kwargs"})


def substitution(tree: nodes.Template) -> tuple[tuple[str, bool], ...] | None:
    """A parsed template that only puts variables into text, as (text or name, is_name)
    pieces; None for a template that does anything more."""
    pieces: list[tuple[str, bool]] = []
    for output in tree.body:
        if type(output) is not nodes.Output:
            return None
        for node in output.nodes:
            if type(node) is nodes.TemplateData:
                pieces.append((node.data, False))
            elif (
                type(node) is nodes.Name and node.ctx == "load" and node.name not in _SPECIAL_NAMES
            ):
                pieces.append((node.name, True))
            else:
                return None
    return tuple(pieces)


def substitute(pieces: tuple[tuple[str, bool], ...], context: Mapping[str, Any]) -> str | None:
    """What rendering the template of these ``substitution`` pieces gives, without Jinja:
    each name's value (a string, or an int, as ``_finalize`` prints it) in the text.

    None when Jinja must render it after all, to say what is wrong in its own words: a
    name that is missing or has another type, or a value that could reach a limit (the
    steps a placeholder costs are counted exactly as ``_finalize`` counts them).
    """
    parts: list[str] = []
    steps = 0
    for piece, is_name in pieces:
        if not is_name:
            parts.append(piece)
            continue
        if piece not in context:
            return None  # undefined, or one of Jinja's globals: Jinja's business
        value = context[piece]
        if type(value) is int and -_SMALL_INT < value < _SMALL_INT:
            value = str(value)
        elif type(value) is not str:
            return None
        if len(value) > MAX_SIZE:
            return None
        size = sys.getsizeof(value)
        if size >= BYTES_PER_STEP:
            steps += size // BYTES_PER_STEP
        parts.append(value)
    if steps and (steps > MAX_WORK or steps >= CLOCK_EVERY):
        return None  # over the budget, or the clock would be looked at
    text = "".join(parts)
    return None if len(text) > MAX_OUTPUT else text


_SMALL_INT = 10**18  # printed without Python's limit on digits ever coming near


def evaluate(expression: Callable[..., Any], context: Mapping[str, Any]) -> Any:
    """Evaluate a compiled expression (``compile_expression``) within a budget."""
    token = _BUDGET.set(Budget())  # budgeted(), without a context manager's cost
    try:
        return expression(_flat(context))
    finally:
        _BUDGET.reset(token)


# --- sizes ----------------------------------------------------------------------


def _too_long(what: str) -> LimitError:
    return LimitError(f"{what} would make a value longer than {MAX_SIZE:,} characters (the limit)")


def _check_size(what: str, size: int) -> None:
    if size > MAX_SIZE:
        raise _too_long(what)


def _check_width(what: str, width: object) -> None:
    if isinstance(width, int) and width > MAX_SIZE:
        raise LimitError(f"{what} width {width:,} is over the limit of {MAX_SIZE:,}")


def _check_bits(what: str, bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise LimitError(
            f"{what} would make a number of {bits:,} bits, over the limit of {MAX_INT_BITS:,}"
        )


def _scalar_size(value: object) -> int:
    if isinstance(value, (str, bytes)):
        return len(value) + 3  # quotes and a separator when inside a container
    if isinstance(value, int):
        return value.bit_length() // 3 + 2
    return 24  # floats, None, objects shown by name


def _items(value: object) -> Collection[object]:
    if isinstance(value, Namespace):
        value = value._Namespace__attrs  # type: ignore[attr-defined]
    if isinstance(value, dict):
        return [part for pair in value.items() for part in pair]
    return list(value)  # type: ignore[call-overload]


@dataclass
class Shape:
    """How a value would print: its length, how many items, how deep."""

    size: int = 0
    items: int = 0
    depth: int = 0


def shape(value: object, what: str = "a value") -> Shape:
    """Measure ``value`` without printing it, charged to the budget.

    Stops as soon as the printed length is over MAX_SIZE, so a list holding the
    same list ten times, ten levels deep, costs no more than a flat one. Level
    by level, so the pending items never outnumber the characters counted.
    """
    if not isinstance(value, _CONTAINERS):
        return Shape(len(value) if isinstance(value, (str, bytes)) else _scalar_size(value))
    size = items = depth = 0
    level: list[object] = [value]
    while level:
        if depth >= MAX_DEPTH:
            raise LimitError(f"{what}: values nested more than {MAX_DEPTH} deep (the limit)")
        depth, below = depth + 1, []
        for item in level:
            if isinstance(item, _CONTAINERS):
                parts = _items(item)
                size += 2 + 2 * len(parts)  # brackets and separators
                if size > MAX_SIZE:
                    raise _too_long(what)
                below += parts
            else:
                size += _scalar_size(item)
        items += len(level)
        if size > MAX_SIZE:
            raise _too_long(what)
        level = below
    _budget().spend(items + size // BYTES_PER_STEP)
    return Shape(size, items, depth - 1)


def measure(value: object, what: str = "a value") -> int:
    """About how many characters ``value`` prints as; over MAX_SIZE is an error."""
    size = shape(value, what).size
    _check_size(what, size)
    return size


def _sized(value: Any, what: str) -> Any:
    """A value a filter, method or operator built: checked and charged."""
    if isinstance(value, (str, bytes)):
        _check_size(what, len(value))
        _charge(value)
    elif isinstance(value, (*_CONTAINERS, int)):
        measure(value, what)
    return value


def _text(value: object, what: str) -> str:
    """``str(value)``, refusing before printing a container that would be too long."""
    if isinstance(value, str):
        text = value
    else:
        if isinstance(value, _CONTAINERS):
            measure(value, what)
        text = str(value)
    _check_size(what, len(text))
    return text


def _measure_all(values: Iterable[object], what: str) -> None:
    for value in values:
        if isinstance(value, _CONTAINERS):
            measure(value, what)


def _check_items(what: str, items: int) -> None:
    if items > MAX_ITEMS:
        raise LimitError(f"{what} would make more than {MAX_ITEMS:,} items (the limit)")


def _counted(items: Iterator[Any]) -> Iterator[Any]:
    budget = _budget()
    for item in items:
        budget.spend()
        yield item


def bounded_items(value: Any, what: str, *, text: bool = True) -> Any:
    """An iterable about to become a list: a string's length checked, a lazy one counted."""
    if text and isinstance(value, (str, bytes)):
        _check_items(what, len(value))
    if isinstance(value, Iterator):
        return _counted(value)
    return value


# --- operators ------------------------------------------------------------------


def _multiply(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int):
        _check_bits("'*'", left.bit_length() + right.bit_length())
        return _sized(left * right, "'*'")
    if isinstance(left, int) and isinstance(right, _SEQUENCES):
        left, right = right, left
    if isinstance(left, _SEQUENCES) and isinstance(right, int):
        size = measure(left, "'*'") * max(right, 0)
        _check_size("'*'", size)
        result = left * right
        _charge(result, size)
        return result
    return left * right


def _power(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        _check_bits("'**'", math.ceil(right * math.log2(abs(left))))
    return _sized(left**right, "'**'")


def _add(left: Any, right: Any) -> Any:
    if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        size = measure(left, "'+'") + measure(right, "'+'")
        _check_size("'+'", size)
        result = left + right
        _charge(result, size)
        return result
    return left + right


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, (str, bytes)):
        check_percent(left, right, "'%'")
        return _sized(left % right, "'%'")
    return left % right


BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "*": _multiply,
    "**": _power,
    "+": _add,
    "%": _modulo,
}


# --- printf-style (%) formatting --------------------------------------------------


def _skip(text: str, i: int, chars: str) -> int:
    while i < len(text) and text[i] in chars:
        i += 1
    return i


def _number(text: str, i: int) -> tuple[str, int]:
    if i < len(text) and text[i] == "*":
        return "*", i + 1
    end = i
    while end < len(text) and text[end] in "0123456789":  # ASCII only, as CPython reads
        end += 1
    return text[i:end], end


def percent_fields(fmt: str) -> Iterator[tuple[str | None, str, str, str]]:
    """(mapping key, width, precision, conversion) of each field, read as CPython does."""
    i = 0
    while (i := fmt.find("%", i) + 1) and i < len(fmt):
        key = None
        if fmt[i] == "(":  # keys may hold balanced parentheses: "%((a))s"
            depth, start = 1, i + 1
            while depth and i + 1 < len(fmt):
                i += 1
                depth += {"(": 1, ")": -1}.get(fmt[i], 0)
            key, i = fmt[start:i], i + 1
        width, i = _number(fmt, _skip(fmt, i, "-+ #0"))
        precision = ""
        if i < len(fmt) and fmt[i] == ".":
            precision, i = _number(fmt, i + 1)
        i = _skip(fmt, i, "hlL")
        conversion = fmt[i : i + 1]
        i += 1
        if conversion != "%":
            yield key, width, precision, conversion


def _field_number(digits: str, what: str) -> int:
    if len(digits) > len(str(MAX_SIZE)):
        raise LimitError(f"{what} width {digits} is over the limit of {MAX_SIZE:,}")
    number = int(digits or 0)
    _check_width(what, number)
    return number


def check_percent(fmt: str | bytes, args: object, what: str) -> None:
    """Refuse ``fmt % args`` before it runs when a width or the result is too big.

    Stops quietly where Python itself will raise (a missing argument or key).
    """
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    values = args if isinstance(args, tuple) else (args,)
    position, total = 0, len(text)
    for key, width, precision, conversion in percent_fields(text):
        numbers = []
        for number in (width, precision):
            if number == "*":
                if position >= len(values) or not isinstance(values[position], int):
                    return
                number, position = str(abs(values[position])), position + 1
            numbers.append(_field_number(number, what))
        if key is None:
            if position >= len(values):
                return
            value, position = values[position], position + 1
        else:
            try:
                value = args[key]  # type: ignore[index]
            except (LookupError, TypeError):
                return
        shown = 330 if isinstance(value, float) and conversion in "fF" else measure(value, what)
        total += sum(numbers) + shown
        _check_size(what, total)


# --- str.format ---------------------------------------------------------------------


_DIGITS = re.compile(r"\d+")


class _FormatBounds(SandboxedFormatter):
    """``str.format`` with widths and the total length checked field by field."""

    _built = 0

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self._built = len(format_string)
        return super().vformat(format_string, args, kwargs)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is not None and isinstance(value, _CONTAINERS):
            measure(value, "'format'")
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        for digits in _DIGITS.findall(format_spec):
            _field_number(digits, "'format'")
        if isinstance(value, _CONTAINERS):
            measure(value, "'format'")
        text = super().format_field(value, format_spec)
        self._built += len(text)
        _check_size("'format'", self._built)
        return text


class _Formatter(_FormatBounds):
    pass


class _EscapeFormatter(_FormatBounds, SandboxedEscapeFormatter):
    pass


# --- text that grows -------------------------------------------------------------------
# Filters and methods whose result can be several times longer than their input are
# checked before they run, so the big result is never built only to be refused.


def escaped_size(text: str) -> int:
    """The length of ``escape(text)``: & ' " become five characters, < > four."""
    wide = text.count("&") + text.count("'") + text.count('"')
    return len(text) + 4 * wide + 3 * (text.count("<") + text.count(">"))


def grown_size(value: Any, ascii_factor: int, worst: int, what: str) -> int:
    """At most how long ``value`` becomes when each character may turn into ``worst``."""
    if isinstance(value, (str, bytes)):
        return len(value) * (ascii_factor if value.isascii() else worst)
    return measure(value, what) * worst


def _growth(name: str, ascii_factor: int, worst: int) -> Callable[..., None]:
    what = f"'{name}'"

    def check(value: Any, *args: Any, **kwargs: Any) -> None:
        if name in ("e", "escape", "forceescape") and isinstance(value, str):
            _check_size(what, escaped_size(value))
        else:
            _check_size(what, grown_size(value, ascii_factor, worst, what))

    return check


# --- str, bytes and int methods -------------------------------------------------------

MethodCheck = Callable[[Any, tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], i: int, name: str, default: Any) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _width_method(name: str) -> MethodCheck:
    def check(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        _check_width(f"'{name}'", _arg(args, kwargs, 0, "width", 0))
        return args

    return check


def _expandtabs(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    tabsize = _arg(args, kwargs, 0, "tabsize", 8)
    if isinstance(tabsize, int):
        tab = "\t" if isinstance(owner, str) else b"\t"
        _check_size("'expandtabs'", len(owner) + owner.count(tab) * max(tabsize, 0))
    return args


def replaced_size(text: Any, old: Any, new: Any, count: Any) -> int:
    """The length of ``text.replace(old, new, count)``, worked out without doing it."""
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


def _replace(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    if len(args) >= 2 and all(isinstance(a, type(owner)) for a in args[:2]):
        count = _arg(args, kwargs, 2, "count", -1)
        _check_size("'replace'", replaced_size(owner, args[0], args[1], count))
    return args


def _join(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    if len(args) != 1:
        return args
    parts = list(bounded_items(args[0], "'join'"))  # read once: it may be a generator
    lengths = sum(len(p) for p in parts if isinstance(p, (str, bytes)))
    _check_size("'join'", lengths + len(owner) * max(len(parts) - 1, 0))
    return (parts,)


_LINE_BREAKS = ("\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def _split(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    sep, limit = _arg(args, kwargs, 0, "sep", None), _arg(args, kwargs, 1, "maxsplit", -1)
    if sep is None:
        items = len(owner) // 2 + 1  # runs of whitespace
    elif isinstance(sep, type(owner)) and sep:
        items = owner.count(sep) + 1
    else:
        return args  # Python refuses it
    if isinstance(limit, int) and limit >= 0:
        items = min(items, limit + 1)
    _check_items("'split'", items)
    return args


def _splitlines(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    _check_items("'splitlines'", line_count(owner))
    return args


def line_count(text: str | bytes) -> int:
    """At most how many lines ``splitlines`` would give, without splitting."""
    breaks = _LINE_BREAKS if isinstance(text, str) else (b"\n", b"\r")
    return sum(text.count(b) for b in breaks) + 1  # type: ignore[arg-type]


def _translate(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    table = args[0] if args else None
    if isinstance(owner, str) and isinstance(table, Mapping):
        longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
        _check_size("'translate'", len(owner) * longest)
    return args


def _to_bytes(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    _check_width("'to_bytes'", _arg(args, kwargs, 0, "length", 1))
    return args


TEXT_METHODS: dict[str, MethodCheck] = {
    **{name: _width_method(name) for name in ("center", "ljust", "rjust", "zfill")},
    "expandtabs": _expandtabs,
    "replace": _replace,
    "join": _join,
    "split": _split,
    "rsplit": _split,
    "splitlines": _splitlines,
    "translate": _translate,
}


def _growing_method(name: str, ascii_factor: int, worst: int) -> MethodCheck:
    def check(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        _check_size(f"'{name}'", grown_size(owner, ascii_factor, worst, f"'{name}'"))
        return args

    return check


# case changes: 'ﬃ'.upper() is 'FFI'; hex: two digits a byte and a separator;
# encode: UTF-32 takes four bytes a character, UTF-8 up to four
for _name in ("upper", "lower", "title", "capitalize", "casefold", "swapcase"):
    TEXT_METHODS[_name] = _growing_method(_name, 1, 3)


def _encode(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    encoding = str(_arg(args, kwargs, 0, "encoding", "utf-8"))
    wide = "16" in encoding or "32" in encoding
    _check_size("'encode'", grown_size(owner, 4 if wide else 1, 4, "'encode'"))
    return args


TEXT_METHODS["encode"] = _encode
TEXT_METHODS["hex"] = _growing_method("hex", 3, 3)


def _check_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Size parameters of built-in methods, checked before the method allocates."""
    if not isinstance(obj, types.BuiltinMethodType):
        return args
    owner, name = obj.__self__, obj.__name__
    if isinstance(owner, (str, bytes)) and name in TEXT_METHODS:
        return TEXT_METHODS[name](owner, args, kwargs)
    if isinstance(owner, int) and name == "to_bytes":
        return _to_bytes(owner, args, kwargs)
    return args


# --- filters ----------------------------------------------------------------------------

FilterCheck = Callable[..., None]


def _center(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> None:
    _check_width("'center'", width)


def _indent(s: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
    _check_width("'indent'", width)
    text = _text(s, "'indent'")
    step = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    lines = line_count(text)
    _check_items("'indent'", lines)  # it splits the text into a list of lines
    _check_size("'indent'", len(text) + (lines + 1) * max(step, 0))


def _split_into_words(name: str, per_char: float) -> FilterCheck:
    """Filters that split their text into a list of words (textwrap, regexes)."""

    def check(value: Any, *args: Any, **kwargs: Any) -> None:
        _check_items(f"'{name}'", int(len(_text(value, f"'{name}'")) * per_char) + 1)

    return check


def _format(value: Any, *args: Any, **kwargs: Any) -> None:
    check_percent(_text(value, "'format'"), kwargs or args, "'format'")


def _replace_filter(s: Any, old: Any = "", new: Any = "", count: Any = None, **_: Any) -> None:
    text = _text(s, "'replace'")
    size = replaced_size(text, _text(old, "'replace'"), _text(new, "'replace'"), count)
    _check_size("'replace'", size)


def _group_count(name: str) -> FilterCheck:
    def check(value: Any, count: Any = 0, *args: Any, **kwargs: Any) -> None:
        _check_width(f"'{name}'", count)

    return check


def _round(value: Any, precision: Any = 0, *args: Any, **kwargs: Any) -> None:
    # rounding an int, and method='ceil' or 'floor' for any number, computes 10**precision
    if isinstance(precision, int) and precision:
        _check_bits("'round'", math.ceil(abs(precision) * math.log2(10)))


def _tojson(value: Any, indent: Any = None, **_: Any) -> None:
    found = shape(value, "'tojson'")
    step = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
    # \uXXXX escapes at worst, plus one indented line per item when indenting
    size = 6 * found.size + (found.items * (1 + found.depth * max(step, 0)) if step else 0)
    _check_size("'tojson'", size)


def _both(first: FilterCheck, second: FilterCheck) -> FilterCheck:
    def check(*args: Any, **kwargs: Any) -> None:
        first(*args, **kwargs)
        second(*args, **kwargs)

    return check


FILTER_CHECKS: dict[str, FilterCheck] = {
    "center": _center,
    "indent": _indent,
    "format": _format,
    "replace": _replace_filter,
    "batch": _group_count("batch"),
    "slice": _group_count("slice"),
    "tojson": _tojson,
    "round": _round,
    "wordwrap": _split_into_words("wordwrap", 1),  # chunks: words and the spaces between
    "title": _both(_split_into_words("title", 0.5), _growth("title", 1, 3)),
    "striptags": _split_into_words("striptags", 0.5),
    "wordcount": _split_into_words("wordcount", 0.5),
    **{name: _growth(name, 6, 6) for name in ("e", "escape", "forceescape", "xmlattr")},
    **{name: _growth(name, 1, 3) for name in ("upper", "lower", "capitalize")},
    "urlencode": _growth("urlencode", 3, 12),  # %XX for each byte of UTF-8
}


@pass_eval_context
def join_filter(
    eval_ctx: Any, value: Iterable[Any], d: Any = "", attribute: str | int | None = None
) -> str:
    """``join`` with the total length checked before joining."""
    if attribute is not None:
        value = map(make_attrgetter(eval_ctx.environment, attribute), value)
    separator = _text(d, "'join'")
    parts = [_text(item, "'join'") for item in value]
    _check_size("'join'", sum(map(len, parts)) + len(separator) * max(len(parts) - 1, 0))
    return separator.join(parts)


@pass_environment
def sum_filter(
    environment: Any, iterable: Iterable[Any], attribute: str | int | None = None, start: Any = 0
) -> Any:
    """``sum`` adding with the bounded ``+`` (lists and strings could grow without end)."""
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    total = start
    for item in iterable:
        _budget().spend()
        total = _add(total, item)
    return total


@pass_environment
def wordwrap_filter(
    environment: Any,
    s: Any,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    """``wordwrap``, checking the size a long ``wrapstring`` would give before using it."""
    wrap = environment.newline_sequence if wrapstring is None else _text(wrapstring, "'wordwrap'")
    # wrapped lines hold no "\n" (Jinja splits paragraphs first), so wrapping with
    # "\n" and replacing it gives the same text, and tells its size beforehand
    text = _text(s, "'wordwrap'")
    if break_long_words and isinstance(width, int):
        # textwrap cuts a long word by slicing what is left of it again and again
        longest = max(map(len, text.split()), default=0)
        _budget().spend(longest * len(text) // max(width, 1) // COPIES_PER_STEP)
    plain = do_wordwrap(environment, text, width, break_long_words, "\n", break_on_hyphens)
    breaks = plain.count("\n")
    _check_size("'wordwrap'", len(plain) + breaks * (len(wrap) - 1))
    return plain if wrap == "\n" else plain.replace("\n", wrap)


REPLACED_FILTERS: dict[str, Callable[..., Any]] = {
    "join": join_filter,
    "sum": sum_filter,
    "wordwrap": wordwrap_filter,
}


def bounded_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """``original`` counted as a step, its size parameters and its result checked."""
    skip = 0 if _PassArg.from_obj(original) is None else 1
    check = FILTER_CHECKS.get(name)
    what = f"'{name}'"
    measures_input = name in TEXT_FILTERS
    makes_items = name in ITEM_FILTERS or name == "reverse"

    @functools.wraps(original)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _budget().spend()
        if measures_input and len(args) > skip:
            _measure_all(args[skip : skip + 1], what)
        if makes_items and len(args) > skip:  # reverse turns a string around, not into a list
            value = bounded_items(args[skip], what, text=name != "reverse")
            args = (*args[:skip], value, *args[skip + 1 :])
        if check is not None and len(args) > skip:
            check(*args[skip:], **kwargs)
        return _sized(original(*args, **kwargs), what)

    return bounded


# --- the syntax tree: loops counted, ~ and literals checked ---------------------------------


def _helper(name: str, node: nodes.Node, *args: nodes.Expr) -> nodes.Call:
    call = nodes.Call(nodes.EnvironmentAttribute(name), list(args), [], None, None)
    return call.set_lineno(node.lineno)  # type: ignore[no-any-return]


class _Bounder(NodeTransformer):
    """Rewrites a parsed template before code generation (see BoundedEnvironment)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = self.generic_visit(node)
        # each iteration runs the body once and outputs its literal text once
        body = [*node.body, *([node.test] if node.test else [])]
        inner = [n for top in body for n in (top, *top.find_all(nodes.Node))]
        text = sum(len(n.data) for n in inner if isinstance(n, nodes.TemplateData))
        cost = nodes.Const(1 + len(inner) + text // BYTES_PER_STEP)
        node.iter = _helper("bounded_loop", node, node.iter, cost)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)
        return _helper("bounded_concat", node, *node.nodes)

    def _literal(self, node: nodes.Expr) -> nodes.Node:
        node = self.generic_visit(node)
        return _helper("bounded_literal", node, node)

    visit_List = visit_Dict = _literal

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        return self._literal(node) if node.ctx == "load" else self.generic_visit(node)


def _helper_method(function: Callable[..., Any]) -> Callable[..., Any]:
    function._bounds_helper = True  # type: ignore[attr-defined]
    return function


class BoundedTemplate(jinja2.Template):
    def render(self, *args: Any, **kwargs: Any) -> str:
        return render(self, dict(*args, **kwargs))


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with the limits of this module; ``filters`` adds project filters."""

    template_class = BoundedTemplate

    intercepted_binops = frozenset(BINOPS)  # also stops Jinja folding them at compile time

    def __init__(self, filters: Mapping[str, Callable[..., Any]] | None = None, **options: Any):
        super().__init__(finalize=self._finalize, **options)
        self.globals.pop("lipsum", None)  # it writes as many paragraphs as asked for
        for name in REMOVED_FILTERS:
            self.filters.pop(name, None)
        self.filters.update(REPLACED_FILTERS)
        self.filters.update(filters or {})
        self.filters = {name: bounded_filter(name, f) for name, f in self.filters.items()}

    def _generate(self, source: nodes.Template, *args: Any, **kwargs: Any) -> str:
        # compile_expression does not go through _parse, so rewrite here
        tree = _Bounder().visit(source)
        tree.set_environment(self)
        return super()._generate(tree, *args, **kwargs)

    @staticmethod
    def _finalize(value: Any) -> str:
        text = value if type(value) is str else _text(value, "a placeholder")
        _check_size("a placeholder", len(text))
        _charge(text)
        return text

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _budget().spend()
        return BINOPS[operator](left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(__obj, types.MethodType) and hasattr(__obj.__func__, "_bounds_helper"):
            return __obj(*args)  # without the _loop_vars Jinja adds inside loops
        _budget().spend(CALL_STEPS)
        if isinstance(__obj, LoopContext) and args:  # loop(...) in a recursive loop
            args = (__self.bounded_loop(args[0], CALL_STEPS), *args[1:])
        args = _check_method(__obj, args, kwargs)
        given = [v for k, v in kwargs.items() if k not in _JINJA_KWARGS]
        _measure_all([*args, *given], "a call")
        result = super().call(__context, __obj, *args, **kwargs)
        return _sized(result, f"'{getattr(__obj, '__name__', 'a call')}'")

    def getitem(self, obj: Any, argument: Any) -> Any:
        value = super().getitem(obj, argument)
        if isinstance(argument, slice) and isinstance(value, _SEQUENCES):
            _charge(value)
        return value

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # the sandbox's own wrapper, with a formatter that checks widths and sizes
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)):
            return None
        if value.__name__ not in ("format", "format_map") or not isinstance(value.__self__, str):
            return None
        template: str = value.__self__
        if isinstance(template, Markup):
            formatter: SandboxedFormatter = _EscapeFormatter(self, escape=template.escape)
        else:
            formatter = _Formatter(self)
        is_map = value.__name__ == "format_map"

        def bounded_format(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                args, kwargs = (), args[0]
            return type(template)(formatter.vformat(template, args, kwargs))

        return functools.update_wrapper(bounded_format, value)

    @_helper_method
    def bounded_loop(self, iterable: Iterable[Any], cost: int) -> Iterator[Any]:
        budget = _budget()
        for item in iterable:
            budget.spend(cost)
            yield item

    @_helper_method
    def bounded_concat(self, *parts: Any) -> str:
        texts = [_text(part, "'~'") for part in parts]
        size = sum(map(len, texts))
        _check_size("'~'", size)
        result = "".join(texts)
        _charge(result)
        return result

    @_helper_method
    def bounded_literal(self, value: Any) -> Any:
        measure(value, "a literal")
        return value
