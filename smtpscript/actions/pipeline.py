"""pipeline: write several send lines at once (RFC 2920), then judge one reply per line.

A group: the loader builds its inner steps and the runner runs them, since each
inner step gets its own result. Declared here for the schema and the checks.
"""

from __future__ import annotations

from typing import Any

from smtpscript.actions.base import ActionSpec


def _built_by_the_loader(value: Any) -> Any:
    raise AssertionError("pipeline steps are built by the loader")


SPEC = ActionSpec(
    name="pipeline",
    order=80,
    schema={
        "type": "array",
        "minItems": 1,
        "description": "Write all these send lines at once (RFC 2920), then read one reply "
        "per line, each checked.",
        "items": {"$ref": "#/$defs/pipelined_step"},
    },
    build=_built_by_the_loader,
    run=None,
    default_expect=None,
    summary="write all lines at once, then read and check one reply per line",
)
