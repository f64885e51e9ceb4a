"""--workers N: more than one core. Forked processes, each with its own event loop,
each given a share of the work; the parent merges what they send back.

A library run is shared out by target (every pair of a target in one process), so a
target's connection cap holds across processes, and results are merged back into the
planned order. A load run gives each process its part of the sessions, the
concurrency and the rate, and adds up their aggregates. Workers are forked (the
scenarios and targets are inherited, not pickled); the parent keeps serving the
sandbox, if any, from its own thread. Ctrl-C reaches every process of the group:
each one stops and returns what finished.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from typing import Any

from smtpscript import model as m
from smtpscript.errors import ConfigError
from smtpscript.results import RunResult, ScenarioResult

MAX_WORKERS = 64

# what a forked worker inherits: set just before the pool starts, read in the child
_work: dict[str, Any] = {}


def _handle(handlers: Any, handler: Any = None) -> dict[int, Any]:
    """Install ``handler`` for these signals (or a {signal: handler} mapping back); the
    handlers they had. Only the main thread may: elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    pairs = handlers.items() if isinstance(handlers, dict) else ((s, handler) for s in handlers)
    return {sig: signal.signal(sig, h) for sig, h in pairs}


def check_workers(workers: int) -> None:
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers {workers}: use 1 to {MAX_WORKERS}")
    if "fork" not in multiprocessing.get_all_start_methods():
        raise ConfigError("--workers needs fork(), which this platform does not have")


def run_pairs(
    pairs: Sequence[tuple[m.Scenario, m.Target]],
    targets: list[m.Target],
    options: Any,
    workers: int,
    on_result: Callable[[int, ScenarioResult], None] | None = None,
) -> RunResult:
    """Every pair, shared out by target over ``workers`` processes; one merged result."""
    from smtpscript.runner import Interrupted

    order = {id(t): n for n, t in enumerate(targets)}
    shares: list[list[int]] = [[] for _ in range(min(workers, len(targets)) or 1)]
    for index, (_, target) in enumerate(pairs):
        shares[order[id(target)] % len(shares)].append(index)
    _work.update(pairs=pairs, targets=targets, options=options)
    try:
        answers = _map(_run_share, shares)
    finally:
        _work.clear()
    done = [
        answer if not isinstance(answer, BaseException) else _lost(pairs, share, options, answer)
        for share, answer in zip(shares, answers, strict=True)
    ]
    merged = _merge(pairs, targets, shares, done)
    if on_result is not None:
        for index, result in merged.pop("indexed"):
            on_result(index, result)
    run: RunResult = merged["run"]
    if merged["signum"] is not None:
        raise Interrupted(run, merged["signum"])
    return run


def _lost(
    pairs: Sequence[tuple[m.Scenario, m.Target]], share: list[int], options: Any, why: BaseException
) -> tuple[RunResult, None]:
    """A worker that died (killed, out of memory, a result it could not send back): its
    runs become errors, and every other worker's results stand."""
    from smtpscript.runner import lost_result

    reason = f"the worker process running it died: {type(why).__name__}: {why}"
    results = [lost_result(*pairs[i], options, reason) for i in share]
    return RunResult(scenarios=results, targets=[]), None


def _run_share(share: list[int]) -> tuple[RunResult, int | None]:
    from smtpscript.runner import Interrupted, run

    pairs = [_work["pairs"][i] for i in share]
    try:
        return run([], _work["targets"], _work["options"], None, pairs), None
    except Interrupted as stop:
        return stop.result, stop.signum


def _map(function: Callable[[list[int]], Any], shares: list[list[int]]) -> list[Any]:
    """``function`` over the shares, one process each: each share's answer, or the
    exception that cost it (a worker that died loses its share, not the others'). A
    SIGINT or SIGTERM that reaches the parent is passed on to the workers (which stop and
    return what finished), while the parent goes on waiting for them."""
    children: list[Any] = []
    context = multiprocessing.get_context("fork")
    # a pool of one process per share: a pool whose process dies fails all it holds,
    # and that must be one share, not every worker's
    with contextlib.ExitStack() as pools:
        futures = []
        for share in shares:  # each submit forks its worker now
            pool = pools.enter_context(ProcessPoolExecutor(1, mp_context=context))
            futures.append(pool.submit(function, share))
            children += list(getattr(pool, "_processes", {}).values())

        def forward(signum: int, frame: object) -> None:
            for child in children:
                with contextlib.suppress(OSError):
                    os.kill(child.pid, signum)

        previous = _handle((signal.SIGINT, signal.SIGTERM), forward)
        try:
            return [_answer(future) for future in futures]
        finally:
            _handle(previous)


def _answer(future: Future[Any]) -> Any:
    try:
        return future.result()
    except Exception as exc:  # BrokenProcessPool, an unpicklable result, a bug in a worker
        return exc


def _merge(
    pairs: Sequence[tuple[m.Scenario, m.Target]],
    targets: list[m.Target],
    shares: list[list[int]],
    done: list[tuple[RunResult, int | None]],
) -> dict[str, Any]:
    """The workers' results in the planned order, as one run."""
    indexed: list[tuple[int, ScenarioResult]] = []
    for share, (run, _) in zip(shares, done, strict=True):
        place = {(pairs[i][0].file, pairs[i][1].name): i for i in share}
        indexed += [(place[(r.file, r.target.name)], r) for r in run.scenarios]
    indexed.sort(key=lambda item: item[0])
    runs = [run for run, _ in done if run.started_at] or [run for run, _ in done]  # not lost
    infos = {info.name: info for run in runs for info in run.targets}
    incomplete = [run.incomplete for run in runs if run.incomplete]
    signum = next((s for _, s in done if s is not None), None)
    merged = RunResult(
        tool_version=runs[0].tool_version,
        started_at=min(r.started_at for r in runs),
        finished_at=max(r.finished_at for r in runs),
        duration_ms=max(r.duration_ms for r in runs),  # they ran side by side
        targets=[infos[t.name] for t in targets if t.name in infos],
        scenarios=[result for _, result in indexed],
        incomplete="; ".join(incomplete) or None,
    )
    return {"run": merged, "indexed": indexed, "signum": signum}


# --- load mode ---------------------------------------------------------------------------


def load_outcomes(
    scenario: m.Scenario, target: m.Target, options: Any, plan: Any, workers: int
) -> tuple[list[Any], list[str]]:
    """The load plan split over ``workers`` processes: sessions, concurrency and rate
    divided, the duration the same for all. Their outcomes, to be added up, and a line
    for each worker that died."""
    workers = max(1, min(workers, plan.concurrency))
    parts = [_part(plan, n, workers) for n in range(workers)]
    parts = [p for p in parts if p.repeat is None or p.repeat > 0]
    _work.update(scenario=scenario, target=target, options=options, parts=parts)
    try:
        answers = _map(_run_load_part, [[n] for n in range(len(parts))])
    finally:
        _work.clear()
    lost = [a for a in answers if isinstance(a, BaseException)]
    if len(lost) == len(answers):
        raise lost[0]  # nothing to report: a bug (exit 3) rather than an empty run
    return [a for a in answers if not isinstance(a, BaseException)], [
        f"a worker process died ({type(e).__name__}: {e}): its sessions are missing" for e in lost
    ]


def _part(plan: Any, n: int, workers: int) -> Any:
    def share(total: int) -> int:
        return total // workers + (1 if n < total % workers else 0)

    return replace(
        plan,
        repeat=share(plan.repeat) if plan.repeat is not None else None,
        concurrency=max(1, share(plan.concurrency)),
        rate=plan.rate / workers if plan.rate else None,
    )


def _run_load_part(which: list[int]) -> Any:
    from smtpscript import loadmode

    part = _work["parts"][which[0]]
    return loadmode.run_outcome(_work["scenario"], _work["target"], _work["options"], part)
