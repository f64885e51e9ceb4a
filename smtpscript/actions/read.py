"""read: read one reply (a late reply after raw bytes, or the close after QUIT)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smtpscript.actions.base import ActionSpec, StepContext
from smtpscript.patterns import CodePattern
from smtpscript.schemaparts import obj


@dataclass(frozen=True)
class Read:
    """Read one reply without sending anything."""


async def run(ctx: StepContext, action: Read) -> None:
    ctx.label("read")
    ctx.judge(await ctx.read())


def build(value: Any) -> Read:
    return Read()


SPEC = ActionSpec(
    name="read",
    order=100,
    schema={
        "description": "Only read one reply (e.g. a late reply after raw bytes). Default "
        "expect: any.",
        "anyOf": [obj({}, "No options."), {"type": "null"}],
    },
    build=build,
    run=run,
    default_expect=CodePattern(("any",)),
    summary="read one reply",
)
