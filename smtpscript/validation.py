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
from collections.abc import Iterable, Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from smtpscript import templating
from smtpscript.errors import Problem
from smtpscript.model import ACTION_NAMES
from smtpscript.patterns import PatternError, parse_code_pattern, parse_status_pattern
from smtpscript.yamlsource import Document, JsonPath

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


def validate(doc: Document, extra_names: Iterable[str] = ()) -> list[Problem]:
    """Every problem of a scenario or fragment document, in file order."""
    if not isinstance(doc.data, dict):
        kind = _TYPE_NAMES.get(type(doc.data), type(doc.data).__name__)
        return [
            doc.problem(
                (),
                f"the top level must be a mapping (smtpscript:, title:, steps:, ...), not {kind}",
            )
        ]
    problems = list(_schema_problems(doc))
    problems += _semantic_problems(doc, set(extra_names))
    return sorted(set(problems))


def _schema_problems(doc: Document) -> Iterator[Problem]:
    for error in _validator("scenario").iter_errors(doc.data):
        path = tuple(error.absolute_path)
        if any(part in ("expect", "status") for part in path if isinstance(part, str)):
            continue  # phase 2 explains patterns better
        yield from _translate(doc, error, path)


def _translate(doc: Document, error: Any, path: JsonPath) -> Iterator[Problem]:
    kind, instance, schema = error.validator, error.instance, error.schema
    if kind == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        for key in sorted(set(instance) - set(known)):
            yield doc.problem(
                (*path, key), f"unknown key '{key}'{_did_you_mean(key, known)}", key=True
            )
    elif kind == "required":
        for key in error.validator_value:
            if key not in instance:
                yield doc.problem(path, f"missing required key '{key}'")
    elif kind == "oneOf" and isinstance(instance, dict) and _is_step_schema(schema):
        yield doc.problem(path, _action_message(instance))
    elif kind in ("anyOf", "oneOf") and error.context:
        best = _best_alternative_error(error)
        yield from _translate(doc, best, tuple(best.absolute_path))
    else:
        yield doc.problem(path, _simple_message(error, path), key=kind == "propertyNames")


def _best_alternative_error(error: Any) -> Any:
    """Explain an anyOf failure by the alternative whose type fits the value, if any."""
    from jsonschema.exceptions import best_match

    by_branch: dict[int, list[Any]] = {}
    for sub in error.context:
        by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [
        errors
        for errors in by_branch.values()
        if not any(e.validator == "type" and not e.relative_path for e in errors)
    ]
    return best_match(fitting[0] if len(fitting) == 1 else error.context)


def _is_step_schema(schema: dict[str, Any]) -> bool:
    return "send" in schema.get("properties", {}) and "include" in schema["properties"]


def _action_message(step: dict[str, Any]) -> str:
    found = [key for key in step if key in ACTION_NAMES]
    if not found:
        unknown = [k for k in step if k not in _step_keys()]
        hint = _did_you_mean(unknown[0], ACTION_NAMES) if unknown else ""
        return f"a step needs one action ({', '.join(ACTION_NAMES)}); found none{hint}"
    listed = " and ".join(f"'{k}'" for k in found)
    return f"a step takes exactly one action, found {listed}: split it into separate steps"


@lru_cache(maxsize=1)
def _step_keys() -> frozenset[str]:
    return frozenset(load_schema("scenario")["$defs"]["step"]["properties"])


def _simple_message(error: Any, path: JsonPath) -> str:
    kind, value, instance = error.validator, error.validator_value, error.instance
    if kind == "type":
        wanted = value if isinstance(value, list) else [value]
        return f"must be {' or '.join(_type_word(w) for w in wanted)}, not {_kind(instance)}"
    if kind == "enum":
        options = ", ".join(str(v) for v in value)
        return f"{instance!r} is not one of: {options}{_did_you_mean(str(instance), value)}"
    if kind == "const":
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
    if kind == "pattern" and error.parent is not None and error.parent.validator == "propertyNames":
        return f"{instance!r} is not a valid variable name (letters, digits, _)"
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
    close = difflib.get_close_matches(word, [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --- phase 2 ----------------------------------------------------------------


def _semantic_problems(doc: Document, extra_names: set[str]) -> list[Problem]:
    data = doc.data
    problems: list[Problem] = []
    is_fragment = data.get("fragment") is True
    if is_fragment:
        problems += [
            doc.problem((key,), f"a fragment takes only {', '.join(FRAGMENT_KEYS)}", key=True)
            for key in data
            if key not in FRAGMENT_KEYS
        ]
    elif "title" not in data:
        problems.append(doc.problem((), "missing required key 'title'"))
    checker = _StepChecker(doc, problems)
    steps = data.get("steps")
    if isinstance(steps, list):
        for i, step in enumerate(steps):
            checker.step(step, ("steps", i))
    for name in ("when",):
        if isinstance(data.get(name), str):
            checker.expression(data[name], (name,))
    variables = data.get("vars")
    if isinstance(variables, dict):
        for name, value in variables.items():
            if isinstance(value, str):
                checker.template(value, ("vars", name))
    target = data.get("target")
    if isinstance(target, dict) and isinstance(target.get("host"), str):
        checker.template(target["host"], ("target", "host"))
    if not is_fragment:
        defined = set(variables or {}) if isinstance(variables, dict) else set()
        defined |= checker.captured | extra_names | templating.BUILTIN_NAMES
        for name, path in checker.used:
            if name not in defined:
                problems.append(doc.problem(path, _undefined_message(name, defined)))
    return problems


def _undefined_message(name: str, defined: set[str]) -> str:
    hint = _did_you_mean(name, sorted(defined))
    return (
        f"undefined variable '{name}'{hint}: define it under vars:, in the library's "
        f"smtpscript.yaml, or pass --var {name}=..."
    )


class _StepChecker:
    """Phase-2 checks of one document's steps; collects names used and captured."""

    def __init__(self, doc: Document, problems: list[Problem]):
        self.doc = doc
        self.problems = problems
        self.used: list[tuple[str, JsonPath]] = []
        self.captured: set[str] = set()

    def add(self, path: JsonPath, message: str, *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, key=key))

    def step(self, step: object, path: JsonPath) -> None:
        if not isinstance(step, dict):
            return
        actions = [k for k in step if k in ACTION_NAMES]
        action = actions[0] if len(actions) == 1 else None
        self._reply_keys(step, path, action)
        self._action_values(step, path, action)
        if isinstance(step.get("when"), str):
            self.expression(step["when"], (*path, "when"))
        if isinstance(step.get("repeat"), str):
            self.template(step["repeat"], (*path, "repeat"))
        if "with" in step and action != "include":
            self.add((*path, "with"), "'with' only goes with an include step", key=True)
        if "tls" in step and action not in TLS_ACTIONS:
            self.add(
                (*path, "tls"), "a 'tls' expectation needs a connect or starttls step", key=True
            )
        if action == "pipeline" and isinstance(step.get("pipeline"), list):
            for i, inner in enumerate(step["pipeline"]):
                self.step(inner, (*path, "pipeline", i))

    def _reply_keys(self, step: dict[str, Any], path: JsonPath, action: str | None) -> None:
        if action in NO_REPLY_ACTIONS:
            for key in REPLY_KEYS:
                if key in step:
                    self.add(
                        (*path, key),
                        f"a {action} step reads no reply of its own: '{key}' does not apply here",
                        key=True,
                    )
        if "expect" in step:
            try:
                parse_code_pattern(step["expect"])
            except PatternError as exc:
                self.add(self._bad_item(step["expect"], (*path, "expect")), str(exc))
        if "status" in step:
            try:
                parse_status_pattern(step["status"])
            except PatternError as exc:
                self.add((*path, "status"), str(exc))
        if isinstance(step.get("match"), str):
            self.regex(step["match"], (*path, "match"))
        if isinstance(step.get("capture"), dict):
            for name, pattern in step["capture"].items():
                self.captured.add(name)
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
            self.add(path, f"AUTH {mechanism} needs '{needs}'")

    def template(self, source: str, path: JsonPath) -> None:
        if not templating.is_template(source):
            return
        error = templating.syntax_error(source)
        if error:
            line_offset, message = error
            line, column = self.doc.mark(path)
            self.problems.append(
                Problem(self.doc.file, line + line_offset - 1, column, _fmt(path), message)
            )
            return
        self.used += [(name, path) for name in sorted(templating.names_used(source))]

    def expression(self, source: str, path: JsonPath) -> None:
        error = templating.expression_error(source)
        if error:
            self.add(path, error)
            return
        self.used += [(n, path) for n in sorted(templating.names_used(source, expression=True))]

    def regex(self, source: str, path: JsonPath) -> None:
        try:
            re.compile(source)
        except re.error as exc:
            self.add(path, f"bad regular expression {source!r}: {exc}")


def _fmt(path: JsonPath) -> str:
    from smtpscript.yamlsource import format_path

    return format_path(path)
