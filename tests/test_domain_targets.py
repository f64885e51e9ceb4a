"""Domain targets (-t mx:DOMAIN): MX hosts in preference order, the A/AAAA fallback,
DNS failures as one line per domain, MTA-STS and DANE facts, all on loopback.

A small authoritative DNS server (dnspython's message API, UDP and TCP on one free
port) serves example.test; two sandboxes are its MX hosts (mx1 on 127.0.0.1, mx2 on
127.0.0.2, the same port, so that ``mx:example.test:PORT`` reaches both); an HTTPS
server with a CA made here serves the MTA-STS policy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import json
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from scenario_helpers import cli, steps_file

from smtpscript import dane, mtasts
from smtpscript.api import RunOutcome, load_results, run_paths
from smtpscript.domains import Dns, parse_domain_target, parse_resolver
from smtpscript.errors import ConfigError
from smtpscript.results import to_dict
from smtpscript.sandbox import Sandbox, SandboxConfig
from smtpscript.schemafile import reader_validator

REPO = Path(__file__).resolve().parent.parent
DOMAIN_SCENARIOS = REPO / "scenarios" / "domain"
MTA_STS_CHECK = DOMAIN_SCENARIOS / "mta-sts-enforced.yaml"
DANE_CHECK = DOMAIN_SCENARIOS / "dane-tlsa-match.yaml"
DNSSEC_CHECK = DOMAIN_SCENARIOS / "dane-dnssec.yaml"
MX1, MX2 = "mx1.example.test", "mx2.example.test"
LABEL1 = "example.test (mx1.example.test, pref 10)"
LABEL2 = "example.test (mx2.example.test, pref 20)"
ENFORCE = (
    "version: STSv1\nmode: enforce\nmx: mx1.example.test\nmx: *.example.test\nmax_age: 86400\n"
)


# --- a loopback authoritative DNS server ----------------------------------------------------


class LoopbackDns:
    """Answers from ``records`` ({(name, type): [rdata text]}), authoritatively, on UDP and
    TCP; other names are NXDOMAIN, other types of a known name an empty answer. With
    ``ad`` it sets the AD bit as a validating resolver would; names in ``silent`` get no
    answer at all."""

    def __init__(self, records: dict[tuple[str, str], list[str]], *, ad: bool = False):
        self.records = records
        self.ad = ad
        self.silent: set[str] = set()
        self.queries: list[tuple[str, str]] = []
        self._udp, self._tcp = _bound_pair()
        self.port = self._udp.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="loopback-dns", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> LoopbackDns:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._udp.close()
        self._tcp.close()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._udp, selectors.EVENT_READ, "udp")
            selector.register(self._tcp, selectors.EVENT_READ, "tcp")
            while not self._stop.is_set():
                for key, _ in selector.select(0.1):
                    if key.data == "udp":
                        data, peer = self._udp.recvfrom(65535)
                        answer = self.answer(data, 1232)
                        if answer is not None:
                            self._udp.sendto(answer, peer)
                    else:
                        self._serve_tcp()

    def _serve_tcp(self) -> None:
        conn, _ = self._tcp.accept()
        with conn:
            conn.settimeout(2)
            try:
                size = int.from_bytes(_read_exactly(conn, 2), "big")
                answer = self.answer(_read_exactly(conn, size), 65535)
                if answer is not None:
                    conn.sendall(len(answer).to_bytes(2, "big") + answer)
            except OSError:
                pass

    def answer(self, data: bytes, limit: int) -> bytes | None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, kind))
        if name in self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA | (dns.flags.AD if self.ad else 0)
        if not any(known == name for known, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif (name, kind) in self.records:
            rrset = dns.rrset.from_text_list(
                question.name, 300, dns.rdataclass.IN, question.rdtype, self.records[name, kind]
            )
            response.answer.append(rrset)
        return response.to_wire(max_size=limit)


def _bound_pair() -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same free loopback port."""
    for _ in range(20):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen()
        return udp, tcp
    raise RuntimeError("no free port for both UDP and TCP")


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


# --- certificates and the MTA-STS policy server ---------------------------------------------


@dataclass
class Pki:
    """A CA made for the test, and certificates it signs."""

    folder: Path
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def __post_init__(self) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtpscript test CA")])
        self.cert = (
            _builder(name, name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_path = self.folder / "ca.pem"
        self.ca_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, host: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
        cert = (
            _builder(subject, self.cert.subject, key.public_key())
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert, key

    def server_context(self, host: str) -> ssl.SSLContext:
        cert, key = self.issue(host)
        cert_path, key_path = self.folder / f"{host}.pem", self.folder / f"{host}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        return context


def _builder(subject: x509.Name, issuer: x509.Name, key: Any) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
    )


class PolicyServer:
    """https://mta-sts.*/.well-known/mta-sts.txt on loopback: ``policy`` (text), served
    as text/plain, or ``status``/``content_type``/``body`` when a test changes them."""

    def __init__(self, context: ssl.SSLContext):
        self.policy = ENFORCE
        self.status = 200
        self.content_type = "text/plain"
        self.hosts: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hosts.append(self.headers.get("Host", ""))
                body = owner.policy.encode() if self.path == mtasts.POLICY_PATH else b""
                status = owner.status if body else 404
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "https://elsewhere.test/")
                self.send_header("Content-Type", owner.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> PolicyServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


# --- the world: two MX sandboxes, DNS, the policy server -----------------------------------


@dataclass
class World:
    dns: LoopbackDns
    policy: PolicyServer
    mx1: Sandbox
    mx2: Sandbox
    pki: Pki
    trust: Path  # both sandboxes' certificates: --ca-file for a verified STARTTLS
    bad_policy_port: int = 0

    @property
    def port(self) -> int:
        return self.mx1.port

    def run(self, paths: list[Path], target: str = "mx:example.test", **extra: Any) -> RunOutcome:
        settings: dict[str, Any] = {
            "targets": [f"{target}:{self.port}" if target.count(":") == 1 else target],
            "resolver": self.dns.address,
            "mta_sts_ca": self.pki.ca_path,
            "mta_sts_port": self.policy.port,
            "ca_file": self.trust,
            "jobs": 2,
        }
        return run_paths(paths, **{**settings, **extra})


def _spki_sha256(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def _cert_sha256(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("domain")
    mx1 = Sandbox(SandboxConfig(port=0, domain=MX1)).start()
    try:
        mx2 = Sandbox(SandboxConfig(host="127.0.0.2", port=mx1.port, domain=MX2)).start()
    except Exception:
        mx1.stop()
        raise
    assert mx1.cert_path and mx2.cert_path
    trust = folder / "mx-certs.pem"
    trust.write_bytes(mx1.cert_path.read_bytes() + mx2.cert_path.read_bytes())
    pki = Pki(folder)
    policy = PolicyServer(pki.server_context("mta-sts.example.test")).start()
    port = mx1.port
    records = {
        ("example.test", "MX"): ["10 mx1.example.test.", "20 mx2.example.test."],
        ("mx1.example.test", "A"): ["127.0.0.1"],
        ("mx2.example.test", "A"): ["127.0.0.2"],
        ("_mta-sts.example.test", "TXT"): ['"v=STSv1; id=20240101T000000"'],
        ("mta-sts.example.test", "A"): ["127.0.0.1"],
        (f"_{port}._tcp.mx1.example.test", "TLSA"): [f"3 1 1 {_spki_sha256(mx1.cert_path)}"],
        (f"_{port}._tcp.mx2.example.test", "TLSA"): [f"3 1 1 {'ab' * 32}"],
        # no MX: the domain is its own MX (RFC 5321 5.1), here mx1's address
        ("nomx.test", "A"): ["127.0.0.1"],
        ("nomx.test", "TXT"): ['"v=spf1 -all"'],
        ("nullmx.test", "MX"): ["0 ."],
        ("empty.test", "TXT"): ['"nothing else here"'],
        # DANE-TA with a self-issued server certificate (2 0 1), and DANE-EE 3 0 1 of mx1
        ("ta.test", "MX"): ["10 mx1.example.test."],
        ("full.test", "MX"): ["10 mx1.example.test."],
    }
    dns_server = LoopbackDns(records).start()
    world = World(dns_server, policy, mx1, mx2, pki, trust)
    try:
        yield world
    finally:
        dns_server.stop()
        policy.stop()
        mx2.stop()
        mx1.stop()


@pytest.fixture
def fresh_policy(world: World) -> Iterator[PolicyServer]:
    """The policy server, put back as it was after the test."""
    yield world.policy
    world.policy.policy, world.policy.status = ENFORCE, 200
    world.policy.content_type = "text/plain"


def _by_target(outcome: RunOutcome) -> dict[str, Any]:
    """Results by target label, once they have shown they fit the results schema."""
    errors = [e.message for e in reader_validator("results").iter_errors(to_dict(outcome.run))]
    assert errors == []
    return {r.target.name: r for r in outcome.run.scenarios}


def _explain(result: Any) -> str:
    return f"{result.target.name}: {result.verdict}: {result.reason}"


# --- MX hosts in preference order -----------------------------------------------------------


def test_mx_target_runs_against_each_mx_host_in_preference_order(world, tmp_path):
    path = steps_file(tmp_path, "- ehlo: audit.example.org\n- send: QUIT\n  expect: 221")
    outcome = world.run([path])
    assert not outcome.problems and not outcome.warnings
    assert [t.name for t in outcome.run.targets] == [LABEL1, LABEL2]
    results = _by_target(outcome)
    assert [r.verdict for r in results.values()] == ["passed", "passed"], list(
        map(_explain, results.values())
    )
    # each label's runs went to its own MX host: the sandboxes greet with their names
    for label, host, address in ((LABEL1, MX1, "127.0.0.1"), (LABEL2, MX2, "127.0.0.2")):
        result = results[label]
        assert result.target.host == address and result.target.port == world.port
        assert result.steps[1].replies[0].lines[0].startswith(host)
        assert result.target.facts["domain"] == "example.test"
        assert result.target.facts["mx"]["host"] == host
        assert result.target.facts["mx"]["hosts"] == [MX1, MX2]
    assert results[LABEL1].target.facts["mx"]["preference"] == 10


def test_templates_see_the_domain_the_mx_host_and_its_posture(world, tmp_path):
    steps = """
    - send: "NOOP {{ target.domain }} {{ target.mx.host }} {{ target.mx.preference }}"
    - send: "NOOP mode={{ mta_sts.mode }} match={{ mta_sts.mx_match }} dane={{ dane.match }}"
    - send: QUIT
      expect: 221
    """
    path = steps_file(tmp_path, steps, extra='when: "target.domain is not none"\n')
    results = _by_target(world.run([path]))
    assert results[LABEL1].steps[1].sent == ["NOOP example.test mx1.example.test 10"]
    assert results[LABEL1].steps[2].sent == ["NOOP mode=enforce match=True dane=True"]
    assert results[LABEL2].steps[2].sent == ["NOOP mode=enforce match=True dane=False"]
    # the same scenario on a plain target: the domain names are None, so it is skipped
    plain = run_paths([path], targets=["sandbox"])
    assert [r.verdict for r in plain.run.scenarios] == ["skipped"]


def test_without_mx_records_the_domain_is_its_own_mx(world, tmp_path):
    path = steps_file(tmp_path, "- ehlo: audit.example.org")
    outcome = world.run([path], "mx:nomx.test")
    [result] = outcome.run.scenarios
    assert result.target.name == "nomx.test (nomx.test, no MX: its own A/AAAA)"
    assert result.verdict == "passed", _explain(result)
    assert result.target.host == "127.0.0.1"
    assert result.target.facts["mx"]["preference"] is None


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("nosuch.test", "-t mx:nosuch.test:{port}: nosuch.test does not exist (NXDOMAIN)"),
        (
            "empty.test",
            "-t mx:empty.test:{port}: empty.test has no MX records and no A/AAAA records: "
            "it takes no mail",
        ),
        (
            "nullmx.test",
            "-t mx:nullmx.test:{port}: nullmx.test has a null MX (0 .): it accepts no mail "
            "(RFC 7505)",
        ),
    ],
)
def test_missing_dns_is_one_line_naming_the_domain(world, tmp_path, domain, expected):
    path = steps_file(tmp_path, "- ehlo: audit.example.org")
    with pytest.raises(ConfigError) as caught:
        world.run([path], f"mx:{domain}")
    assert str(caught.value) == expected.format(port=world.port)


def test_each_failing_domain_gets_its_line_and_a_dead_resolver_costs_seconds(world, tmp_path):
    path = steps_file(tmp_path, "- ehlo: audit.example.org")
    world.dns.silent.add("slow.test")
    started = time.monotonic()
    try:
        with pytest.raises(ConfigError) as caught:
            world.run([path], targets=["mx:slow.test", "mx:nosuch.test"])
    finally:
        world.dns.silent.discard("slow.test")
    assert time.monotonic() - started < 6  # both at once, each bounded by 3 s
    assert str(caught.value).splitlines() == [
        f"-t mx:slow.test: no answer for slow.test MX from {world.dns.address} within 3 s",
        "-t mx:nosuch.test: nosuch.test does not exist (NXDOMAIN)",
    ]


def test_the_cli_prints_one_line_and_exits_2(world, tmp_path, capsys):
    path = steps_file(tmp_path, "- ehlo: audit.example.org")
    status, out, err = cli(
        capsys, "run", path, "-t", "mx:nosuch.test", "--resolver", world.dns.address
    )
    assert status == 2 and out == ""
    assert err == "smtpscript: error: -t mx:nosuch.test: nosuch.test does not exist (NXDOMAIN)\n"


def test_the_cli_runs_a_domain_target_and_writes_its_facts(world, tmp_path, capsys):
    results = tmp_path / "results.json"
    status, out, err = cli(
        capsys, "run", MTA_STS_CHECK, "-t", f"mx:example.test:{world.port}",
        "--resolver", world.dns.address, "--ca-file", world.trust,
        "--mta-sts-ca", world.pki.ca_path, "--mta-sts-port", world.policy.port,
        "--json", results,
    )  # fmt: skip
    assert status == 0, out + err
    assert LABEL1 in out and LABEL2 in out
    data = json.loads(results.read_text("utf-8"))
    facts = data["targets"][0]["facts"]
    assert facts["mta_sts"]["mode"] == "enforce" and facts["dane"]["match"] is True
    # smtpscript report reads them back (schema-checked), facts and all
    assert load_results([results]).targets[1].facts["dane"]["match"] is False


@pytest.mark.parametrize(
    "bad", ["example.test", "localhost:53:1", "[::1", "127.0.0.1:0", "127.0.0.1:x"]
)
def test_resolver_must_be_an_address(bad):
    with pytest.raises(ConfigError, match="--resolver"):
        parse_resolver(bad)


def test_resolver_forms():
    assert parse_resolver("192.0.2.1") == ("192.0.2.1", 53)
    assert parse_resolver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_resolver("[::1]:5353") == ("::1", 5353)
    assert parse_resolver("::1") == ("::1", 53)


@pytest.mark.parametrize(
    "bad", ["mx:", "mx:127.0.0.1", "mx:exa mple.test", "mx:a..b", "mx:a.test:99999"]
)
def test_domain_target_forms(bad):
    with pytest.raises(ConfigError, match="-t mx:"):
        parse_domain_target(bad)
    assert parse_domain_target("mx:Example.TEST.") == ("example.test", 25)
    assert parse_domain_target("mx:example.test:2525") == ("example.test", 2525)


def test_tcp_answers_too(world):
    """The test server also speaks DNS over TCP (the fallback for truncated answers)."""
    resolver = Dns(world.dns.address).resolver
    answer = resolver.resolve("example.test", "MX", tcp=True, search=False)
    assert sorted(r.preference for r in answer) == [10, 20]


# --- MTA-STS ----------------------------------------------------------------------------------


def test_mta_sts_enforce_with_every_mx_covered_passes(world, fresh_policy):
    outcome = world.run([MTA_STS_CHECK])
    results = _by_target(outcome)
    assert [r.verdict for r in results.values()] == ["passed", "passed"], list(
        map(_explain, results.values())
    )
    facts = results[LABEL2].target.facts["mta_sts"]
    assert facts["record"] == "v=STSv1; id=20240101T000000" and facts["id"] == "20240101T000000"
    assert facts["policy"] == {
        "version": "STSv1",
        "mode": "enforce",
        "max_age": 86400,
        "mx": ["mx1.example.test", "*.example.test"],
    }
    assert facts["mx"] == {MX1: True, MX2: True} and facts["mx_match"] is True
    assert facts["error"] is None
    assert fresh_policy.hosts[-1] == f"mta-sts.example.test:{world.policy.port}"


def test_mta_sts_testing_mode_is_a_finding(world, fresh_policy):
    fresh_policy.policy = ENFORCE.replace("enforce", "testing")
    results = _by_target(world.run([MTA_STS_CHECK]))
    for result in results.values():
        assert result.verdict == "failed"
        assert "the MTA-STS policy of example.test is in testing mode, not enforce" in (
            result.reason or ""
        )
        assert result.target.facts["mta_sts"]["mode"] == "testing"


def test_mta_sts_mode_none(world, fresh_policy):
    fresh_policy.policy = "version: STSv1\nmode: none\nmax_age: 86400\n"
    results = _by_target(world.run([MTA_STS_CHECK]))
    result = results[LABEL1]
    assert result.verdict == "failed" and "in none mode, not enforce" in (result.reason or "")
    facts = result.target.facts["mta_sts"]
    assert facts["mode"] == "none" and facts["policy"]["mx"] == []
    assert facts["mx"] == {MX1: False, MX2: False} and facts["mx_match"] is False


def test_an_mx_host_outside_the_patterns_is_named(world, fresh_policy):
    fresh_policy.policy = ENFORCE.replace("mx: *.example.test\n", "mx: *.mail.example.test\n")
    results = _by_target(world.run([MTA_STS_CHECK]))
    assert results[LABEL1].target.facts["mta_sts"]["mx_match"] is True
    assert results[LABEL2].target.facts["mta_sts"]["mx_match"] is False
    for result in results.values():  # the policy fails the domain, so every MX host's run
        assert result.verdict == "failed"
        assert (
            "the MTA-STS policy's mx patterns (mx1.example.test, *.mail.example.test) do not "
            "cover mx2.example.test" in (result.reason or "")
        )


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"status": 404}, "HTTP 404"),
        ({"status": 301}, "redirected to https://elsewhere.test/ (RFC 8461 3.3: not followed)"),
        ({"content_type": "text/html"}, "Content-Type text/html, not text/plain"),
        ({"policy": "version: STSv1\nmode: enforce\nmax_age: 86400\n"}, "mode enforce without"),
        ({"policy": "x" * (mtasts.MAX_POLICY_BYTES + 1)}, "larger than 64 KiB"),
    ],
)
def test_a_policy_a_sender_would_refuse_is_no_policy(world, fresh_policy, change, error):
    for name, value in change.items():
        setattr(fresh_policy, name, value)
    result = _by_target(world.run([MTA_STS_CHECK]))[LABEL1]
    assert result.verdict == "failed"
    facts = result.target.facts["mta_sts"]
    assert facts["policy"] is None and facts["mode"] is None
    assert error in facts["error"] and "no MTA-STS policy for example.test" in result.reason


def test_the_policy_certificate_is_verified(world, fresh_policy):
    outcome = world.run([MTA_STS_CHECK], mta_sts_ca=world.trust)  # not the policy's CA
    facts = _by_target(outcome)[LABEL1].target.facts["mta_sts"]
    assert "certificate not valid for mta-sts.example.test" in facts["error"]


def test_no_txt_record_means_no_policy(world, tmp_path):
    path = steps_file(tmp_path, "- ehlo: audit.example.org")
    [result] = world.run([path], "mx:nomx.test").run.scenarios
    facts = result.target.facts["mta_sts"]
    assert facts["error"] == "no MTA-STS policy: _mta-sts.nomx.test has no TXT record"


@pytest.mark.parametrize(
    ("pattern", "host", "covered"),
    [
        ("mx1.example.com", "MX1.example.com.", True),
        ("*.example.com", "mx1.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("mx1.example.com", "mx2.example.com", False),
    ],
)
def test_mx_patterns(pattern, host, covered):
    assert mtasts.mx_matches(pattern, host) is covered


@pytest.mark.parametrize(
    ("texts", "error"),
    [
        (["v=STSv1; id=1", "v=STSv1; id=2"], "2 TXT records"),
        (["v=STSv1; id=not-alnum"], "id must be"),
        (["v=spf1 -all"], "no TXT record starting"),
    ],
)
def test_txt_records_a_sender_ignores(texts, error):
    with pytest.raises(mtasts.PolicyError, match=error):
        mtasts.parse_record(texts)


def test_policy_parsing():
    policy = mtasts.parse_policy(
        "version: STSv1\r\nmode: testing\r\nmx: a.test\r\nmax_age: 9999999999\r\nextra: 1\r\n"
    )
    assert policy == mtasts.Policy("STSv1", "testing", mtasts.MAX_AGE_LIMIT, ("a.test",))
    for bad, why in [
        ("mode: enforce\nmx: a\nmax_age: 1", "no version"),
        ("version: STSv1\nmode: strict\nmx: a\nmax_age: 1", "not enforce, testing or none"),
        ("version: STSv1\nmode: enforce\nmx: a\nmax_age: -1", "not a number"),
        ("version: STSv1\nmode: enforce\nmx: a.*.test\nmax_age: 1", "only a left-most"),
        ("version STSv1", "is not 'key: value'"),
    ]:
        with pytest.raises(mtasts.PolicyError, match=why):
            mtasts.parse_policy(bad)


# --- DANE ---------------------------------------------------------------------------------------


def test_dane_ee_match_and_mismatch(world):
    outcome = world.run([DANE_CHECK])
    results = _by_target(outcome)
    assert results[LABEL1].verdict == "passed", _explain(results[LABEL1])
    mismatch = results[LABEL2]
    assert mismatch.verdict == "failed"
    assert f"no usable TLSA record at _{world.port}._tcp.mx2.example.test matches" in (
        mismatch.reason or ""
    )
    assert f"3 1 1 {'ab' * 32}" in (mismatch.reason or "")
    good = results[LABEL1].target.facts["dane"]
    assert good["name"] == f"_{world.port}._tcp.mx1.example.test"
    assert good["match"] is True and good["starttls"] is True and good["error"] is None
    [record] = good["records"]
    assert (record["usage"], record["selector"], record["matching_type"]) == (3, 1, 1)
    assert record["usable"] is True and record["matches"] is True
    assert world.mx1.cert_path
    assert good["certificate"]["sha256"] == _cert_sha256(world.mx1.cert_path)
    assert good["certificate"]["spki_sha256"] == record["data"]
    # the scenario's own STARTTLS records the same certificate, hashes included
    [tls] = [s.tls for s in results[LABEL1].steps if s.tls]
    assert tls.spki_sha256 == record["data"] and tls.cert_sha256 == good["certificate"]["sha256"]
    assert mismatch.target.facts["dane"]["match"] is False


def test_the_ad_bit_as_the_resolver_reports_it(world):
    plain = _by_target(world.run([DNSSEC_CHECK]))[LABEL1]
    assert plain.target.facts["dane"]["ad"] is False
    assert plain.verdict == "failed" and "came without the AD bit" in (plain.reason or "")
    assert plain.target.facts["mx"]["ad"] is False
    world.dns.ad = True
    try:
        validated = _by_target(world.run([DNSSEC_CHECK]))[LABEL1]
    finally:
        world.dns.ad = False
    assert validated.target.facts["dane"]["ad"] is True
    assert validated.verdict == "passed", _explain(validated)


def test_dane_ta_and_full_certificate_records_against_the_sandbox(world, tmp_path):
    assert world.mx1.cert_path
    port = world.port
    world.dns.records[f"_{port}._tcp.mx1.example.test", "TLSA"] = [
        f"2 0 1 {_cert_sha256(world.mx1.cert_path)}",  # its self-issued certificate as TA
        "1 1 1 " + _spki_sha256(world.mx1.cert_path),  # PKIX-EE: unusable for SMTP
    ]
    try:
        result = _by_target(world.run([DANE_CHECK], "mx:ta.test"))[
            "ta.test (mx1.example.test, pref 10)"
        ]
    finally:
        world.dns.records[f"_{port}._tcp.mx1.example.test", "TLSA"] = [
            f"3 1 1 {_spki_sha256(world.mx1.cert_path)}"
        ]
    facts = result.target.facts["dane"]
    assert result.verdict == "passed", _explain(result)
    assert [(r["text"][:5], r["usable"], r["matches"]) for r in facts["records"]] == [
        ("1 1 1", False, None),
        ("2 0 1", True, True),
    ]


def test_no_tlsa_records_skips_the_dane_check(world):
    [result] = world.run([DANE_CHECK], "mx:nomx.test").run.scenarios
    assert result.verdict == "skipped"
    assert result.reason == f"no TLSA records at _{world.port}._tcp.nomx.test: DANE is not deployed"
    assert (
        result.target.facts["dane"]["records"] == []
        and result.target.facts["dane"]["match"] is None
    )


def test_dane_ta_needs_the_chain_and_the_name(world, tmp_path):
    """DANE-TA matching, offline: a CA of the presented chain, a server certificate it
    signed, naming the MX host."""
    pki = Pki(tmp_path)
    leaf, _ = pki.issue("mx.example.test")
    der = [c.public_bytes(serialization.Encoding.DER) for c in (leaf, pki.cert)]
    ca_spki = hashlib.sha256(
        pki.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).digest()
    record = dane.Tlsa(2, 1, 1, ca_spki)
    assert dane.matches(record, der, name_matches=True)
    assert not dane.matches(record, der, name_matches=False)  # DANE-TA checks the name
    assert not dane.matches(record, der[:1], name_matches=True)  # the CA was not presented
    (tmp_path / "other").mkdir()
    other = Pki(tmp_path / "other")
    stranger, _ = other.issue("mx.example.test")
    forged = [stranger.public_bytes(serialization.Encoding.DER), der[1]]
    assert not dane.matches(record, forged, name_matches=True)  # not signed by that CA
    sha512 = hashlib.sha512(der[0]).digest()
    assert dane.matches(dane.Tlsa(3, 0, 2, sha512), der, name_matches=False)  # DANE-EE: no name
    assert dane.matches(dane.Tlsa(3, 0, 0, der[0]), der, name_matches=None)


# --- every other target ---------------------------------------------------------------------


def test_on_other_targets_the_domain_checks_skip_with_their_reason():
    outcome = run_paths([DOMAIN_SCENARIOS], targets=["sandbox"])
    assert {r.verdict for r in outcome.run.scenarios} == {"skipped"}
    for result in outcome.run.scenarios:
        assert result.reason and result.reason.startswith(
            "not a domain target: run it with -t mx:DOMAIN"
        )
        assert result.target.facts is None
    assert "facts" not in to_dict(outcome.run)["targets"][0]  # results as they were


def test_dnspython_is_not_imported_by_the_cli_start_up():
    import subprocess
    import sys

    code = "import sys, smtpscript.cli; sys.exit('dns' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_an_mx_host_without_starttls_cannot_match(world):
    port = world.port
    plain = Sandbox(SandboxConfig(host="127.0.0.3", port=port, tls=False, domain="plain.test"))
    added = {
        ("plain.test", "MX"): ["10 mx.plain.test."],
        ("mx.plain.test", "A"): ["127.0.0.3"],
        (f"_{port}._tcp.mx.plain.test", "TLSA"): [f"3 1 1 {'cd' * 32}"],
    }
    world.dns.records.update(added)
    plain.start()
    try:
        [result] = world.run([DANE_CHECK], "mx:plain.test").run.scenarios
    finally:
        plain.stop()
        for key in added:
            del world.dns.records[key]
    facts = result.target.facts["dane"]
    assert facts["starttls"] is False and facts["match"] is None
    assert facts["error"] == f"127.0.0.3:{port} does not offer STARTTLS"
    assert facts["records"][0]["matches"] is None
    assert result.verdict == "failed" and "EHLO advertises STARTTLS" in (result.reason or "")


def test_a_policy_server_that_never_answers_costs_the_timeout(world):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        started = time.monotonic()
        with pytest.raises(mtasts.FetchError, match=r"no complete answer within 0\.5 s"):
            mtasts.fetch_policy(
                "example.test",
                Dns(world.dns.address),
                ca_file=str(world.pki.ca_path),
                port=silent.getsockname()[1],
                timeout=0.5,
            )
        assert time.monotonic() - started < 2
    finally:
        silent.close()
