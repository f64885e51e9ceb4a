"""Two-phase validation: JSON Schema, then checks the schema cannot express.

Phase 1 translates jsonschema's errors into plain sentences placed on the
offending key or value. Phase 2 checks reply-code and status patterns,
regexes, templates, the action/key combinations and undefined variables.
Both phases collect every problem; nothing stops at the first.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from smtpscript import templating
from smtpscript.errors import Problem
from smtpscript.model import ACTION_NAMES
from smtpscript.patterns import PatternError, parse_code_pattern, parse_status_pattern
from smtpscript.yamlsource import Document, JsonPath, format_path

REPLY_KEYS = ("expect", "status", "match", "capture")
NO_REPLY_ACTIONS = ("sleep", "include", "pipeline")
TLS_ACTIONS = ("connect", "starttls")
TEMPLATE_ACTIONS = ("send", "raw", "ehlo", "helo", "lhlo", "include")
FRAGMENT_KEYS = ("smtpscript", "fragment", "description", "vars", "steps")
_TYPE_NAMES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "empty (null)",
}


# --- schema -------------------------------------------------------------------


def schema_path(name: str) -> Path:
    """Where a shipped schema lives: in the installed package, else in the checkout."""
    filename = f"{name}.schema.json"
    try:
        candidate = resources.files("smtpscript.schemas") / filename
        if candidate.is_file():
            return Path(str(candidate))
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "schemas" / filename


@lru_cache(maxsize=4)
def load_schema(name: str) -> dict[str, Any]:
    return json.loads(schema_path(name).read_text(encoding="utf-8"))


@lru_cache(maxsize=4)
def _validator(name: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(name))


# --- fast path ------------------------------------------------------------------
# jsonschema explains errors well but walks a schema slowly (a new validator per
# subschema). Almost every file is valid, so we first ask a predicate compiled
# from the same schema; only a file it rejects goes through jsonschema for the
# explanations. The compiler knows exactly the keywords our schemas use and
# gives up (returns None: jsonschema for every file) on any other.

Check = Callable[[Any], bool]
IncludeCaptures = Callable[[str], "frozenset[str] | None"]
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description", "examples"})


class _Unsupported(Exception):
    pass


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": _is_number,
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
}


def _json_equal(one: object, two: object) -> bool:
    """JSON equality as jsonschema sees it: true is not 1 (only scalars occur here)."""
    if isinstance(one, bool) or isinstance(two, bool):
        return one is two
    if isinstance(one, list | dict) or isinstance(two, list | dict):
        raise _Unsupported("const/enum of a container")
    return one == two


@lru_cache(maxsize=4)
def _fast_check(name: str) -> Check | None:
    root = load_schema(name)
    compiled: dict[str, Check] = {}

    def ref(target: str) -> Check:
        if not target.startswith("#/$defs/"):
            raise _Unsupported(target)
        key = target.removeprefix("#/$defs/")
        if key not in root.get("$defs", {}):
            raise _Unsupported(target)

        def check(value: Any) -> bool:  # late-bound: definitions may refer to each other
            return compiled[key](value)

        return check

    def compile_(schema: dict[str, Any]) -> Check:
        checks: list[Check] = []
        for keyword, arg in schema.items():
            if keyword in _ANNOTATIONS or (keyword == "additionalProperties" and arg is False):
                continue  # additionalProperties: false is checked with properties
            checks.append(keyword_check(keyword, arg, schema))
        if schema.get("additionalProperties") is False and "properties" not in schema:
            checks.append(keyword_check("properties", {}, schema))
        if len(checks) == 1:
            return checks[0]

        def check_all(value: Any) -> bool:
            for check in checks:  # noqa: SIM110 (a plain loop is faster than all(genexpr))
                if not check(value):
                    return False
            return True

        return check_all

    def keyword_check(keyword: str, arg: Any, schema: dict[str, Any]) -> Check:
        if keyword == "type":
            kinds = [_TYPES[t] for t in (arg if isinstance(arg, list) else [arg])]
            if len(kinds) == 1:
                return kinds[0]
            return lambda v: any(kind(v) for kind in kinds)
        if keyword == "properties":
            if "patternProperties" in schema:
                raise _Unsupported(keyword)
            subs = {key: compile_(sub) for key, sub in arg.items()}
            extra = schema.get("additionalProperties", True)
            extra_check = None if extra in (True, False) else compile_(extra)
            closed = extra is False

            def properties(value: Any) -> bool:
                if not isinstance(value, dict):
                    return True
                for key, item in value.items():
                    sub = subs.get(key)
                    if sub is not None:
                        if not sub(item):
                            return False
                    elif closed or (extra_check is not None and not extra_check(item)):
                        return False
                return True

            return properties
        if keyword == "additionalProperties":  # a schema, and no "properties" beside it
            if "patternProperties" in schema:
                raise _Unsupported(keyword)
            if "properties" in schema:
                return lambda v: True  # checked with properties
            sub = compile_(arg)
            return lambda v: not isinstance(v, dict) or all(sub(item) for item in v.values())
        if keyword == "required":
            need = tuple(arg)
            return lambda v: not isinstance(v, dict) or all(k in v for k in need)
        if keyword == "propertyNames":
            sub = compile_(arg)
            return lambda v: not isinstance(v, dict) or all(sub(k) for k in v)
        if keyword == "items":
            if "prefixItems" in schema:
                raise _Unsupported(keyword)
            sub = compile_(arg)
            return lambda v: not isinstance(v, list) or all(sub(item) for item in v)
        if keyword == "oneOf" and all(list(sub) == ["required"] for sub in arg):
            # "exactly one of these keys" (a step's action): count them in one go
            names = frozenset(key for sub in arg for key in sub["required"])
            if len(names) != sum(len(sub["required"]) for sub in arg) or len(names) != len(arg):
                raise _Unsupported(keyword)
            return lambda v: isinstance(v, dict) and len(names.intersection(v)) == 1
        if keyword in ("anyOf", "oneOf"):
            subs = [compile_(sub) for sub in arg]
            if keyword == "anyOf":
                return lambda v: any(sub(v) for sub in subs)
            return lambda v: sum(1 for sub in subs if sub(v)) == 1
        if keyword == "$ref":
            return ref(arg)
        if keyword == "enum":
            options = list(arg)
            return lambda v: any(_json_equal(v, option) for option in options)
        if keyword == "const":
            _json_equal(arg, arg)  # refuses containers now, not at run time
            return lambda v: _json_equal(v, arg)
        if keyword == "pattern":
            regex = re.compile(arg)
            return lambda v: not isinstance(v, str) or regex.search(v) is not None
        if keyword == "minLength":
            return lambda v: not isinstance(v, str) or len(v) >= arg
        if keyword == "minItems":
            return lambda v: not isinstance(v, list) or len(v) >= arg
        if keyword == "minimum":
            return lambda v: not _is_number(v) or v >= arg
        if keyword == "maximum":
            return lambda v: not _is_number(v) or v <= arg
        if keyword == "exclusiveMinimum":
            return lambda v: not _is_number(v) or v > arg
        raise _Unsupported(keyword)

    try:
        for key, sub in root.get("$defs", {}).items():
            compiled[key] = compile_(sub)
        return compile_(root)
    except (_Unsupported, AttributeError, KeyError, TypeError, re.error):
        return None


def validate(
    doc: Document,
    extra_names: Iterable[str] = (),
    include_captures: IncludeCaptures | None = None,
) -> list[Problem]:
    """Every problem of a scenario or fragment document, in file order.

    ``extra_names``: variables defined elsewhere (library config, --var).
    ``include_captures``: given an include step's path, the variables the fragment
    captures (None when it cannot be read), so that later steps may use them.
    """
    names = extra_names if isinstance(extra_names, AbstractSet) else frozenset(extra_names)
    if not isinstance(doc.data, dict):
        kind = _TYPE_NAMES.get(type(doc.data), type(doc.data).__name__)
        return [
            doc.problem(
                (),
                f"the top level must be a mapping (smtpscript:, title:, steps:, ...), not {kind}",
            )
        ]
    problems = list(doc.problems)
    problems += _schema_problems(doc)
    problems += _semantic_problems(doc, names, include_captures)
    return sorted(set(problems))


def _schema_problems(doc: Document) -> Iterator[Problem]:
    fast = _fast_check("scenario")
    if fast is not None and fast(doc.data):
        return
    for error in _validator("scenario").iter_errors(doc.data):
        path = tuple(error.absolute_path)
        if _is_pattern_path(path):
            continue  # phase 2 explains patterns better
        yield from _translate(doc, error, path)


def _is_pattern_path(path: JsonPath) -> bool:
    """steps[i].expect, steps[i].expect[j], steps[i].status (also inside pipelines)."""
    if len(path) >= 2 and path[-1] in ("expect", "status") and isinstance(path[-2], int):
        return True
    return len(path) >= 3 and path[-2] == "expect" and isinstance(path[-3], int)


def _translate(doc: Document, error: Any, path: JsonPath) -> Iterator[Problem]:
    kind, instance, schema = error.validator, error.instance, error.schema
    if kind == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        pipelined = _is_pipelined_schema(schema)
        for key in sorted(set(instance) - set(known)):
            if pipelined and key in ACTION_NAMES:
                message = f"a pipeline holds only send steps: '{key}' cannot be pipelined"
            else:
                message = f"unknown key '{key}'{_did_you_mean(key, known)}"
            yield doc.problem((*path, key), message, key=True)
    elif kind == "required":
        if _is_pipelined_schema(schema) and any(k in ACTION_NAMES for k in instance):
            return  # the other action is reported as not pipelinable
        for key in error.validator_value:
            if key not in instance:
                yield doc.problem(path, _missing_message(key, path))
    elif kind == "oneOf" and _is_step_schema(schema):
        message = _action_message(instance) if isinstance(instance, dict) else None
        if message:
            yield doc.problem(path, message)
    elif kind in ("anyOf", "oneOf") and error.context:
        for best in _best_alternative_errors(error):
            yield from _translate(doc, best, tuple(best.absolute_path))
    elif kind == "pattern" and "propertyNames" in list(error.absolute_schema_path)[-2:]:
        yield doc.problem((*path, instance), _name_message(instance), key=True)
    else:
        yield doc.problem(path, _simple_message(error, path), key=kind == "propertyNames")


def _best_alternative_errors(error: Any) -> list[Any]:
    """Explain an anyOf failure by the alternative whose type fits the value (all its
    errors), else by jsonschema's best guess."""
    from jsonschema.exceptions import best_match

    by_branch: dict[int, list[Any]] = {}
    for sub in error.context:
        by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [
        errors
        for errors in by_branch.values()
        if not any(e.validator == "type" and not e.relative_path for e in errors)
    ]
    if len(fitting) == 1:
        return fitting[0]
    return [best_match(error.context)]


def _is_step_schema(schema: dict[str, Any]) -> bool:
    return "send" in schema.get("properties", {}) and "include" in schema["properties"]


def _is_pipelined_schema(schema: dict[str, Any]) -> bool:
    return schema.get("required") == ["send"] and "include" not in schema.get("properties", {})


def _missing_message(key: str, path: JsonPath) -> str:
    if path == () and key == "smtpscript":
        return "missing required key 'smtpscript' (the format version: add 'smtpscript: 1')"
    return f"missing required key '{key}'"


def _name_message(name: str) -> str:
    fixed = re.sub(r"\W", "_", name)
    if fixed[:1].isdigit():
        fixed = "_" + fixed
    hint = f" (did you mean '{fixed}'?)" if fixed != name else ""
    return (
        f"'{name}' is not a valid variable name: use letters, digits and _, "
        f"not starting with a digit{hint}"
    )


def _action_message(step: dict[str, Any]) -> str | None:
    found = [key for key in step if key in ACTION_NAMES]
    if not found:
        unknown = [k for k in step if k not in _step_keys()]
        if any(_did_you_mean(k, ACTION_NAMES) for k in unknown):
            return None  # the unknown key's own "did you mean" says it all
        return f"a step needs one action ({', '.join(ACTION_NAMES)}); found none"
    listed = " and ".join(f"'{k}'" for k in found)
    return f"a step takes exactly one action, found {listed}: split it into separate steps"


@lru_cache(maxsize=1)
def _step_keys() -> frozenset[str]:
    return frozenset(load_schema("scenario")["$defs"]["step"]["properties"])


def _simple_message(error: Any, path: JsonPath) -> str:
    kind, value, instance = error.validator, error.validator_value, error.instance
    if kind == "type":
        wanted = value if isinstance(value, list) else [value]
        words = " or ".join(_type_word(w) for w in wanted)
        if len(path) == 2 and path[0] == "steps" and isinstance(path[1], int):
            return f"a step must be a mapping such as 'send: QUIT', not {_kind(instance)}"
        return f"must be {words}, not {_kind(instance)}"
    if kind == "enum":
        options = ", ".join(str(v) for v in value)
        return f"{instance!r} is not one of: {options}{_did_you_mean(str(instance), value)}"
    if kind == "const":
        if path == ("smtpscript",) and str(instance) == str(value):
            return f"the format version must be the number {value}, not the text {instance!r}"
        if path == ("smtpscript",):
            return f"unsupported format version {instance!r}: this smtpscript reads version {value}"
        return f"must be {json.dumps(value)}"
    if kind in ("minItems", "minLength", "minProperties"):
        return "a scenario needs at least one step" if path == ("steps",) else "must not be empty"
    if kind == "minimum":
        return f"must be at least {value}, not {instance}"
    if kind == "maximum":
        return f"must be at most {value}, not {instance}"
    if kind == "exclusiveMinimum":
        return f"must be greater than {value}, not {instance}"
    if kind == "pattern":
        return f"{instance!r} does not have the expected form"
    return error.message


def _type_word(name: str) -> str:
    return {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "integer": "a whole number",
        "number": "a number",
        "boolean": "true or false",
        "null": "empty",
    }.get(name, name)


def _kind(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _did_you_mean(word: str, options: Iterable[object]) -> str:
    words = [str(o) for o in options]
    same = [w for w in words if w.lower() == word.lower() and w != word]
    close = same or difflib.get_close_matches(word, words, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --- phase 2 ----------------------------------------------------------------


def _semantic_problems(
    doc: Document,
    extra_names: Iterable[str],
    include_captures: IncludeCaptures | None = None,
) -> list[Problem]:
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
    checker = _StepChecker(doc, problems, include_captures)
    # in the order the runner evaluates them: captures exist only after their step
    if isinstance(data.get("when"), str):
        checker.expression(data["when"], ("when",))
    variables = data.get("vars")
    if isinstance(variables, dict):
        for name, value in variables.items():
            if isinstance(value, str):
                checker.template(value, ("vars", name))
    target = data.get("target")
    if isinstance(target, dict) and isinstance(target.get("host"), str):
        checker.template(target["host"], ("target", "host"))
    steps = data.get("steps")
    if isinstance(steps, list):
        for i, step in enumerate(steps):
            checker.step(step, ("steps", i))
    if not is_fragment:
        defined = set(variables) if isinstance(variables, dict) else set()
        defined |= templating.BUILTIN_NAMES
        for name, path, known in checker.used:
            if known or name in defined or name in extra_names:
                continue
            if name in checker.captured:
                where = format_path(checker.captured[name])
                message = (
                    f"variable '{name}' is used before it is captured (by {where}): "
                    "a capture is set only once its step has run"
                )
            else:
                message = _undefined_message(name, defined | set(checker.captured))
            problems.append(doc.problem(path, message))
    return problems


def _undefined_message(name: str, defined: set[str]) -> str:
    hint = _did_you_mean(name, sorted(defined))
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
        include_captures: IncludeCaptures | None = None,
    ):
        self.doc = doc
        self.problems = problems
        self.include_captures = include_captures
        self.used: list[tuple[str, JsonPath, bool]] = []
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
        actions = [k for k in step if k in ACTION_NAMES]
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
        if "tls" in step and action not in TLS_ACTIONS:
            self.add(
                (*path, "tls"), "a 'tls' expectation needs a connect or starttls step", key=True
            )
        if action == "pipeline" and isinstance(step.get("pipeline"), list):
            for i, inner in enumerate(step["pipeline"]):
                self._step(inner, (*path, "pipeline", i))
        if action == "include" and isinstance(step.get("include"), str):
            names = self.include_captures(step["include"]) if self.include_captures else None
            if names is None:
                self.anything = True
            else:
                for name in names:
                    self.captured.setdefault(name, (*path, "include"))

    def _reply_keys(self, step: dict[str, Any], path: JsonPath, action: str | None) -> None:
        if action in NO_REPLY_ACTIONS:
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
        value = step[action]
        if action in TEMPLATE_ACTIONS and isinstance(value, str):
            self.template(value, (*path, action))
        elif action == "data":
            self._data(value, (*path, "data"))
        elif action == "auth" and isinstance(value, dict):
            self._auth(value, (*path, "auth"))
        elif action == "connect" and isinstance(value, dict) and isinstance(value.get("host"), str):
            self.template(value["host"], (*path, "connect", "host"))
        if action == "include" and isinstance(step.get("with"), dict):
            for name, inner in step["with"].items():
                if isinstance(inner, str):
                    self.template(inner, (*path, "with", name))

    def _data(self, value: object, path: JsonPath) -> None:
        if isinstance(value, str):
            self.template(value, path)
        elif isinstance(value, dict):
            if isinstance(value.get("body"), str):
                self.template(value["body"], (*path, "body"))
            headers = value.get("headers")
            for name, header in headers.items() if isinstance(headers, dict) else ():
                if isinstance(header, str):
                    self.template(header, (*path, "headers", name))

    def _auth(self, value: dict[str, Any], path: JsonPath) -> None:
        for key in ("username", "password", "token", "authzid"):
            if isinstance(value.get(key), str):
                self.template(value[key], (*path, key))
        mechanism = value.get("mechanism")
        needs = "token" if mechanism == "XOAUTH2" else "password"
        if mechanism in ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2") and needs not in value:
            example = "{{ env.SMTP_TOKEN }}" if needs == "token" else "{{ env.SMTP_PASSWORD }}"
            self.add(path, f"AUTH {mechanism} needs '{needs}' (e.g. {needs}: \"{example}\")")

    def _use(self, names: Iterable[str], path: JsonPath) -> None:
        known = self.anything
        self.used += [(n, path, known or n in self.available) for n in sorted(names)]

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
        try:
            _compile_regex(source)
        except re.error as exc:
            self.add(path, f"bad regular expression {source!r}: {exc}")


@lru_cache(maxsize=4096)
def _compile_regex(source: str) -> re.Pattern[str]:
    return re.compile(source)


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
    return None, frozenset(meta.find_undeclared_variables(tree))


@lru_cache(maxsize=4096)
def _analyse_expression(source: str) -> tuple[str | None, frozenset[str]]:
    import jinja2
    from jinja2 import meta

    env = templating.environment()
    try:
        env.compile_expression(source)
        names = frozenset(meta.find_undeclared_variables(env.parse("{{ " + source + " }}")))
    except jinja2.TemplateSyntaxError as exc:
        message = _jinja_message(exc.message).replace("end of template", "end of expression")
        return f"expression error: {message}", frozenset()
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
