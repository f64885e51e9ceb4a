"""Generate schemas/library.schema.json (run: python tools/gen_library_schema.py).

The library config (smtpscript.yaml) shares the endpoint and TLS pieces with the
scenario schema (smtpscript/schemaparts.py), so a target in the library and a
scenario's target: read the same keys the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from smtpscript.schemaparts import ENDPOINT, MAX_WAIT, NAME_PATTERN, obj

OUT = Path(__file__).resolve().parent.parent / "schemas" / "library.schema.json"

SEVERITY = {"enum": ["info", "low", "medium", "high", "critical"]}
# a target or environment name: what `-t NAME` and `--env NAME` take on a command line
TARGET_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$(?!\n)"
MAX_CONNECTIONS = {
    "type": "integer",
    "minimum": 1,
    "maximum": 512,
    "description": "Scenario runs (connections) at once against this target, on top of -j "
    "(default 2), so that a production MX is never hammered.",
}

VARS = {
    "type": "object",
    "description": "Variables for every scenario's templates ({{ name }}).",
    "propertyNames": {"pattern": NAME_PATTERN},
    "examples": [{"outside_domain": "example.net", "password": "{{ env.SMTP_PASSWORD }}"}],
}
VARS_FILES = {
    "type": "array",
    "items": {"type": "string", "minLength": 1},
    "description": "YAML files of variables (a mapping NAME: value each), relative to this "
    "file; later files win.",
    "examples": [["vars/common.yaml"]],
}

# host is plain text here (a scenario's target.host is a template)
TARGET_ENDPOINT = {
    **ENDPOINT,
    "host": {
        "type": "string",
        "minLength": 1,
        "description": "Host name or IP address.",
        "examples": ["mx1.example.com", "192.0.2.25", "::1"],
    },
}

TARGET = obj(
    {
        "address": {
            "type": "string",
            "minLength": 1,
            "description": "Where it is, in any --target form: HOST[:PORT], [IPv6]:PORT, "
            "smtp://, smtps://, lmtp://HOST[:PORT] or unix:/PATH (instead of host and port).",
            "examples": ["mx1.example.com:25", "smtps://mail.example.com", "unix:/run/lmtp"],
        },
        "sandbox": {
            "const": True,
            "description": "The embedded sandbox server, started for the run (instead of host).",
        },
        **TARGET_ENDPOINT,
        "description": {"type": "string", "description": "What this server is."},
        "tags": {
            "type": "array",
            "items": {"type": "string", "pattern": TARGET_NAME},
            "description": "Labels: -t @TAG selects every target with that tag.",
            "examples": [["production", "mx"]],
        },
        "vars": {**VARS, "description": "Variables for scenarios run against this target."},
        "max_connections": MAX_CONNECTIONS,
    },
    "A server to run against: host (and port, tls...), address, or sandbox: true.",
    examples=[{"host": "mx1.example.com", "port": 25, "tags": ["production"]}],
)

TARGETS = {
    "type": "object",
    "description": "Named targets: -t NAME, -t @TAG, -t all.",
    "propertyNames": {"pattern": TARGET_NAME},
    "additionalProperties": {"$ref": "#/$defs/target"},
}

ENVIRONMENT = obj(
    {
        "description": {"type": "string", "description": "What this environment is."},
        "targets": {
            **TARGETS,
            "description": "This environment's targets: with --env, they replace the "
            "library's targets.",
        },
        "vars": {**VARS, "description": "Variables for this environment (over the library's)."},
        "vars_files": VARS_FILES,
    },
    "An environment (staging, production, ...) chosen with --env NAME.",
)

DEFAULTS = obj(
    {
        "targets": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "minLength": 1},
            "description": "Targets when run gets no -t (names, @TAG, all, sandbox, HOST[:PORT]).",
            "examples": [["sandbox"], ["@production"]],
        },
        "environment": {
            "type": "string",
            "pattern": TARGET_NAME,
            "description": "Environment when run gets no --env.",
        },
        "jobs": {
            "type": "integer",
            "minimum": 1,
            "maximum": 512,
            "description": "Scenario runs at once (-j).",
        },
        "max_connections": MAX_CONNECTIONS,
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": MAX_WAIT,
            "description": "Seconds to wait for each reply where neither the scenario nor "
            "the target says (default 10).",
        },
        "fail_on": {**SEVERITY, "description": "Exit 1 only for failures this severe or worse."},
        "json": {"type": "string", "minLength": 1, "description": "JSON results file."},
        "html": {"type": "string", "minLength": 1, "description": "HTML report file."},
        "junit": {"type": "string", "minLength": 1, "description": "JUnit XML file."},
    },
    "Defaults for run; command-line options win. Report paths are relative to this file.",
)

LIBRARY: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://smtpscript.dev/schemas/library.schema.json",
    "title": "smtpscript library config (smtpscript.yaml, format 1)",
    "description": "A team's scenario library: where the scenarios are, the servers to run "
    "them against, shared variables and defaults. Paths are relative to this file.",
    "type": "object",
    "additionalProperties": False,
    "required": ["smtpscript"],
    "properties": {
        "smtpscript": {
            "const": 1,
            "description": "Library config format version. This smtpscript reads version 1.",
        },
        "description": {"type": "string", "description": "What this library is for."},
        "paths": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "minLength": 1},
            "description": "Files and folders of scenarios, scanned when run, validate and "
            "list get no PATH (default: scenarios).",
            "examples": [["scenarios"]],
        },
        "targets": TARGETS,
        "environments": {
            "type": "object",
            "description": "Named environments, chosen with --env NAME.",
            "propertyNames": {"pattern": TARGET_NAME},
            "additionalProperties": {"$ref": "#/$defs/environment"},
        },
        "vars": VARS,
        "vars_files": VARS_FILES,
        "public_env": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Environment variables that are not secrets (env values are "
            "secrets unless listed here).",
        },
        "defaults": DEFAULTS,
    },
    "$defs": {"target": TARGET, "environment": ENVIRONMENT},
    "examples": [
        {
            "smtpscript": 1,
            "paths": ["scenarios"],
            "targets": {
                "sandbox": {"sandbox": True, "tags": ["local"]},
                "mx1": {"host": "mx1.example.com", "tags": ["production"]},
            },
            "defaults": {"targets": ["sandbox"]},
        }
    ],
}


def main() -> None:
    OUT.write_text(json.dumps(LIBRARY, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
