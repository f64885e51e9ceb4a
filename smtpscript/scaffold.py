"""`smtpscript init DIR`: a new scenario library that passes `smtpscript run` at once.

The files are written from the texts below (no package data to lose in an
install): a config with a sandbox target and a commented real one, a handful of
scenarios and a fragment that use the library's vars, CI jobs for GitHub
Actions and GitLab CI, and a .gitignore for reports and run state.
"""

from __future__ import annotations

from pathlib import Path

from smtpscript.errors import ConfigError

CONFIG = """\
# yaml-language-server: $schema=https://smtpscript.dev/schemas/library.schema.json
# The library config: `smtpscript schema library` prints its schema.
smtpscript: 1
description: Our SMTP audit scenarios

# folders (or files) of scenarios, relative to this file
paths: [scenarios]

# -t NAME runs against one target, -t @TAG against every target with that tag,
# -t all against all of them
targets:
  sandbox:
    sandbox: true  # the embedded test server, started for the run
    tags: [local]
  # mx1:
  #   host: mx1.example.com
  #   port: 25
  #   tags: [production]
  #   max_connections: 1     # runs at once against it (default 2)
  #   vars:
  #     local_domain: example.com

# variables for every scenario; a target's vars, --vars-file and --var override them
vars:
  helo: audit.example.org  # the name smtpscript gives in EHLO
  local_domain: sandbox.test
  local_mailbox: postmaster
  outside_domain: example.net
  # secrets come from the environment and are never printed:
  # password: "{{ env.SMTP_PASSWORD }}"

# environments: --env production uses its targets and vars instead
# environments:
#   production:
#     targets:
#       mx1: {host: mx1.example.com, tags: [production]}
#     vars:
#       local_domain: example.com

defaults:
  targets: [sandbox]  # when run gets no -t
  jobs: 4
  fail_on: info       # exit 1 for any failure; e.g. high ignores low and medium ones
  junit: reports/junit.xml
  html: reports/report.html
  json: reports/results.json
"""

GREET = """\
# yaml-language-server: $schema=https://smtpscript.dev/schemas/scenario.schema.json
# A fragment: read the banner and say EHLO. Scenarios include it.
smtpscript: 1
fragment: true
description: Read the 220 banner and greet with EHLO; the capabilities land in `caps`.
vars:
  helo: audit.example.org
steps:
  - connect: {}
    name: banner
    expect: 220
  - ehlo: "{{ helo }}"
    expect: 250
"""

BANNER = """\
# yaml-language-server: $schema=https://smtpscript.dev/schemas/scenario.schema.json
smtpscript: 1
title: Greets with 220, answers EHLO, and QUIT with 221
description: The banner comes first; EHLO lists the extensions; QUIT closes the session.
severity: medium
tags: [basics]
references: ["RFC 5321 section 4.1.1.1"]
remediation: Check that the service listening on this port is an SMTP server.
steps:
  - include: fragments/greet.yaml
  - send: QUIT
    expect: 221
"""

RELAY = """\
# yaml-language-server: $schema=https://smtpscript.dev/schemas/scenario.schema.json
smtpscript: 1
title: Refuses to relay for an unauthenticated outsider
description: >
  An outside sender must not reach an outside recipient through this server:
  an open relay is abused for spam within hours and lands on block lists.
severity: critical
tags: [relay, security]
references: ["RFC 5321 section 3.6.2", "RFC 2505"]
remediation: >
  Postfix: smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated,
  reject_unauth_destination. Exim: relay only for relay_from_hosts and authenticated
  clients.
steps:
  - include: fragments/greet.yaml
  - send: "MAIL FROM:<probe@{{ outside_domain }}>"
  - send: "RCPT TO:<victim@{{ outside_domain }}>"
    expect: [550, 554]
    status: 5.7.x
  - send: QUIT
    expect: 221
"""

DELIVERY = """\
# yaml-language-server: $schema=https://smtpscript.dev/schemas/scenario.schema.json
smtpscript: 1
title: Accepts mail for a local mailbox
description: The server takes mail for its own domain (RFC 5321 requires postmaster).
severity: high
tags: [basics, delivery]
references: ["RFC 5321 section 4.5.1"]
steps:
  - include: fragments/greet.yaml
  - send: "MAIL FROM:<audit@{{ outside_domain }}>"
  - send: "RCPT TO:<{{ local_mailbox }}@{{ local_domain }}>"
    expect: 250
  - data:
      headers:
        Subject: smtpscript delivery check
      body: A test message from smtpscript.
    expect: 250
  - send: QUIT
    expect: 221
"""

UNKNOWN = """\
# yaml-language-server: $schema=https://smtpscript.dev/schemas/scenario.schema.json
smtpscript: 1
title: Rejects an unknown local recipient at RCPT
description: >
  Accepting mail for unknown users and bouncing it later sends backscatter to
  forged senders.
severity: medium
tags: [basics]
references: ["RFC 5321 section 3.3"]
remediation: "Postfix: smtpd_reject_unlisted_recipient = yes (the default)."
steps:
  - include: fragments/greet.yaml
  - send: "MAIL FROM:<audit@{{ outside_domain }}>"
  - send: "RCPT TO:<no-such-user-4711@{{ local_domain }}>"
    expect: 550
  - send: QUIT
    expect: 221
"""

STARTTLS = """\
# yaml-language-server: $schema=https://smtpscript.dev/schemas/scenario.schema.json
smtpscript: 1
title: Offers STARTTLS and negotiates TLS 1.2 or newer
description: Without STARTTLS, mail to and from this server crosses the network in clear.
severity: high
tags: [tls, security]
references: ["RFC 3207", "RFC 8996"]
remediation: "Postfix: smtpd_tls_security_level = may, with smtpd_tls_chain_files set."
steps:
  - include: fragments/greet.yaml
  - starttls: {}
    tls:
      min_version: TLSv1.2
  - ehlo: "{{ helo }}"
  - send: QUIT
    expect: 221
"""

GITIGNORE = """\
# smtpscript reports and run state (--last-failed)
reports/
.smtpscript/
"""

GITHUB = """\
# GitHub Actions: run the library on every push and every night; JUnit to the job.
name: smtpscript
on:
  push:
  schedule:
    - cron: "17 3 * * *"
jobs:
  audit:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.12"
      - run: pip install smtpscript
      # add -t all (or --env production) once smtpscript.yaml names real servers;
      # secrets reach scenarios as {{ env.NAME }}: set them under env:
      - run: smtpscript run --junit reports/junit.xml --html reports/report.html
      - uses: actions/upload-artifact@v4
        if: always()
        with:
          name: smtpscript-reports
          path: reports/
"""

GITLAB = """\
# GitLab CI: run the library; the JUnit report shows in merge requests.
smtpscript:
  image: python:3.12
  script:
    - pip install smtpscript
    # add -t all (or --env production) once smtpscript.yaml names real servers
    - smtpscript run --junit reports/junit.xml --html reports/report.html
  artifacts:
    when: always
    paths: [reports/]
    reports:
      junit: reports/junit.xml
"""

FILES: dict[str, str] = {
    "smtpscript.yaml": CONFIG,
    "scenarios/fragments/greet.yaml": GREET,
    "scenarios/banner.yaml": BANNER,
    "scenarios/no-open-relay.yaml": RELAY,
    "scenarios/local-delivery.yaml": DELIVERY,
    "scenarios/unknown-recipient.yaml": UNKNOWN,
    "scenarios/starttls.yaml": STARTTLS,
    ".gitignore": GITIGNORE,
    ".github/workflows/smtpscript.yml": GITHUB,
    ".gitlab-ci.yml": GITLAB,
}


def create_library(directory: Path, *, force: bool = False) -> list[Path]:
    """Write the library into ``directory`` (created if missing); the files written.

    Refuses (ConfigError, nothing written) when any of its files already exists,
    unless ``force``; files of the directory that are not the library's stay as they are.
    """
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: exists and is not a directory")
    targets = [directory / name for name in FILES]
    existing = [path for path in targets if path.exists() or path.is_symlink()]
    if existing and not force:
        listed = ", ".join(str(p.relative_to(directory)) for p in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise ConfigError(
            f"{directory}: already holds {listed}{more}: choose another directory or pass --force"
        )
    for path, text in zip(targets, FILES.values(), strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():  # --force replaces the link, never writes through it
            path.unlink()
        path.write_text(text, encoding="utf-8")
    return targets
