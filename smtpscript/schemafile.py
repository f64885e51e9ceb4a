"""The shipped JSON Schemas: where they live, and a fast compiled check.

The schemas are data files of the package (``smtpscript.schemas``) and of a
source checkout (``schemas/``). Validating thousands of files through
jsonschema is slow, so a small checker compiled from the same schema answers
"valid?" first; jsonschema runs only to explain a file the checker rejects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

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
def validator(name: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(name))


@lru_cache(maxsize=2)
def reader_validator(name: str) -> Any:
    """The schema as a reader applies it: properties it does not know are ignored.

    The published schema is strict (it describes exactly what this release writes);
    a file from a newer release of the same format may carry more, and readers ignore
    what they do not know (docs/results-format.md).
    """
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_open(load_schema(name)))


def _open(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: True if k == "additionalProperties" and v is False else _open(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_open(item) for item in node]
    return node


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
def fast_check(name: str) -> Check | None:
    """The compiled predicate of a shipped schema; None when it cannot be compiled."""
    return _compile(load_schema(name))


@lru_cache(maxsize=2)
def reader_fast_check(name: str) -> Check | None:
    """fast_check of the schema as a reader applies it (see reader_validator): the
    quick "valid?" in front of reader_validator, which explains a rejection."""
    return _compile(_open(load_schema(name)))


def _compile(root: dict[str, Any]) -> Check | None:
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
        if schema.get("type") == "object" and "properties" in schema:
            return object_check(schema)
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

    def object_check(schema: dict[str, Any]) -> Check:
        """type object + required + properties (+ additionalProperties) in one pass: the
        shape of almost every node of a results file, checked ~1M times on 5,000 results."""
        if "patternProperties" in schema:
            raise _Unsupported("patternProperties")
        subs = {key: compile_(sub) for key, sub in schema["properties"].items()}
        extra = schema.get("additionalProperties", True)
        extra_check = None if extra in (True, False) else compile_(extra)
        closed = extra is False
        need = tuple(schema.get("required", ()))
        fused = {"type", "properties", "required", "additionalProperties"}
        others = [
            keyword_check(keyword, arg, schema)
            for keyword, arg in schema.items()
            if keyword not in fused and keyword not in _ANNOTATIONS
        ]

        def check_object(value: Any) -> bool:
            if not isinstance(value, dict):
                return False
            for key in need:
                if key not in value:
                    return False
            for key, item in value.items():
                sub = subs.get(key)
                if sub is not None:
                    if not sub(item):
                        return False
                elif closed or (extra_check is not None and not extra_check(item)):
                    return False
            for check in others:  # noqa: SIM110 (a plain loop is faster than all(genexpr))
                if not check(value):
                    return False
            return True

        return check_object

    def keyword_check(keyword: str, arg: Any, schema: dict[str, Any]) -> Check:
        if keyword == "type":
            kinds = [_TYPES[t] for t in (arg if isinstance(arg, list) else [arg])]
            if len(kinds) == 1:
                return kinds[0]

            def any_kind(value: Any) -> bool:
                for kind in kinds:  # noqa: SIM110 (a plain loop is faster than any(genexpr))
                    if kind(value):
                        return True
                return False

            return any_kind
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

            def items(value: Any) -> bool:
                if isinstance(value, list):
                    for item in value:
                        if not sub(item):
                            return False
                return True

            return items
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
        if keyword == "enum" and arg and all(isinstance(option, str) for option in arg):
            names = frozenset(arg)
            return lambda v: isinstance(v, str) and v in names
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
