"""Two-phase validation: JSON Schema, then checks the schema cannot express.

Phase 1 (here) translates jsonschema's errors into plain sentences placed on
the offending key or value. Phase 2 (semantics.py) checks reply-code and
status patterns, regexes, templates, the action/key combinations and
undefined variables. Both phases collect every problem; nothing stops at the
first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from functools import lru_cache
from typing import Any

from smtpscript.actions import ACTION_NAMES, ACTIONS
from smtpscript.errors import Problem, did_you_mean
from smtpscript.schemafile import fast_check, load_schema, schema_path, validator
from smtpscript.schemaparts import NAME_PATTERN
from smtpscript.semantics import IncludeLookup, semantic_problems
from smtpscript.yamlsource import Document, JsonPath

__all__ = ["load_schema", "schema_path", "validate", "validator"]

# actions whose value may carry message headers (data, bdat)
_MESSAGE_ACTIONS = frozenset(name for name, spec in ACTIONS.items() if spec.per_recipient)

_TYPE_NAMES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "empty (null)",
}


def validate(
    doc: Document,
    extra_names: Iterable[str] = (),
    include_lookup: IncludeLookup | None = None,
    names_used: set[str] | None = None,
) -> list[Problem]:
    """Every problem of a scenario or fragment document, in file order.

    ``extra_names``: variables defined elsewhere (library config, --var).
    ``include_lookup``: given an include step's path, what the fragment captures and
    needs (None when it cannot be read), so that later steps may use its captures and
    its needs are checked where it is included. ``names_used`` receives the variables read.
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
    problems += schema_problems(doc)
    problems += semantic_problems(doc, names, include_lookup, names_used)
    return sorted(set(problems))


def schema_problems(doc: Document, schema: str = "scenario") -> Iterator[Problem]:
    """Problems of ``doc`` against a shipped schema (scenario or library), in words."""
    fast = fast_check(schema)
    if fast is not None and fast(doc.data):
        return
    for error in validator(schema).iter_errors(doc.data):
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
                message = f"unknown key {key!r}{did_you_mean(key, known)}"
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
        message = (
            _header_message(instance)
            if len(path) >= 2 and path[-2] in _MESSAGE_ACTIONS and path[-1] == "headers"
            else None
        )
        if message is None:
            variable = error.validator_value == NAME_PATTERN
            message = _name_message(instance) if variable else _label_message(instance)
        yield doc.problem((*path, instance), message, key=True)
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
        f"{name!r} is not a valid variable name: use letters, digits and _, "
        f"not starting with a digit{hint}"
    )


def _label_message(name: str) -> str:
    """A target, environment or tag name (library config): what -t and --env take."""
    return (
        f"{name!r} is not a valid name: use letters, digits, '.', '_' and '-', starting "
        "with a letter or digit"
    )


def _header_message(name: str) -> str:
    return (
        f"{name!r} is not a valid header name: use printable ASCII without spaces, "
        "':' or line breaks (RFC 5322), e.g. 'X-Probe'"
    )


def _action_message(step: dict[str, Any]) -> str | None:
    found = [key for key in step if key in ACTION_NAMES]
    if not found:
        unknown = [k for k in step if k not in _step_keys()]
        if any(did_you_mean(k, ACTION_NAMES) for k in unknown):
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
        return f"{instance!r} is not one of: {options}{did_you_mean(str(instance), value)}"
    if kind == "const":
        if path == ("smtpscript",) and str(instance) == str(value):
            return f"the format version must be the number {value}, not the text {instance!r}"
        if path == ("smtpscript",):
            return f"unsupported format version {instance!r}: this smtpscript reads version {value}"
        return f"must be {json.dumps(value)}"
    if kind in ("minItems", "minLength", "minProperties"):
        return "a scenario needs at least one step" if path == ("steps",) else "must not be empty"
    if kind == "minimum":
        return f"must be at least {value}, not {_number(instance)}"
    if kind == "maximum":
        return f"must be at most {value}, not {_number(instance)}"
    if kind == "exclusiveMinimum":
        return f"must be greater than {value}, not {_number(instance)}"
    if kind == "pattern":
        return f"{instance!r} does not have the expected form"
    return error.message


def _number(value: object) -> str:
    """A number as the user wrote it, unless it is too long to read on one line."""
    text = str(value)
    return text if len(text) <= 24 else f"{text[:12]}... (a number of {len(text)} characters)"


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
