"""skip: end the scenario as skipped, saying why (with the step's when:).

For a check with nothing to judge on this server, e.g. TLS versions where STARTTLS
is not offered: "passed" would claim what was never tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smtpscript.actions.base import ActionSpec, ScenarioSkipped, StepContext


@dataclass(frozen=True)
class Skip:
    reason: str  # a template


async def run(ctx: StepContext, action: Skip) -> None:
    ctx.label("skip the rest")
    raise ScenarioSkipped(ctx.render(action.reason))


def build(value: Any) -> Skip:
    return Skip(str(value))


def check(value: Any, path: tuple[str | int, ...], checker: Any) -> None:
    if isinstance(value, str):
        checker.template(value, path)


SPEC = ActionSpec(
    name="skip",
    order=95,
    schema={
        "type": "string",
        "minLength": 1,
        "description": "End the scenario here as skipped, with this reason (a template); "
        "give the step a when: so that it skips only where there is nothing to judge.",
        "examples": ["STARTTLS is not offered: no TLS version to judge"],
    },
    build=build,
    run=run,
    default_expect=None,
    check=check,
    needs_connection=False,
    summary="end the scenario as skipped, with a reason (use with when:)",
)
