"""Domain targets: ``-t mx:DOMAIN[:PORT]`` stands for every MX host of the domain.

RFC 5321 5.1: the MX records, lowest preference first; a domain without MX
records is its own implicit MX (its A/AAAA records); a null MX (RFC 7505,
``0 .``) says the domain accepts no mail. Lookups go to ``--resolver IP[:PORT]``
or the system's resolver, each bounded by LIFETIME seconds, and several run at
once in threads. dnspython is imported here, and only when a domain target is
used: the CLI's start-up never pays for it.

Before the runs, ``add_posture`` gives each domain target the facts scenarios
read as ``mta_sts`` (smtpscript.mtasts) and ``dane`` (smtpscript.dane).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from smtpscript import model as m
from smtpscript.errors import ConfigError

if TYPE_CHECKING:
    from smtpscript.library import TargetSpec

MX_PREFIX = "mx:"
SMTP_PORT = 25
LIFETIME = 3.0  # seconds one lookup may take, retries included: a dead resolver costs this
ATTEMPT = 1.5  # seconds one query waits for its answer before it is sent again
MAX_THREADS = 16
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_T = TypeVar("_T")
_R = TypeVar("_R")


class DnsFailure(Exception):
    """No usable answer (NXDOMAIN, timeout, SERVFAIL); the message is one line saying why."""

    def __init__(self, message: str, *, nxdomain: bool = False):
        super().__init__(message)
        self.nxdomain = nxdomain


@dataclass(frozen=True)
class Lookup:
    records: tuple[Any, ...]  # dnspython rdata; empty when the name has none of this type
    ad: bool  # the resolver's AD bit: it validated the answer with DNSSEC


class Dns:
    """One resolver (``--resolver IP[:PORT]``, else the system's) with bounded lookups."""

    def __init__(self, spec: str | None = None):
        import dns.flags
        import dns.resolver

        if spec is None:
            try:
                self.resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                raise ConfigError(
                    "no DNS server configured on this system: pass --resolver IP[:PORT]"
                ) from None
            self.server = "the system's resolver (" + ", ".join(map(str, self._servers())) + ")"
        else:
            address, port = parse_resolver(spec)
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [address]
            self.resolver.port = port
            self.server = m.hostport(address, port)
        self.resolver.timeout = ATTEMPT
        self.resolver.lifetime = LIFETIME
        self.resolver.cache = None
        # RFC 6840 5.7: AD in a query asks the resolver to say whether it validated
        self.resolver.flags = dns.flags.RD | dns.flags.AD
        self.resolver.use_edns(0, 0, 1232)

    def _servers(self) -> list[object]:
        return list(self.resolver.nameservers)

    def lookup(self, name: str, rdtype: str) -> Lookup:
        """The ``rdtype`` records of ``name``; none when it has none; DnsFailure otherwise."""
        import dns.exception
        import dns.flags
        import dns.resolver

        try:
            answer = self.resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            raise DnsFailure(f"{name} does not exist (NXDOMAIN)", nxdomain=True) from None
        except dns.exception.Timeout:
            raise DnsFailure(
                f"no answer for {name} {rdtype} from {self.server} within {LIFETIME:g} s"
            ) from None
        except dns.resolver.NoNameservers:
            raise DnsFailure(
                f"{self.server} could not answer for {name} {rdtype} (SERVFAIL or refused)"
            ) from None
        except dns.exception.DNSException as exc:
            raise DnsFailure(f"DNS lookup of {name} {rdtype} failed: {exc}") from None
        ad = bool(answer.response.flags & dns.flags.AD)
        return Lookup(tuple(answer.rrset) if answer.rrset is not None else (), ad)

    def addresses(self, name: str) -> tuple[str, ...]:
        """IPv4 addresses first, then IPv6; empty when the name has none or does not exist."""
        found: list[str] = []
        failure: DnsFailure | None = None
        for rdtype in ("A", "AAAA"):
            try:
                found += [r.address for r in self.lookup(name, rdtype).records]
            except DnsFailure as exc:
                if exc.nxdomain:
                    return ()
                failure = failure or exc
        if failure is not None and not found:
            raise failure
        return tuple(found)


def parse_resolver(spec: str) -> tuple[str, int]:
    """``--resolver`` IP, IP:PORT, IPv6 or [IPv6]:PORT."""
    text = spec.strip()
    port = 53
    if text.startswith("["):
        address, sep, after = text[1:].partition("]")
        if not sep or (after and not after.startswith(":")):
            raise _bad_resolver(spec)
        port = _port(after[1:], f"--resolver {spec!r}") if after else port
    elif text.count(":") == 1:
        address, _, given = text.partition(":")
        port = _port(given, f"--resolver {spec!r}")
    else:
        address = text
    try:
        return str(ipaddress.ip_address(address)), port
    except ValueError:
        raise _bad_resolver(spec) from None


def _bad_resolver(spec: str) -> ConfigError:
    return ConfigError(
        f"--resolver {spec!r}: expected a DNS server's IP address, IP:PORT or [IPv6]:PORT"
    )


def _port(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ConfigError(f"{what}: port must be a number from 1 to 65535")
    return int(text)


# --- mx:DOMAIN[:PORT] -> MX hosts ----------------------------------------------------------


@dataclass(frozen=True)
class MxHost:
    name: str
    preference: int | None  # None: the implicit MX, the domain's own A/AAAA (RFC 5321 5.1)
    addresses: tuple[str, ...] = ()
    problem: str | None = None  # why it has no address


@dataclass(frozen=True)
class MxSet:
    domain: str
    port: int
    hosts: tuple[MxHost, ...]  # preference order (then by name, for stable labels)
    ad: bool  # the AD bit on the MX answer


def is_domain_target(text: str) -> bool:
    return text.strip().lower().startswith(MX_PREFIX)


def parse_domain_target(text: str) -> tuple[str, int]:
    """(domain, port) of ``mx:DOMAIN`` or ``mx:DOMAIN:PORT``; the domain in ASCII, lower case."""
    value = text.strip()
    rest = value[len(MX_PREFIX) :]
    domain, sep, port_text = rest.partition(":")
    port = _port(port_text, f"-t {value}") if sep else SMTP_PORT
    domain = domain.strip().rstrip(".")
    try:
        ascii_name = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        ascii_name = ""
    labels = ascii_name.split(".")
    if not domain or not all(_LABEL.fullmatch(label) for label in labels) or _is_ip(domain):
        raise ConfigError(f"-t {value}: expected mx:DOMAIN or mx:DOMAIN:PORT with a domain name")
    return ascii_name, port


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def resolve_domains(texts: Iterable[str], resolver: str | None = None) -> dict[str, MxSet]:
    """Each ``mx:`` target's MX hosts, looked up at once; ConfigError with one line per
    domain that cannot be resolved."""
    parsed = {text: parse_domain_target(text) for text in dict.fromkeys(texts)}
    if not parsed:
        return {}
    dns = Dns(resolver)
    outcomes = _each(lambda item: _try_resolve(dns, *item), list(parsed.values()))
    errors = [
        f"-t {text}: {o}" for text, o in zip(parsed, outcomes, strict=True) if isinstance(o, str)
    ]
    if errors:
        raise ConfigError("\n".join(errors))
    return {text: o for text, o in zip(parsed, outcomes, strict=True) if isinstance(o, MxSet)}


def _try_resolve(dns: Dns, domain: str, port: int) -> MxSet | str:
    try:
        return resolve_mx(dns, domain, port)
    except DnsFailure as exc:
        return str(exc)


def resolve_mx(dns: Dns, domain: str, port: int = SMTP_PORT) -> MxSet:
    """The domain's MX hosts with their addresses; DnsFailure when it has none to offer."""
    from dns.name import root

    answer = dns.lookup(domain, "MX")
    if any(r.exchange == root for r in answer.records):
        raise DnsFailure(f"{domain} has a null MX (0 .): it accepts no mail (RFC 7505)")
    pairs = sorted(
        {(r.preference, r.exchange.to_text(omit_final_dot=True).lower()) for r in answer.records}
    )
    if not pairs:  # no MX: the domain itself is the implicit MX
        addresses = dns.addresses(domain)
        if not addresses:
            raise DnsFailure(f"{domain} has no MX records and no A/AAAA records: it takes no mail")
        return MxSet(domain, port, (MxHost(domain, None, addresses),), answer.ad)
    hosts = _each(lambda pair: _mx_host(dns, *pair), pairs)
    return MxSet(domain, port, tuple(hosts), answer.ad)


def _mx_host(dns: Dns, preference: int, name: str) -> MxHost:
    try:
        addresses = dns.addresses(name)
    except DnsFailure as exc:
        return MxHost(name, preference, (), str(exc))
    problem = None if addresses else f"{name} has no A/AAAA records"
    return MxHost(name, preference, addresses, problem)


def _each(work: Callable[[_T], _R], items: list[_T]) -> list[_R]:
    """``work`` on every item, in threads (lookups wait on the network), results in order."""
    if len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(min(MAX_THREADS, len(items)), "smtpscript-dns") as pool:
        return list(pool.map(work, items))


def label(mx: MxSet, host: MxHost) -> str:
    """``example.com (mx1.example.com, pref 10)``: how a domain target is named."""
    if host.preference is None:
        return f"{mx.domain} ({host.name}, no MX: its own A/AAAA)"
    return f"{mx.domain} ({host.name}, pref {host.preference})"


def target_specs(mx: MxSet, ca_file: str | None = None) -> list[TargetSpec]:
    """One target per MX host: its first address, the MX name for SNI and certificate
    checks (RFC 7817), and the domain facts templates see as ``target.domain``/``target.mx``."""
    from smtpscript.library import TargetSpec

    specs = []
    names = [host.name for host in mx.hosts]
    for host in mx.hosts:
        endpoint = m.Endpoint(
            host=host.addresses[0] if host.addresses else host.name,
            port=mx.port,
            tls_options=m.TlsOptions(ca_file=ca_file, server_name=host.name),
        )
        facts = {"domain": mx.domain, "mx": _mx_facts(mx, host, names)}
        target = m.Target(name=label(mx, host), endpoint=endpoint, facts=facts)
        specs.append(TargetSpec(name=target.name, where=endpoint.where(), target=target))
    return specs


def _mx_facts(mx: MxSet, host: MxHost, names: list[str]) -> dict[str, Any]:
    return {
        "host": host.name,
        "preference": host.preference,
        "addresses": list(host.addresses),
        "problem": host.problem,
        "hosts": names,  # every MX host of the domain, in preference order
        "ad": mx.ad,
    }


# --- posture: MTA-STS and DANE facts, once per domain before the runs ----------------------


@dataclass(frozen=True)
class PostureSettings:
    resolver: str | None = None  # --resolver
    mta_sts_ca: str | None = None  # --mta-sts-ca: trust this CA for the policy's HTTPS
    mta_sts_port: int = 443  # --mta-sts-port (tests)
    timeout: float = 5.0  # seconds per connection step (HTTPS fetch, SMTP probe)


def add_posture(specs: list[TargetSpec], settings: PostureSettings) -> list[TargetSpec]:
    """The specs, each domain target's facts completed with ``mta_sts`` and ``dane``; the
    lookups, the policy fetches and the STARTTLS probes run at once, each bounded."""
    domain_specs = [s for s in specs if s.target.facts.get("domain")]
    if not domain_specs:
        return specs
    from smtpscript import dane, mtasts

    dns = Dns(settings.resolver)
    domains = {s.target.facts["domain"]: s.target.facts["mx"]["hosts"] for s in domain_specs}
    with ThreadPoolExecutor(MAX_THREADS, "smtpscript-posture") as pool:
        policies = {
            domain: pool.submit(
                mtasts.check,
                domain,
                hosts,
                dns,
                ca_file=settings.mta_sts_ca,
                port=settings.mta_sts_port,
                timeout=settings.timeout,
            )
            for domain, hosts in domains.items()
        }
        tlsa = {
            s.name: pool.submit(dane.check, s.target, dns, timeout=settings.timeout)
            for s in domain_specs
        }
        completed = {}
        for spec in domain_specs:
            facts = dict(spec.target.facts)
            host = facts["mx"]["host"]
            facts["mta_sts"] = mtasts.for_host(policies[facts["domain"]].result(), host)
            facts["dane"] = tlsa[spec.name].result()
            completed[spec.name] = _with_facts(spec, facts)
    return [completed.get(spec.name, spec) for spec in specs]


def _with_facts(spec: TargetSpec, facts: Mapping[str, Any]) -> TargetSpec:
    return replace(spec, target=replace(spec.target, facts=dict(facts)))
