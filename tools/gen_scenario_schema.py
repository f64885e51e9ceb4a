"""Generate schemas/scenario.schema.json (run: python tools/gen_scenario_schema.py).

The schema is written from Python so that the shared pieces (TLS options,
reply-code patterns, common step keys) are defined once; the JSON file is
committed and is what editors and the validator read.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "schemas" / "scenario.schema.json"
# seconds; a bound on every wait, so an absurd number is a validation error, not an
# overflow in the event loop (an hour per reply is already far beyond any server)
MAX_WAIT = 3600

CODE = {
    "description": (
        'Reply code pattern: 250 (exact), "2xx" / "25x" / "2yz" (x, y, z are any digit), '
        '"any" (any complete reply) or "closed" (the server closed the connection).'
    ),
    "anyOf": [
        {"type": "integer", "minimum": 200, "maximum": 599},
        {"type": "string", "pattern": "^([2-5][0-9xyzXYZ][0-9xyzXYZ]|any|closed)$"},
    ],
    "examples": [250, "2xx", "25x", "closed"],
}

TLS_OPTIONS = {
    "verify": {
        "type": "boolean",
        "description": "Check the certificate chain and host name (default true).",
    },
    "server_name": {
        "type": "string",
        "description": "Name sent as SNI and checked against the certificate (default: the host).",
    },
    "ca_file": {
        "type": "string",
        "description": "PEM file of trusted CA certificates instead of the system trust store.",
    },
    "min_version": {
        "enum": ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"],
        "description": "Lowest TLS version the client will negotiate.",
    },
    "client_cert": {"type": "string", "description": "PEM client certificate to present."},
    "client_key": {"type": "string", "description": "PEM private key of client_cert."},
}

ENDPOINT = {
    "host": {
        "type": "string",
        "description": "Host name or IP address (template). --target overrides it.",
        "examples": ["mx.example.org", "127.0.0.1", "::1"],
    },
    "port": {
        "type": "integer",
        "minimum": 1,
        "maximum": 65535,
        "description": "TCP port (default 25). --target HOST:PORT overrides it.",
        "examples": [25, 587, 465],
    },
    "tls": {
        "enum": ["none", "implicit"],
        "description": "none: plain TCP (use a starttls step to upgrade); implicit: TLS from the "
        "first byte (port 465 style).",
    },
    **TLS_OPTIONS,
    "timeout": {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": MAX_WAIT,
        "description": "Seconds to wait for each reply (default 10, at most 3600).",
    },
    "connect_timeout": {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": MAX_WAIT,
        "description": "Seconds to wait for the TCP (and TLS) connection (default: timeout, "
        "at most 3600).",
    },
    "source_address": {
        "type": "string",
        "description": "Local address to connect from.",
    },
}


# a variable or capture name; (?!\n) as for header names below
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$(?!\n)"

# RFC 5322 section 3.6.8: a field name is printable ASCII (33-126) except ':'. Anything
# else (CR, LF, space, ':') would break the header block or inject a header. The
# (?!\n) is for Python's re, where '$' also matches before a final newline.
HEADER_NAME = {
    "pattern": r"^[!-9;-~]+$(?!\n)",
    "description": "A header field name: printable ASCII without spaces or ':' (RFC 5322).",
}


def obj(props: dict, description: str, **extra) -> dict:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "properties": props,
        **extra,
    }


def template(description: str, **extra) -> dict:
    return {"type": "string", "description": description, **extra}


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
            "type": "integer",
            "minimum": 0,
            "description": "The certificate must stay valid at least this many more days.",
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

ACTIONS = {
    "connect": {
        "description": "(Re)open the connection and read the banner (default expect 220). Its "
        "keys override the target's.",
        "anyOf": [obj(ENDPOINT, "Connection settings for this connection."), {"type": "null"}],
    },
    "send": template(
        "A command line (template); CRLF is appended; CR or LF inside is refused. "
        "Default expect: 2xx or 3xx.",
        examples=["MAIL FROM:<{{ sender }}>", "RCPT TO:<{{ victim }}>", "QUIT"],
    ),
    "raw": template(
        "Exact bytes to send (template; YAML escapes such as \\r\\n are kept), no CRLF added. "
        "No reply is read unless expect is given.",
        examples=["DATA\r\n"],
    ),
    "ehlo": template("EHLO with this name; stores capabilities in `caps`. Default expect 250."),
    "helo": template("HELO with this name. Default expect 250."),
    "lhlo": template("LHLO (LMTP) with this name; stores capabilities in `caps`."),
    "starttls": {
        "description": "Send STARTTLS, expect 220, upgrade the connection to TLS.",
        "anyOf": [obj(TLS_OPTIONS, "TLS options for this upgrade."), {"type": "null"}],
    },
    "auth": obj(
        {
            "mechanism": {
                "enum": ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"],
                "description": "SASL mechanism.",
            },
            "username": template("User name (template)."),
            "password": template("Password (template; a secret, never shown)."),
            "token": template("OAuth 2 bearer token for XOAUTH2 (a secret, never shown)."),
            "authzid": template("Authorisation identity for PLAIN (rarely needed)."),
        },
        "Authenticate (RFC 4954) with the full challenge exchange. Default expect 235.",
        required=["mechanism", "username"],
    ),
    "data": {
        "description": "DATA, expect 354, then send the message dot-stuffed and ended with "
        "CRLF.CRLF. Default expect 250 for the final reply.",
        "anyOf": [
            template("The whole message (headers, blank line, body)."),
            obj(
                {
                    "headers": {
                        "type": "object",
                        "description": "Header fields; Date and Message-ID are added when missing.",
                        "additionalProperties": {"type": ["string", "number"]},
                        "propertyNames": HEADER_NAME,
                    },
                    "body": template("The message body."),
                },
                "Headers and body, assembled into a message.",
            ),
        ],
    },
    "pipeline": {
        "type": "array",
        "minItems": 1,
        "description": "Write all these send lines at once (RFC 2920), then read one reply "
        "per line, each checked.",
        "items": {"$ref": "#/$defs/pipelined_step"},
    },
    "sleep": {"type": "number", "minimum": 0, "maximum": MAX_WAIT, "description": "Wait seconds."},
    "read": {
        "description": "Only read one reply (e.g. a late reply after raw bytes). Default "
        "expect: any.",
        "anyOf": [obj({}, "No options."), {"type": "null"}],
    },
    "include": template(
        "Path of a fragment file (relative to this file) whose steps are spliced in here."
    ),
}

STEP = obj(
    {**ACTIONS, **STEP_KEYS},
    "One step: exactly one action (connect, send, raw, ehlo, helo, lhlo, starttls, auth, "
    "data, pipeline, sleep, read, include) plus optional common keys.",
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
    },
    "$defs": {"step": STEP, "pipelined_step": PIPELINED},
}


def main() -> None:
    OUT.write_text(json.dumps(SCENARIO, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
