"""skip: end the scenario as skipped, saying why (with the step's when:).

For a check with nothing to judge on this server, e.g. TLS versions where STARTTLS
is not offered: "passed" would claim what was never tested.
"""

from __future__ import annotations

from smtpscript.actions.base import ScenarioSkipped, StepContext, reason_action


async def run(ctx: StepContext, reason: str) -> None:
    ctx.label("skip the rest")
    raise ScenarioSkipped(ctx.render(reason))


SPEC = reason_action(
    "skip",
    95,
    "End the scenario here as skipped, with this reason (a template); give the step a "
    "when: so that it skips only where there is nothing to judge.",
    "STARTTLS is not offered: no TLS version to judge",
    run,
    "end the scenario as skipped, with a reason (use with when:)",
)
