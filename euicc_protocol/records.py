"""Copies of frozen record dataclasses with some fields changed, at a fraction of the cost of
``dataclasses.replace`` (the card's state, the eIM store's rows: copied on every command or
request)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

__all__ = ["evolve"]

_T = TypeVar("_T")
_FIELD_NAMES: dict[type, frozenset[str]] = {}
_set_attribute = object.__setattr__


def evolve(record: _T, **changes: Any) -> _T:
    """``dataclasses.replace`` for frozen record dataclasses (without
    ``__post_init__`` or slots, every field an ``__init__`` argument) at a fraction of its
    cost: the copy's instance dict is the original's with ``changes`` applied, no ``__init__``
    run again. A name that is no field raises TypeError, as with ``replace``. The card copies
    its state several times per command and the eIM its rows on every request."""
    cls = type(record)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        if hasattr(cls, "__post_init__") or "__slots__" in cls.__dict__:
            raise TypeError(f"evolve: {cls.__name__} needs dataclasses.replace")
        if any(not f.init for f in fields(cls)):  # type: ignore[arg-type]
            raise TypeError(f"evolve: {cls.__name__} has fields outside __init__")
        names = _FIELD_NAMES[cls] = frozenset(f.name for f in fields(cls))  # type: ignore[arg-type]
    if not names.issuperset(changes):
        raise TypeError(f"{cls.__name__} has no field {sorted(set(changes) - names)[0]!r}")
    attributes = record.__dict__.copy()  # a copy of the shared-key dict: its values only
    attributes.update(changes)
    new = object.__new__(cls)
    _set_attribute(new, "__dict__", attributes)  # frozen: around the dataclass's __setattr__
    return new
