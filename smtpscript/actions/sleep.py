"""sleep: wait."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smtpscript.actions.base import ActionSpec, StepContext
from smtpscript.schemaparts import MAX_WAIT


@dataclass(frozen=True)
class Sleep:
    """Wait this many seconds."""

    seconds: float


async def run(ctx: StepContext, action: Sleep) -> None:
    ctx.label(f"sleep {action.seconds:g} s")
    import asyncio  # at run time only: validate's cold start does without it

    await asyncio.sleep(action.seconds)


def build(value: Any) -> Sleep:
    return Sleep(float(value))


SPEC = ActionSpec(
    name="sleep",
    order=90,
    schema={"type": "number", "minimum": 0, "maximum": MAX_WAIT, "description": "Wait seconds."},
    build=build,
    run=run,
    default_expect=None,
    needs_connection=False,
    summary="wait",
)
