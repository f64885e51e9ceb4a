"""include: splice the steps of a fragment file, with `with:` vars layered on top.

A group: the loader reads the fragment and the runner runs its steps. Declared
here for the schema and the checks.
"""

from __future__ import annotations

from typing import Any

from smtpscript.actions.base import ActionSpec, templates
from smtpscript.schemaparts import template


def _built_by_the_loader(value: Any) -> Any:
    raise AssertionError("include steps are built by the loader")


SPEC = ActionSpec(
    name="include",
    order=110,
    schema=template(
        "Path of a fragment file (relative to this file) whose steps are spliced in here."
    ),
    build=_built_by_the_loader,
    run=None,
    default_expect=None,
    check=templates(),
    needs_connection=False,
    summary="splice the steps of a fragment file (fragment: true)",
)
