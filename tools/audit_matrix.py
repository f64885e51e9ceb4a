"""Print the audit matrix as a Markdown table: every check of the built-in library
(scenarios/) x {hardened Postfix, weak Postfix, Exim, sandbox} -> verdict.

    python tools/audit_matrix.py            (from the repository, in its venv)

Runs the library through the library API exactly as tests/test_audit_matrix.py does (one
run per server, -j 4, the server's vars and login: tests/audit_helpers.py), plus the opt-in
RCPT enumeration check with check_rcpt_enumeration=yes. The servers are the ones
tests/postfix_audit/setup.sh and tests/exim/setup.sh start; one that is not running gets
"-" in its column. A verdict other than the one tests/test_audit_matrix.py expects is
marked "(expected ...)". Exit status 1 when any cell differs from the expectation.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from audit_helpers import (  # noqa: E402
    COLUMNS,
    HEADINGS,
    SCENARIOS,
    SERVER_NAMES,
    by_check,
    run_audit,
    run_sandbox_audit,
)
from audit_servers import find_audit_server  # noqa: E402
from test_audit_matrix import MATRIX, RCPT_OPTED_IN  # noqa: E402

from smtpscript.results import ScenarioResult  # noqa: E402

OPT_IN = {"check_rcpt_enumeration": "yes"}
RCPT_CHECK = SCENARIOS / "enumeration" / "rcpt.yaml"
SEVERITY_ORDER = ("critical", "high", "medium", "low", "info")


def column_results(column: str) -> tuple[dict[str, ScenarioResult] | None, str]:
    """The column's results by check (the opted-in RCPT check under RCPT_OPTED_IN), or
    None and why not."""
    if column == "sandbox":
        results = by_check(run_sandbox_audit())
        [opted_in] = run_sandbox_audit([RCPT_CHECK], OPT_IN).run.scenarios
    else:
        server, why = find_audit_server(SERVER_NAMES[column])
        if server is None:
            return None, why
        results = by_check(run_audit(server))
        [opted_in] = run_audit(server, [RCPT_CHECK], OPT_IN).run.scenarios
    return {**results, RCPT_OPTED_IN: opted_in}, ""


def cell(result: ScenarioResult | None, expected: str | None) -> tuple[str, bool]:
    """The cell's text and whether it is what the test expects."""
    if result is None:
        return "-", True
    text = f"**{result.verdict}**" if result.verdict in ("failed", "error") else result.verdict
    if result.verdict != expected:
        return f"{text} (expected {expected or 'no such check'})", False
    return text, True


def main() -> int:
    columns: dict[str, dict[str, ScenarioResult] | None] = {}
    notes = []
    for column in COLUMNS:
        columns[column], why = column_results(column)
        if why:
            notes.append(f"{HEADINGS[column]}: {why}")
    checks = sorted({*MATRIX, *(c for r in columns.values() if r for c in r)})
    headings = [HEADINGS[c] for c in COLUMNS]
    lines = [
        "| check | severity | " + " | ".join(headings) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    as_expected = True
    for check in checks:
        severity = next((r[check].severity for r in columns.values() if r and check in r), "")
        cells = []
        for column in COLUMNS:
            results = columns[column]
            result = results.get(check) if results else None
            text, ok = cell(result, MATRIX.get(check, {}).get(column))
            if results is not None and result is None:
                text, ok = "(missing)", False
            cells.append(text)
            as_expected &= ok
        label = f"`{check}`" if check != RCPT_OPTED_IN else "`enumeration/rcpt.yaml` (opted in)"
        lines.append(f"| {label} | {severity} | " + " | ".join(cells) + " |")
    findings = []
    for column in COLUMNS:
        results = columns[column]
        if results is None:
            findings.append("-")
            continue
        # the opted-in RCPT run is an extra, not part of the audit a user would run
        counts = Counter(
            r.severity for c, r in results.items() if r.verdict == "failed" and c != RCPT_OPTED_IN
        )
        errors = sum(r.verdict == "error" for r in results.values())
        text = ", ".join(f"{counts[s]} {s}" for s in SEVERITY_ORDER if counts[s]) or "none"
        findings.append(text + (f"; {errors} error" + "s" * (errors != 1) if errors else ""))
    lines.append("| **findings** (the library's run) | | " + " | ".join(findings) + " |")
    print("\n".join(lines))
    for note in notes:
        print(f"\n{note}", file=sys.stderr)
    return 0 if as_expected else 1


if __name__ == "__main__":
    sys.exit(main())
