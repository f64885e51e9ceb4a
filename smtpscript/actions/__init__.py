"""The step actions: one module each, found here and nowhere else.

Every module of this package that defines ``SPEC`` (or ``SPECS``) is an action;
adding an action means adding a module. ``ACTIONS`` maps YAML keys to their
ActionSpec in the documented order.
"""

from __future__ import annotations

import importlib
import pkgutil

from smtpscript.actions.base import ActionSpec
from smtpscript.patterns import ANY_REPLY, CodePattern


def _discover() -> dict[str, ActionSpec]:
    found: list[ActionSpec] = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        found += getattr(module, "SPECS", ())
        if hasattr(module, "SPEC"):
            found.append(module.SPEC)
    return {spec.name: spec for spec in sorted(found, key=lambda s: s.order)}


ACTIONS: dict[str, ActionSpec] = _discover()
ACTION_NAMES: tuple[str, ...] = tuple(ACTIONS)
GROUPS = frozenset(name for name, spec in ACTIONS.items() if spec.run is None)


def default_expect(kind: str) -> CodePattern:
    """What a step of this kind expects when it says nothing (any reply, when it reads none
    of its own)."""
    return ACTIONS[kind].default_expect or ANY_REPLY


__all__ = ["ACTIONS", "ACTION_NAMES", "GROUPS", "ActionSpec", "default_expect"]
