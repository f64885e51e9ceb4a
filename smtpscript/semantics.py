"""Phase 2 of validation: what the JSON Schema cannot express.

Reply-code and status patterns, regexes that compile, templates that parse,
which keys go with which action, and variables used but never defined (or
used before the step that captures them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from smtpscript import regexes, templating
from smtpscript.actions import ACTIONS
from smtpscript.errors import Problem, did_you_mean
from smtpscript.patterns import PatternError, parse_code_pattern, parse_status_pattern
from smtpscript.yamlsource import Document, JsonPath, format_path

REPLY_KEYS = ("expect", "status", "match", "capture")
TLS_ACTIONS = tuple(name for name, spec in ACTIONS.items() if spec.tls_expectations)
FRAGMENT_KEYS = ("smtpscript", "fragment", "description", "vars", "steps")


@dataclass(frozen=True)
class IncludeInfo:
    """What an included fragment means to the steps around it."""

    captures: frozenset[str]  # variables it sets, usable after the include
    needs: frozenset[str]  # variables it reads and does not define itself


IncludeLookup = Callable[[str], "IncludeInfo | None"]  # None: cannot be read


def semantic_problems(
    doc: Document,
    extra_names: Iterable[str],
    include_lookup: IncludeLookup | None = None,
    names_used: set[str] | None = None,
) -> list[Problem]:
    """Every phase-2 problem; ``names_used`` (when given) receives the variables read."""
    checker = _check(doc, include_lookup)
    if names_used is not None:
        names_used.update(name for name, *_ in checker.used)
    if doc.data.get("fragment") is True:
        return checker.problems
    variables = doc.data.get("vars")
    defined = set(variables) if isinstance(variables, dict) else set()
    defined |= templating.BUILTIN_NAMES
    for name, path, known, via in checker.used:
        if known or name in defined or name in extra_names:
            continue
        if name in checker.captured:
            where = format_path(checker.captured[name])
            message = (
                f"variable '{name}' is used before it is captured (by {where}): "
                "a capture is set only once its step has run"
            )
        else:
            message = _undefined_message(name, defined | set(checker.captured), via)
        checker.problems.append(doc.problem(path, message))
    return checker.problems


def fragment_interface(doc: Document, include_lookup: IncludeLookup | None) -> IncludeInfo:
    """The variables a fragment captures, and those it needs from whoever includes it."""
    checker = _check(doc, include_lookup)
    variables = doc.data.get("vars")
    own = set(variables) if isinstance(variables, dict) else set()
    own |= templating.BUILTIN_NAMES
    needs = {name for name, _, known, _ in checker.used if not known and name not in own}
    return IncludeInfo(frozenset(checker.captured), frozenset(needs))


def _check(doc: Document, include_lookup: IncludeLookup | None) -> _StepChecker:
    data = doc.data
    problems: list[Problem] = []
    is_fragment = data.get("fragment") is True
    if is_fragment:
        allowed = ", ".join(FRAGMENT_KEYS[:-1]) + f" and {FRAGMENT_KEYS[-1]}"
        problems += [
            doc.problem((key,), f"a fragment takes only {allowed}, not '{key}'", key=True)
            for key in data
            if key not in FRAGMENT_KEYS
        ]
    elif "title" not in data:
        problems.append(doc.problem((), "missing required key 'title'"))
    checker = _StepChecker(doc, problems, include_lookup)
    # in the order the runner evaluates them: captures exist only after their step
    if isinstance(data.get("when"), str):
        checker.expression(data["when"], ("when",))
    variables = data.get("vars")
    if isinstance(variables, dict):
        for name, value in variables.items():
            if isinstance(value, str):
                checker.template(value, ("vars", name))
    target = data.get("target")
    if isinstance(target, dict):
        # target: takes the same connection keys as a connect step, checked the same way
        connect = ACTIONS["connect"].check
        if connect is not None:
            connect(target, ("target",), checker)
    steps = data.get("steps")
    if isinstance(steps, list):
        for i, step in enumerate(steps):
            checker.step(step, ("steps", i))
    return checker


def _undefined_message(name: str, defined: set[str], via: str | None = None) -> str:
    hint = did_you_mean(name, sorted(defined))
    if via:
        return (
            f"undefined variable '{name}'{hint}, read by the included {via}: pass it under "
            f"with:, define it under vars:, in the library's smtpscript.yaml, or pass "
            f"--var {name}=..."
        )
    return (
        f"undefined variable '{name}'{hint}: define it under vars:, in the library's "
        f"smtpscript.yaml, or pass --var {name}=..."
    )


class _StepChecker:
    """Phase-2 checks of one document's steps; collects names used and captured.

    ``used`` holds (name, path, known): known is true when a capture (or an
    include whose captures cannot be known) already stood before the use.
    """

    def __init__(
        self,
        doc: Document,
        problems: list[Problem],
        include_lookup: IncludeLookup | None = None,
    ):
        self.doc = doc
        self.problems = problems
        self.include_lookup = include_lookup
        # (name, where, known: defined by then, via: the fragment that reads it)
        self.used: list[tuple[str, JsonPath, bool, str | None]] = []
        self.captured: dict[str, JsonPath] = {}  # name -> the capture that sets it
        self.available: set[str] = set()  # captured by the steps checked so far
        self.anything = False  # after an include we could not look into

    def add(self, path: JsonPath, message: str, *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, key=key))

    def step(self, step: object, path: JsonPath) -> None:
        self._step(step, path)
        self.available |= {n for n, where in self.captured.items() if where[: len(path)] == path}

    def _step(self, step: object, path: JsonPath) -> None:
        if not isinstance(step, dict):
            return
        actions = [k for k in step if k in ACTIONS]
        action = actions[0] if len(actions) == 1 else None
        self._reply_keys(step, path, action)
        self._action_values(step, path, action)
        if isinstance(step.get("when"), str):
            self.expression(step["when"], (*path, "when"))
        repeat = step.get("repeat")
        if isinstance(repeat, str):
            if templating.is_template(repeat):
                self.template(repeat, (*path, "repeat"))
            else:
                self.add(
                    (*path, "repeat"),
                    f"{repeat!r} is not a number: use a whole number, or a template "
                    "giving one ('{{ count }}')",
                )
        if "with" in step and action != "include":
            self.add((*path, "with"), "'with' only goes with an include step", key=True)
        if "expect_each" in step and not (action and ACTIONS[action].per_recipient):
            ends = " or ".join(name for name, spec in ACTIONS.items() if spec.per_recipient)
            self.add(
                (*path, "expect_each"),
                f"'expect_each' judges the per-recipient replies of LMTP: it goes with a {ends} "
                "step",
                key=True,
            )
        if "tls" in step and action not in TLS_ACTIONS:
            steps = " or ".join(TLS_ACTIONS)
            self.add((*path, "tls"), f"a 'tls' expectation needs a {steps} step", key=True)
        tls = step.get("tls")
        if isinstance(tls, dict) and isinstance(tls.get("days_left"), str):
            self.template(tls["days_left"], (*path, "tls", "days_left"))
        if isinstance(tls, dict) and tls.get("established") is False and action != "starttls":
            self.add(
                (*path, "tls", "established"),
                "'established: false' is judged on a starttls step (a refused implicit-TLS "
                "connect is an error)",
            )
        if action == "pipeline" and isinstance(step.get("pipeline"), list):
            for i, inner in enumerate(step["pipeline"]):
                self._step(inner, (*path, "pipeline", i))
        if action == "include" and isinstance(step.get("include"), str):
            target = step["include"]
            info = self.include_lookup(target) if self.include_lookup else None
            if info is None:
                self.anything = True
            else:
                given = step.get("with")
                needs = info.needs - set(given if isinstance(given, dict) else ())
                self._use(needs, (*path, "include"), via=target)
                for name in info.captures:
                    self.captured.setdefault(name, (*path, "include"))

    def _reply_keys(self, step: dict[str, Any], path: JsonPath, action: str | None) -> None:
        if action is not None and ACTIONS[action].default_expect is None:
            for key in REPLY_KEYS:
                if key in step:
                    self.add(
                        (*path, key),
                        f"a {action} step reads no reply of its own: '{key}' does not apply here",
                        key=True,
                    )
        codes = None
        if "expect" in step:
            try:
                codes = parse_code_pattern(step["expect"])
            except PatternError as exc:
                self.add(self._bad_item(step["expect"], (*path, "expect")), str(exc))
        if "status" in step:
            try:
                parse_status_pattern(step["status"])
            except PatternError as exc:
                self.add((*path, "status"), str(exc))
        if codes is not None and codes.alternatives == ("closed",):
            for key in ("status", "match", "capture"):
                if key in step:
                    self.add(
                        (*path, key),
                        f"'{key}' needs a reply, but 'expect: closed' expects none",
                        key=True,
                    )
        if isinstance(step.get("match"), str):
            self.regex(step["match"], (*path, "match"))
        if isinstance(step.get("capture"), dict):
            for name, pattern in step["capture"].items():
                self.captured.setdefault(name, (*path, "capture", name))
                if isinstance(pattern, str):
                    self.regex(pattern, (*path, "capture", name))

    @staticmethod
    def _bad_item(value: object, path: JsonPath) -> JsonPath:
        if isinstance(value, list):
            for i, item in enumerate(value):
                try:
                    parse_code_pattern(item)
                except PatternError:
                    return (*path, i)
        return path

    def _action_values(self, step: dict[str, Any], path: JsonPath, action: str | None) -> None:
        if action is None:
            return
        check = ACTIONS[action].check
        if check is not None:
            check(step[action], (*path, action), self)
        if action == "include" and isinstance(step.get("with"), dict):
            for name, inner in step["with"].items():
                if isinstance(inner, str):
                    self.template(inner, (*path, "with", name))

    def is_block(self, path: JsonPath) -> bool:
        return path in self.doc.block_marks

    def _use(self, names: Iterable[str], path: JsonPath, via: str | None = None) -> None:
        known = self.anything
        self.used += [(n, path, known or n in self.available, via) for n in sorted(names)]

    def template(self, source: str, path: JsonPath) -> None:
        if not templating.is_template(source):
            return
        error, names = _analyse_template(source)
        if error is None:
            self._use(names, path)
            return
        line_in_text, message = error
        if path in self.doc.block_marks:  # key: | text: lines map one to one
            line, column = self.doc.block_marks[path]
            line += line_in_text - 1
        else:
            line, column = self.doc.mark(path)
            if line_in_text > 1:
                message += f" (on line {line_in_text} of the text)"
        self.problems.append(Problem(self.doc.file, line, column, format_path(path), message))

    def expression(self, source: str, path: JsonPath) -> None:
        error, names = _analyse_expression(source)
        if error:
            self.add(path, error)
        else:
            self._use(names, path)

    def regex(self, source: str, path: JsonPath) -> None:
        problem = _regex_problem(source)
        if problem:
            self.add(path, f"bad regular expression {source!r}: {problem}")


@lru_cache(maxsize=4096)
def _regex_problem(source: str) -> str | None:
    try:
        regexes.check(source)
    except regexes.PatternProblem as exc:
        return str(exc)
    return None


# --- templates ----------------------------------------------------------------
# Most templates are a few ``{{ name }}`` placeholders in text: those are read
# with a regular expression; anything else goes to Jinja's parser. Results are
# cached: a library repeats the same templates in many files.

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)(?:\.[A-Za-z_][A-Za-z0-9_]*)*\s*\}\}")
# words Jinja reads as constants or operators, not as variable names
_JINJA_WORDS = frozenset(
    {"true", "false", "none", "True", "False", "None", "not", "and", "or", "in", "is", "if"}
    | {"else"}
)


@lru_cache(maxsize=8192)
def template_problem(source: str) -> str | None:
    """Why a template (a library or vars-file value) does not parse, or None."""
    error, _ = _analyse_template(source)
    return error[1] if error else None


def _analyse_template(source: str) -> tuple[tuple[int, str] | None, frozenset[str]]:
    """(error as (line in the text, message) or None, top-level names read)."""
    rest = _PLACEHOLDER.sub("", source)
    if "{" not in rest and "}" not in rest:
        names = frozenset(_PLACEHOLDER.findall(source))
        if not names & _JINJA_WORDS:
            return None, names
    import jinja2
    from jinja2 import meta

    try:
        tree = templating.environment().parse(source)
    except jinja2.TemplateSyntaxError as exc:
        message = _jinja_message(exc.message, source)
        return (exc.lineno, f"template error: {message}"), frozenset()
    # Jinja looks filters and tests up only when compiling, which validation never does
    unknown = templating.unknown_name(tree)
    if unknown:
        return (unknown[0], f"template error: {unknown[1]}"), frozenset()
    return None, frozenset(meta.find_undeclared_variables(tree))


@lru_cache(maxsize=4096)
def _analyse_expression(source: str) -> tuple[str | None, frozenset[str]]:
    import jinja2
    from jinja2 import meta

    env = templating.environment()
    unknown: str | None = None
    try:
        try:
            env.compile_expression(source)
        except jinja2.TemplateAssertionError as exc:  # an unknown filter or test
            unknown = _jinja_message(exc.message)
        tree = env.parse("{{ " + source + " }}")
    except jinja2.TemplateSyntaxError as exc:
        message = _jinja_message(exc.message).replace("end of template", "end of expression")
        return f"expression error: {message}", frozenset()
    found = templating.unknown_name(tree)
    if found or unknown:
        return f"expression error: {found[1] if found else unknown}", frozenset()
    names = frozenset(meta.find_undeclared_variables(tree))
    misplaced = sorted(names & _JINJA_WORDS)
    if misplaced:
        return f"expression error: '{misplaced[0]}' needs a value on each side", frozenset()
    return None, names


def _jinja_message(message: str | None, source: str = "") -> str:
    """Jinja's parser messages, shortened to what a scenario author needs."""
    text = (message or "invalid template").strip()
    if "end of template" in text:
        for opener, closer in (("{{", "}}"), ("{%", "%}"), ("{#", "#}")):
            if source.count(opener) > source.count(closer):
                return f"'{opener}' is never closed (add '{closer}')"
    block = re.search(r"innermost block that needs to be closed is '(\w+)'", text)
    if block:
        name = block.group(1)
        return f"'{{% {name} %}}' is never closed (add '{{% end{name} %}}')"
    if text == "unexpected '}'":
        return "unexpected '}': a placeholder is written {{ name }}"
    first = text.split(". ")[0].rstrip(".")
    return first[:1].lower() + first[1:]
