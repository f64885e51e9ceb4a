"""Load mode: one scenario on one target, N times or for S seconds, C at once,
optionally paced at R sessions per second.

Memory stays flat at any N: every session's result is folded into aggregates
(counts, latency histograms per session and per step, reasons) and dropped;
only a bounded sample is kept whole (the first failures and errors, then a few
passes) for the reports' evidence.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from smtpscript import __version__, fastpath
from smtpscript import model as m
from smtpscript.errors import ConfigError
from smtpscript.failures import classify
from smtpscript.fastpath import SessionOutcome
from smtpscript.latency import Histogram
from smtpscript.loops import loop_factory
from smtpscript.plan import Plan, compile_plan
from smtpscript.results import (
    LoadSummary,
    ReasonCount,
    RunResult,
    ScenarioResult,
    StepLatency,
    TargetInfo,
)
from smtpscript.runner import (
    MAX_RECEIVED_PER_RUN,
    Interrupted,
    RunOptions,
    StopSignals,
    lost_result,
    run_scenario,
)

MAX_REASONS = 50  # distinct failure reasons kept by name; the rest are counted together
OTHER_REASONS = "other reasons"


@dataclass(frozen=True)
class LoadPlan:
    repeat: int | None = None  # sessions; None: until duration ends
    duration: float | None = None  # seconds; None: until repeat sessions ran
    rate: float | None = None  # session starts per second; None: as fast as concurrency allows
    concurrency: int = 1
    keep_failures: int = 100  # whole results kept: failures and errors first...
    keep_passes: int = 3  # ...and a few passes, to show what a good session looks like
    compiled: bool = True  # run a compiled plan where the scenario allows (smtpscript.plan)

    def __post_init__(self) -> None:
        for name, value in (("duration", self.duration), ("rate", self.rate)):
            # not `value <= 0`: NaN passes every range check (a run without end)
            if value is not None and not 0 < value < math.inf:
                raise ConfigError(f"--{name} {value!r}: give a positive, finite number")

    def describe(self) -> str:
        parts = [f"{self.repeat} sessions" if self.repeat else f"for {self.duration:g} s"]
        if self.repeat and self.duration:
            parts.append(f"at most {self.duration:g} s")
        parts.append(f"{self.concurrency} at once")
        if self.rate:
            parts.append(f"at {self.rate:g}/s")
        return ", ".join(parts)


class LoadAggregate:
    """Every session folded in as it ends."""

    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        self.verdicts: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.session = Histogram()
        # (path, kind) -> (the first session's label, durations): the implicit connect shares
        # its path with the first step; labels may differ per session ({{ index }})
        self.steps: dict[tuple[str, str], tuple[str, Histogram]] = {}
        self.kept: list[ScenarioResult] = []
        self._kept_failures = self._kept_passes = 0
        self.first: ScenarioResult | None = None
        self.engine = ""  # what ran the sessions (LoadSummary.engine)
        # a compiled plan's steps (by id: the plan lives as long as the run) -> durations
        self._plan_steps: dict[int, Histogram] = {}

    def would_keep(self, verdict: str) -> bool:
        """Would a session with this verdict be kept whole (so its transcript is needed)?"""
        if verdict in ("failed", "error"):
            return self._kept_failures < self.plan.keep_failures
        return self._kept_passes < self.plan.keep_passes

    def add(self, result: ScenarioResult) -> None:
        """A session of the general runner."""
        self.first = self.first or result
        self._count(result.verdict, result.reason, result.duration_ms)
        for step in result.steps:
            if step.verdict != "skipped":
                self._durations(step.path, step.kind, step.name).add(step.duration_ms)
        self._keep(result, result.verdict)

    def add_outcome(
        self, outcome: SessionOutcome, result_of: Callable[[SessionOutcome], ScenarioResult]
    ) -> None:
        """A session of a compiled plan: a whole result is made only for a kept one."""
        self._count(outcome.verdict, outcome.reason, outcome.duration_ms)
        by_step = self._plan_steps
        for record in outcome.steps:
            durations = by_step.get(id(record.plan_step))
            if durations is None:  # looked up once per plan step, not once per session
                step = record.plan_step.step
                durations = self._durations(step.path, step.kind, record.plan_step.label)
                by_step[id(record.plan_step)] = durations
            durations.add(record.elapsed_ms)
        if self.first is None or self.would_keep(outcome.verdict):
            result = result_of(outcome)
            self.first = self.first or result
            if self.would_keep(outcome.verdict):
                self._keep(result, outcome.verdict)

    def _durations(self, path: str, kind: str, name: str) -> Histogram:
        """A step's histogram (the implicit connect shares its path with the first step,
        hence the kind; the name is the first session's)."""
        entry = self.steps.get((path, kind))
        if entry is None:
            entry = self.steps[(path, kind)] = (name, Histogram())
        return entry[1]

    def _count(self, verdict: str, reason: str | None, duration_ms: float) -> None:
        self.verdicts[verdict] += 1
        self.session.add(duration_ms)
        if verdict in ("failed", "error"):
            reason = reason or verdict
            if reason in self.reasons or len(self.reasons) < MAX_REASONS:
                self.reasons[reason] += 1
            else:
                self.reasons[OTHER_REASONS] += 1

    def _keep(self, result: ScenarioResult, verdict: str) -> None:
        """Keep ``result`` if its session's ``verdict`` still has room (a record that could
        not be made stands in for its session, whatever it says)."""
        if verdict in ("failed", "error"):
            if self._kept_failures < self.plan.keep_failures:
                self._kept_failures += 1
                self.kept.append(result)
        elif self._kept_passes < self.plan.keep_passes:
            self._kept_passes += 1
            self.kept.append(result)

    def merge(self, other: LoadAggregate) -> None:
        """Add another process's sessions to these (kept samples: failures first, bounded)."""
        self.first = self.first or other.first
        self.engine = self.engine or other.engine
        self.verdicts.update(other.verdicts)
        for reason, count in other.reasons.items():
            known = reason in self.reasons or len(self.reasons) < MAX_REASONS
            self.reasons[reason if known else OTHER_REASONS] += count
        self.session.merge(other.session)
        for key, (name, durations) in other.steps.items():
            self.steps.setdefault(key, (name, Histogram()))[1].merge(durations)
        failures = [r for r in (*self.kept, *other.kept) if r.verdict in ("failed", "error")]
        passes = [r for r in (*self.kept, *other.kept) if r.verdict not in ("failed", "error")]
        failures, passes = failures[: self.plan.keep_failures], passes[: self.plan.keep_passes]
        self.kept = failures + passes
        self._kept_failures, self._kept_passes = len(failures), len(passes)

    def summary(self, scenario: m.Scenario, target: m.Target, elapsed_s: float) -> LoadSummary:
        sessions = sum(self.verdicts.values())
        return LoadSummary(
            scenario=scenario.file,
            title=scenario.title,
            target=target.name,
            concurrency=self.plan.concurrency,
            repeat=self.plan.repeat,
            duration_s=self.plan.duration,
            rate=self.plan.rate,
            sessions=sessions,
            verdicts=dict(self.verdicts),
            elapsed_ms=round(elapsed_s * 1000, 3),
            sessions_per_s=round(sessions / elapsed_s, 1) if elapsed_s > 0 else 0.0,
            session=self.session.summary(),
            steps=[
                StepLatency(path, name, durations.summary())
                for (path, _), (name, durations) in self.steps.items()
            ],
            reasons=[ReasonCount(reason, n) for reason, n in self.reasons.most_common()],
            kept=len(self.kept),
            engine=self.engine,
        )


@dataclass
class LoadOutcome:
    """What one process's load run found: aggregates, not yet summarised (so that the
    outcomes of several worker processes can be added up)."""

    aggregate: LoadAggregate
    elapsed_s: float
    started_at: str
    finished_at: str
    signum: int | None = None


async def load(
    scenario: m.Scenario,
    target: m.Target,
    options: RunOptions,
    plan: LoadPlan,
    stop: StopSignals | None = None,
) -> LoadOutcome:
    """Run the plan; a signal (``stop``) ends it early with what finished."""
    aggregate = LoadAggregate(plan)
    # a session's result is folded in as soon as it is made (no await in between), so the
    # aggregate can say at that moment whether its transcript is worth building
    options = replace(options, keep_transcript=aggregate.would_keep)
    started_at = _now()
    t0 = time.monotonic()
    deadline = t0 + plan.duration if plan.duration else None
    compiled = _compiled(scenario, target, options, plan)
    engine = compiled if isinstance(compiled, str) else None
    aggregate.engine = f"general runner ({engine})" if engine else "compiled plan"
    started = 0

    def build(outcome: fastpath.SessionOutcome) -> ScenarioResult:
        try:
            return fastpath.result_of(compiled, options, outcome)
        except Exception as exc:  # a bug in recording must not stop this worker's sessions
            why = f"recording a {outcome.verdict} session failed: {classify(exc).message}"
            return lost_result(scenario, target, options, why)

    def stopped() -> bool:
        return stop is not None and stop.signum is not None

    async def worker() -> None:
        """One of ``concurrency`` loops, each running sessions one after another (no task
        per session): session i starts at t0 + i / rate when paced."""
        nonlocal started
        while (plan.repeat is None or started < plan.repeat) and not stopped():
            index, started = started, started + 1
            if plan.rate:
                delay = t0 + index / plan.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if (deadline is not None and time.monotonic() >= deadline) or stopped():
                return
            if engine is None:
                outcome = await fastpath.run_plan(compiled, MAX_RECEIVED_PER_RUN)
                aggregate.add_outcome(outcome, build)
            else:
                aggregate.add(await run_scenario(scenario, target, options))

    workers = [asyncio.create_task(worker()) for _ in range(plan.concurrency)]
    if stop is not None:
        stop.watch(workers)  # type: ignore[arg-type]  # any list of tasks
    ended = await asyncio.gather(*workers, return_exceptions=True)
    for worker_end in ended:
        if isinstance(worker_end, Exception):  # a bug outside any session: said, not lost
            why = f"a load worker stopped early: {classify(worker_end).message}"
            aggregate.add(lost_result(scenario, target, options, why))
    signum = stop.signum if stop is not None else None
    return LoadOutcome(aggregate, time.monotonic() - t0, started_at, _now(), signum)


def _compiled(
    scenario: m.Scenario, target: m.Target, options: RunOptions, plan: LoadPlan
) -> Plan | str:
    """The scenario's compiled plan, or why the general runner runs it."""
    if not plan.compiled:
        return "compiling was turned off"
    try:
        return compile_plan(scenario, target, options)
    except Exception as exc:  # never a reason not to run: the general runner still can
        return f"compiling failed ({classify(exc).message})"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def result_of(
    outcomes: list[LoadOutcome], scenario: m.Scenario, target: m.Target, plan: LoadPlan
) -> RunResult:
    """One run's result from the outcomes of one or more processes (run side by side)."""
    aggregate = LoadAggregate(plan)
    for outcome in outcomes:
        aggregate.merge(outcome.aggregate)
    elapsed = max(outcome.elapsed_s for outcome in outcomes)
    summary = aggregate.summary(scenario, target, elapsed)
    info = (
        aggregate.first.target
        if aggregate.first
        else TargetInfo(
            target.name, target.endpoint.host or "", target.endpoint.port or m.DEFAULT_PORT
        )
    )
    run = RunResult(
        tool_version=__version__,
        started_at=min(outcome.started_at for outcome in outcomes),
        finished_at=max(outcome.finished_at for outcome in outcomes),
        duration_ms=summary.elapsed_ms,
        targets=[info],
        scenarios=aggregate.kept,
        load=summary,
    )
    signum = next((o.signum for o in outcomes if o.signum is not None), None)
    if signum is not None:
        run.incomplete = (
            f"interrupted by {signal.Signals(signum).name}: {summary.sessions} sessions finished"
        )
    return run


def run_outcome(
    scenario: m.Scenario, target: m.Target, options: RunOptions, plan: LoadPlan
) -> LoadOutcome:
    """The plan run on this process's own event loop (SIGINT/SIGTERM end it early)."""
    stop = StopSignals()
    with (
        asyncio.Runner(loop_factory=loop_factory(options.loop if options else None)) as runner,
        stop.installed(runner.get_loop()),
    ):
        return runner.run(load(scenario, target, options, plan, stop))


def run(
    scenario: m.Scenario, target: m.Target, options: RunOptions, plan: LoadPlan, workers: int = 1
) -> RunResult:
    """Synchronous entry point; SIGINT/SIGTERM raise Interrupted with what finished.

    ``workers`` > 1 splits the plan over that many processes (smtpscript.workers).
    """
    if workers > 1:
        from smtpscript.workers import load_outcomes

        outcomes, lost = load_outcomes(scenario, target, options, plan, workers)
    else:
        outcomes, lost = [run_outcome(scenario, target, options, plan)], []
    result = result_of(outcomes, scenario, target, plan)
    if lost:
        result.incomplete = "; ".join(filter(None, [result.incomplete, *lost]))
    signum = next((o.signum for o in outcomes if o.signum is not None), None)
    if signum is not None:
        raise Interrupted(result, signum)
    return result
