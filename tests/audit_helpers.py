"""The audit library (scenarios/) run through the library API against the audit servers.

Shared by tests/test_audit_library.py, tests/test_audit_matrix.py and tools/audit_matrix.py
(no pytest import: usable from scripts too). The four columns of the audit matrix:

- ``hardened``: tests/postfix_audit/setup.sh's hardened Postfix (SMTP + STARTTLS, and its
  smtps port for the implicit-TLS check), with its SASL login;
- ``weak``: the weak Postfix (no STARTTLS, an open relay for loopback), with its SASL login;
- ``exim``: tests/exim/setup.sh's Exim (STARTTLS, no AUTH: no credentials);
- ``sandbox``: the embedded server, as ``-t sandbox`` starts it.

Each server gets the vars a mail administrator would pass for it (README "Auditing a
server"): its local domain, a local mailbox, ``server_ip`` so that the relay variants with
an IP literal run, and ``recipient``/``nobody`` for basics/ and extensions/.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from audit_servers import AuditServer

from smtpscript.api import RunOutcome, RunRequest, run_paths, run_request
from smtpscript.library import Library, TargetSpec
from smtpscript.model import Endpoint, Target
from smtpscript.results import ScenarioResult, StepResult

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"
JOBS = 4  # scenario runs at once, as `smtpscript run -j 4`

# column -> the audit server's name in audit_servers.SERVERS (the sandbox is started here)
COLUMNS = ("hardened", "weak", "exim", "sandbox")
SERVER_NAMES = {"hardened": "postfix-hardened", "weak": "postfix-weak", "exim": "exim"}
HEADINGS = {
    "hardened": "hardened Postfix",
    "weak": "weak Postfix",
    "exim": "Exim",
    "sandbox": "sandbox",
}

RELAY_VARIANTS = sorted(
    p.name for p in (SCENARIOS / "relay").glob("*.yaml") if p.name != "relay-after-auth.yaml"
)
SMUGGLING = sorted(p.name for p in (SCENARIOS / "smuggling").glob("*.yaml"))


def library_checks() -> list[str]:
    """Every check of the library (fragments aside), as check_key names them, sorted."""
    from smtpscript.loading import load_paths

    loaded = load_paths([SCENARIOS])
    assert not loaded.problems, [str(p) for p in loaded.problems]
    return sorted(check_key(s.file) for s in loaded.scenarios)


def check_key(result_or_file: ScenarioResult | str) -> str:
    """The scenario's path below scenarios/, e.g. relay/bang-path.yaml."""
    file = result_or_file if isinstance(result_or_file, str) else result_or_file.file
    return Path(file).resolve().relative_to(SCENARIOS).as_posix()


def by_check(outcome: RunOutcome) -> dict[str, ScenarioResult]:
    """A run's results by check (one target per run)."""
    results = {check_key(r): r for r in outcome.run.scenarios}
    assert len(results) == len(outcome.run.scenarios), "one target per run expected"
    return results


def verdicts(results: Mapping[str, ScenarioResult]) -> dict[str, str]:
    return {name: r.verdict for name, r in results.items()}


def step_named(result: ScenarioResult, start: str) -> StepResult:
    """The first step whose (rendered) name starts with ``start``."""
    return next(s for s in result.steps if s.name.startswith(start))


# ---------------------------------------------------------------------- running it


def audit_vars(server: AuditServer) -> dict[str, Any]:
    """The --var values for auditing ``server``."""
    mailbox = f"alice@{server.domain}"
    return {
        "local_domain": server.domain,
        "local_mailbox": mailbox,
        "server_ip": server.host,  # 127.0.0.1: the [IP] relay variants run
        "recipient": mailbox,  # basics/ and extensions/
        "nobody": f"nobody-x@{server.domain}",  # basics/unknown-recipient.yaml
    }


def audit_environ(server: AuditServer) -> dict[str, str]:
    """SMTP_USER/SMTP_PASSWORD where the server has SASL (the Postfixes), else nothing."""
    if server.user and server.password:
        return {"SMTP_USER": server.user, "SMTP_PASSWORD": server.password}
    return {}


def audit_library(server: AuditServer) -> Library:
    """No smtpscript.yaml, but one named target: the server's SMTP port and its
    implicit-TLS port (hardened only), where tls/implicit-tls-banner.yaml goes (a plain
    ``-t HOST:PORT`` would send that check to the SMTP port too). Its CA comes from the
    run's ``ca_file`` (--ca-file), as for any library target that names none."""
    target = Target(
        name=server.name,
        endpoint=Endpoint(host=server.host, port=server.port),
        implicit_tls_port=server.smtps_port,
    )
    spec = TargetSpec(name=server.name, where=server.target, target=target)
    return Library(path=None, root=REPO, paths=(SCENARIOS,), targets={server.name: spec})


def run_audit(
    server: AuditServer,
    paths: Sequence[str | Path] = (SCENARIOS,),
    extra_vars: Mapping[str, Any] | None = None,
) -> RunOutcome:
    """``smtpscript run PATHS -t SERVER -j 4 --var ...`` with its login in the environment:
    one call of the library API."""
    request = RunRequest(
        paths=list(paths),
        targets=[server.name],
        variables={**audit_vars(server), **(extra_vars or {})},
        environ=audit_environ(server),
        jobs=JOBS,
        ca_file=Path(server.ca_file),
    )
    outcome = run_request(request, audit_library(server))
    assert not outcome.problems, [str(p) for p in outcome.problems]
    return outcome


def run_sandbox_audit(
    paths: Sequence[str | Path] = (SCENARIOS,), extra_vars: Mapping[str, Any] | None = None
) -> RunOutcome:
    """``smtpscript run PATHS -t sandbox -j 4``: the README's quick start (no --var needed:
    the library's defaults are the sandbox's; its AUTH checks use its own test user)."""
    outcome = run_paths(
        list(paths),
        targets=["sandbox"],
        variables=dict(extra_vars or {}),
        environ={},
        jobs=JOBS,
        library=Library.none(REPO),
    )
    assert not outcome.problems, [str(p) for p in outcome.problems]
    return outcome
