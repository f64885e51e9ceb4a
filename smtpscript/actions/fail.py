"""fail: fail the step with a finding in words (with the step's when:).

For a fact that is not a reply: a DNS record, a policy, something a template can
decide. The step fails with the reason as its message, exactly as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smtpscript.actions.base import ActionSpec, StepContext
from smtpscript.actions.skip import check


@dataclass(frozen=True)
class Fail:
    reason: str  # a template


async def run(ctx: StepContext, action: Fail) -> None:
    reason = ctx.render(action.reason)
    ctx.label(reason)
    ctx.fail(reason)


def build(value: Any) -> Fail:
    return Fail(str(value))


SPEC = ActionSpec(
    name="fail",
    order=96,
    schema={
        "type": "string",
        "minLength": 1,
        "description": "Fail this step with this finding (a template); give it a when: "
        "that is true when the finding holds, e.g. a DNS or policy fact.",
        "examples": ["the MTA-STS policy is in {{ mta_sts.mode }} mode, not enforce"],
    },
    build=build,
    run=run,
    default_expect=None,
    check=check,
    needs_connection=False,
    summary="fail the step with a finding in words (use with when:)",
)
