"""Results of pure functions of frozen model objects, kept by the objects' identity.

A scenario's steps and endpoints are the same frozen objects in every run of it, so
what is worked out from them alone (an overlay, a step's facts) is worked out once per
object, not once per run. Keyed by id() and not by value: frozen dataclasses hash
field by field, which would cost what the cache saves. Each entry keeps its arguments
alive, so an id cannot be reused by another object while the entry stands; past
``maxsize`` entries the cache starts again (bounded memory, whatever runs).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def by_identity(maxsize: int) -> Callable[[F], F]:
    def decorate(function: F) -> F:
        kept: dict[tuple[int, ...], tuple[tuple[Any, ...], Any]] = {}

        @functools.wraps(function)
        def remembered(*args: Any) -> Any:
            key = tuple(map(id, args))
            known = kept.get(key)
            if known is not None:
                return known[1]
            result = function(*args)
            if len(kept) >= maxsize:
                kept.clear()
            kept[key] = (args, result)
            return result

        return remembered  # type: ignore[return-value]

    return decorate
