"""Pieces of the scenario JSON Schema shared by the action modules and the generator.

The schema is written from Python (tools/gen_scenario_schema.py) so that shared
pieces (TLS options, endpoints, templates) are defined once; each action module
builds its own fragment from these.
"""

from __future__ import annotations

from typing import Any

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
    "max_version": {
        "enum": ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"],
        "description": "Highest TLS version the client will offer (TLSv1.1: does the server "
        "still accept a deprecated version?).",
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
    "proxy": {
        "type": "object",
        "description": "Send a HAProxy PROXY protocol header as the very first bytes of the "
        "connection (before TLS and the banner), claiming a client for a server behind a "
        "proxy. source and destination are plain strings, not templates.",
        "additionalProperties": False,
        "required": ["version", "source", "destination"],
        "properties": {
            "version": {
                "enum": [1, 2],
                "description": "1: the text header (PROXY TCP4 ...); 2: the binary header.",
            },
            "source": {
                "type": "string",
                "description": "The claimed client: IPv4:port or [IPv6]:port (not a template).",
                "examples": ["203.0.113.7:40000", "[2001:db8::7]:40000"],
            },
            "destination": {
                "type": "string",
                "description": "The address the client connected to, of the same family as "
                "source: IPv4:port or [IPv6]:port (not a template).",
                "examples": ["198.51.100.1:25", "[2001:db8::25]:25"],
            },
        },
        "examples": [
            {"version": 1, "source": "203.0.113.7:40000", "destination": "198.51.100.1:25"}
        ],
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


def obj(props: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "properties": props,
        **extra,
    }


def template(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}
