"""Generate schemas/scenario.schema.json (run: python tools/gen_scenario_schema.py).

The schema is written from Python so that the shared pieces (TLS options,
reply-code patterns, common step keys) are defined once; the JSON file is
committed and is what editors and the validator read.
"""

from __future__ import annotations

import json
from pathlib import Path

from smtpscript.actions import ACTIONS as REGISTRY
from smtpscript.schemaparts import (
    CODE,
    ENDPOINT,
    MAX_WAIT,
    NAME_PATTERN,
    obj,
)

OUT = Path(__file__).resolve().parent.parent / "schemas" / "scenario.schema.json"

TLS_EXPECT = obj(
    {
        "min_version": {
            "enum": ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"],
            "description": "The negotiated protocol must be at least this version.",
        },
        "verified": {
            "type": "boolean",
            "description": "true: the certificate must verify; false: it must not.",
        },
        "days_left": {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "minLength": 1},
            ],
            "description": "The certificate must stay valid at least this many more days: a "
            "number, or a template giving one ('{{ min_days }}').",
        },
        "established": {
            "type": "boolean",
            "description": "false: the TLS handshake must fail (with max_version TLSv1.1: the "
            "server refuses deprecated TLS); a handshake that succeeds is the failure.",
        },
        "name_matches": {
            "type": "boolean",
            "description": "The certificate must (or must not) match the server name.",
        },
    },
    "Assertions on the TLS session set up by this connect or starttls step.",
    examples=[{"min_version": "TLSv1.2", "verified": True, "days_left": 14}],
)

REPLY_KEYS = {
    "name": {"type": "string", "description": "A label for this step in output and reports."},
    "expect": {
        "description": "Reply code(s) this step must get: a pattern or a list of patterns "
        "(any of them). Defaults depend on the action (send: 2xx or 3xx).",
        "anyOf": [CODE, {"type": "array", "items": CODE, "minItems": 1}],
        "examples": [250, "2xx", [550, 554], "closed"],
    },
    "status": {
        "type": "string",
        "pattern": "^[245xX]\\.([0-9]{1,3}|[xX])\\.([0-9]{1,3}|[xX])$",
        "description": "RFC 3463 enhanced status code pattern the reply must carry, "
        "e.g. 5.7.1 or 5.7.x.",
        "examples": ["5.7.1", "5.7.x", "2.1.5"],
    },
    "match": {
        "type": "string",
        "description": "Regular expression (Python syntax) searched in the reply text.",
        "examples": ["(?i)relay"],
    },
    "capture": {
        "type": "object",
        "description": "Variables to set from the reply text: {name: regex}; the first group, "
        "else the whole match.",
        "additionalProperties": {"type": "string"},
        "propertyNames": {"pattern": NAME_PATTERN},
        "examples": [{"queue_id": "queued as ([A-Z0-9]+)"}],
    },
    "expect_each": {
        "type": "array",
        "minItems": 1,
        "description": "LMTP (after LHLO): the reply code pattern for each accepted recipient "
        "at the end of the message, in RCPT order (data and bdat steps); without it, expect "
        "applies to each.",
        "items": {"anyOf": [CODE, {"type": "array", "items": CODE, "minItems": 1}]},
        "examples": [[250, 550, 250]],
    },
    "timeout": {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": MAX_WAIT,
        "description": "Seconds to wait for this step's reply (overrides target.timeout; at "
        "most 3600).",
    },
}

STEP_KEYS = {
    **REPLY_KEYS,
    "when": {
        "type": "string",
        "description": "Template expression; when false the step is skipped.",
        "examples": ["'STARTTLS' in caps", "'PLAIN' in caps.AUTH"],
    },
    "repeat": {
        "description": "Run the step N times ({{ index }} counts from 1); on include or "
        "pipeline the whole group repeats. A number or a template giving one.",
        "anyOf": [{"type": "integer", "minimum": 1, "maximum": 100000}, {"type": "string"}],
    },
    "continue_on_fail": {
        "type": "boolean",
        "description": "Keep going after this step fails (default false: a failed step ends "
        "the scenario).",
    },
    "tls": TLS_EXPECT,
    "with": {
        "type": "object",
        "description": "Variables passed to an included fragment.",
    },
}

# each action module declares its own fragment (smtpscript/actions/)
ACTIONS = {name: spec.schema for name, spec in REGISTRY.items()}

STEP = obj(
    {**ACTIONS, **STEP_KEYS},
    f"One step: exactly one action ({', '.join(ACTIONS)}) plus optional common keys.",
    oneOf=[{"required": [name]} for name in ACTIONS],
)

PIPELINED = obj(
    {"send": ACTIONS["send"], **REPLY_KEYS},
    "A command inside a pipeline and what its reply must be.",
    required=["send"],
)

COMMON_TOP = {
    "smtpscript": {
        "const": 1,
        "description": "Scenario format version. This smtpscript reads version 1.",
    },
    "description": {"type": "string", "description": "What this checks and why it matters."},
    "vars": {
        "type": "object",
        "description": "Variables for templates ({{ name }}). Lowest precedence: the library "
        "config, target vars and --var override them.",
        "propertyNames": {"pattern": NAME_PATTERN},
    },
    "steps": {
        "type": "array",
        "minItems": 1,
        "description": "The conversation, in order. A connect to the target is implied "
        "before the first step unless it is a connect step.",
        "items": {"$ref": "#/$defs/step"},
    },
}

SCENARIO = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://smtpscript.dev/schemas/scenario.schema.json",
    "title": "smtpscript scenario (format 1)",
    "description": "A declarative SMTP conversation: commands and the replies they must get.",
    "type": "object",
    "additionalProperties": False,
    "required": ["smtpscript", "steps"],
    "properties": {
        **COMMON_TOP,
        "title": {
            "type": "string",
            "minLength": 1,
            "description": "One line saying what must hold (required for scenarios).",
            "examples": ["Refuses to relay for an unauthenticated outsider"],
        },
        "fragment": {
            "const": True,
            "description": "Marks a reusable fragment for include steps, not a scenario.",
        },
        "severity": {
            "enum": ["info", "low", "medium", "high", "critical"],
            "description": "How bad a failure is (default medium).",
        },
        "tags": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "description": "Labels to select scenarios with --tag.",
            "examples": [["relay", "security"]],
        },
        "references": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Standards, advisories or tickets behind this check.",
            "examples": [["RFC 5321 section 3.6.2", "CVE-2023-51764"]],
        },
        "remediation": {
            "type": "string",
            "description": "How to fix a failure of this check, with the server settings "
            "where known (Postfix, Exim, Exchange); shown with the finding in every report.",
            "examples": [
                "Postfix: smtpd_relay_restrictions = permit_mynetworks, "
                "permit_sasl_authenticated, reject_unauth_destination"
            ],
        },
        "finding": {
            "type": "string",
            "description": "What a failure of this check means, in words anyone can read; "
            "the reports lead with it, the technical expectation beneath (without it they "
            "derive the words from the failing step).",
            "examples": [
                "The server relayed mail for an outside domain from an unauthenticated client."
            ],
        },
        "target": obj(ENDPOINT, "Connection defaults; --target overrides host and port."),
        "secrets": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Names of variables whose values are secrets: never shown in any "
            "output.",
        },
        "public_env": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Environment variables that are not secrets (env values are "
            "secrets unless listed here).",
        },
        "when": {
            "type": "string",
            "description": "Template expression evaluated before connecting; false skips the "
            "scenario.",
            "examples": ["env.SMTP_PASSWORD is defined"],
        },
        "skip_reason": {
            "type": "string",
            "minLength": 1,
            "description": "Why the scenario is skipped when 'when' is false, in words for "
            "the reports (e.g. 'not configured: set SMTP_USER and SMTP_PASSWORD').",
            "examples": ["not configured: set SMTP_USER and SMTP_PASSWORD"],
        },
    },
    "$defs": {"step": STEP, "pipelined_step": PIPELINED},
}


def main() -> None:
    OUT.write_text(json.dumps(SCENARIO, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
