"""fail: fail the step with a finding in words (with the step's when:).

For a fact that is not a reply: a DNS record, a policy, something a template can
decide. The step fails with the reason as its message, exactly as written.
"""

from __future__ import annotations

from smtpscript.actions.base import StepContext, reason_action


async def run(ctx: StepContext, reason: str) -> None:
    text = ctx.render(reason)
    ctx.label(text)
    ctx.fail(text)


SPEC = reason_action(
    "fail",
    96,
    "Fail this step with this finding (a template); give it a when: that is true when the "
    "finding holds, e.g. a DNS or policy fact.",
    "the MTA-STS policy is in {{ mta_sts.mode }} mode, not enforce",
    run,
    "fail the step with a finding in words (use with when:)",
)
