"""Per target: the posture line and the server facts the runs gathered on the way.

A manager reads one line per server ("mx1: 2 critical, 1 high; relay 0/16 accepted;
STARTTLS TLS 1.3, certificate valid 61 days; AUTH only after TLS"); an auditor finds
beneath it what the server said about itself: its banner, its EHLO capabilities before
and after TLS, the TLS version, cipher and certificate. Nothing is probed for this:
every fact comes from the replies the scenarios already recorded. The HTML report and
the Markdown summary both show it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from smtpscript.results import SEVERITY_ORDER, RunResult, ScenarioResult, TlsFacts

NOT_CHECKED = "not checked (verify: false)"  # tlsinfo's verify_error when verify is off


@dataclass(frozen=True)
class TlsSummary:
    """The TLS a target negotiated (the first verified session, else the first)."""

    facts: TlsFacts
    verified: bool  # some session verified the certificate
    verify_error: str | None  # why it did not, when no session did and one tried

    @property
    def words(self) -> str:
        f = self.facts
        text = f"TLS {_version(f.version)}"
        if f.days_left is not None and f.days_left < 0:
            return f"{text}, certificate expired {-f.days_left} days ago"
        if self.verified:
            days = f", {f.days_left} days left" if f.days_left is not None else ""
            return f"{text}, certificate valid{days}"
        if self.verify_error:
            return f"{text}, certificate does not verify ({self.verify_error})"
        days = f", {f.days_left} days left" if f.days_left is not None else ""
        return f"{text}, certificate not checked{days}"


@dataclass(frozen=True)
class Posture:
    """One target as the summary shows it."""

    name: str
    where: str  # host:port
    findings: list[tuple[str, int]]  # (severity, failed runs), worst first, non-zero only
    errors: int
    judged: int  # runs that passed or failed
    total: int
    banner: str | None = None
    capabilities: list[str] = field(default_factory=list)  # EHLO keywords before TLS
    capabilities_tls: list[str] | None = None  # after STARTTLS (None: never seen)
    starttls: bool | None = None  # offered in EHLO (None: no EHLO seen)
    tls: TlsSummary | None = None
    auth: str | None = None  # "only after TLS", "offered before TLS", "not offered"
    relay: tuple[int, int] | None = None  # relay checks failed (accepted), judged

    @property
    def line(self) -> str:
        """``mx1: 2 critical, 1 high; relay 0/16 accepted; STARTTLS TLS 1.3, ...``."""
        return f"{self.name}: {self.summary}"

    @property
    def summary(self) -> str:
        parts = [", ".join(f"{n} {s}" for s, n in self.findings) or "no findings"]
        if self.errors:
            parts.append(f"{self.errors} could not be judged")
        if self.relay is not None:  # a failed relay check is a relay the server accepted
            parts.append(f"relay {self.relay[0]}/{self.relay[1]} accepted")
        if self.tls is not None:
            parts.append(f"STARTTLS {self.tls.words}" if self.starttls else self.tls.words)
        elif self.starttls is False:
            parts.append("no STARTTLS")
        if self.auth:
            parts.append(f"AUTH {self.auth}")
        return "; ".join(parts)


def target_names(run: RunResult) -> list[str]:
    """Every target of the run in its order, then any only its results name (a merged run)."""
    names = [t.name for t in run.targets]
    for result in run.scenarios:
        if result.target.name not in names:
            names.append(result.target.name)
    return names


def postures(run: RunResult, names: list[str]) -> list[Posture]:
    by_target: dict[str, list[ScenarioResult]] = {name: [] for name in names}
    for result in run.scenarios:
        by_target.setdefault(result.target.name, []).append(result)
    hosts = {t.name: f"{t.host}:{t.port}" for t in run.targets}
    out = []
    for name, results in by_target.items():
        if not results:
            continue
        where = hosts.get(name) or f"{results[0].target.host}:{results[0].target.port}"
        out.append(posture(name, where, results))
    return out


def posture(name: str, where: str, results: list[ScenarioResult]) -> Posture:
    failed = Counter(r.severity for r in results if r.verdict == "failed")
    order = [*SEVERITY_ORDER, *sorted(s for s in failed if s not in SEVERITY_ORDER)]
    plain, after_tls = _capabilities(results)
    relay = [r for r in results if "relay" in r.tags and r.verdict in ("passed", "failed")]
    return Posture(
        name=name,
        where=where,
        findings=[(s, failed[s]) for s in order if failed[s]],
        errors=sum(r.verdict == "error" for r in results),
        judged=sum(r.verdict in ("passed", "failed") for r in results),
        total=len(results),
        banner=_banner(results),
        capabilities=plain or [],
        capabilities_tls=after_tls,
        starttls=None if plain is None else "STARTTLS" in _keywords(plain),
        tls=_tls(results),
        auth=_auth(plain, after_tls),
        relay=(sum(r.verdict == "failed" for r in relay), len(relay)) if relay else None,
    )


def _banner(results: list[ScenarioResult]) -> str | None:
    """The greeting most runs got (the first line of a 220 to a connect)."""
    seen: Counter[str] = Counter()
    for result in results:
        for step in result.steps:
            if step.kind == "connect" and step.replies and step.replies[0].code == 220:
                lines = step.replies[0].lines
                seen[f"220 {lines[0]}" if lines else "220"] += 1
                break
    return seen.most_common(1)[0][0] if seen else None


def _capabilities(results: list[ScenarioResult]) -> tuple[list[str] | None, list[str] | None]:
    """EHLO keywords before TLS and after STARTTLS (the first of each seen; None: none)."""
    plain: list[str] | None = None
    after: list[str] | None = None
    for result in results:
        tls = False
        for step in result.steps:
            if step.tls is not None and step.kind in ("starttls", "connect"):
                tls = True
            if step.kind != "ehlo" or not step.replies or step.replies[-1].code != 250:
                continue
            keywords = step.replies[-1].lines[1:]
            if tls and after is None:
                after = keywords
            elif not tls and plain is None:
                plain = keywords
        if plain is not None and after is not None:
            break
    return plain, after


def _keywords(capabilities: list[str]) -> set[str]:
    return {c.split(" ", 1)[0].upper() for c in capabilities}


def _auth(plain: list[str] | None, after: list[str] | None) -> str | None:
    before = plain is not None and "AUTH" in _keywords(plain)
    later = after is not None and "AUTH" in _keywords(after)
    if before:
        return "offered before TLS"
    if later:
        return "only after TLS"
    if plain is not None and after is not None:
        return "not offered"
    return None


def _tls(results: list[ScenarioResult]) -> TlsSummary | None:
    sessions = [s.tls for r in results for s in r.steps if s.tls is not None and s.tls.version]
    if not sessions:
        return None
    verified = [f for f in sessions if f.verified]
    errors = [f.verify_error for f in sessions if f.verify_error and f.verify_error != NOT_CHECKED]
    chosen = verified[0] if verified else sessions[0]
    return TlsSummary(chosen, bool(verified), None if verified else (errors[0] if errors else None))


def _version(version: str | None) -> str:
    """``TLSv1.3`` -> ``1.3`` (the posture line says TLS already)."""
    if not version:
        return "(version unknown)"
    return version.removeprefix("TLSv") if version.startswith("TLSv") else version
