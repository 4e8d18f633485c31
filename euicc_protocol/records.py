"""Copies of frozen record dataclasses with some fields changed, at a fraction of the cost of
``dataclasses.replace`` (the card's state, the eIM store's rows, the pull rules' memory:
copied on every command, request or event): :func:`evolve` for records with an instance
dict, :func:`evolve_slotted` for slotted ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

__all__ = ["evolve", "evolve_slotted"]

_T = TypeVar("_T")
_FIELD_NAMES: dict[type, frozenset[str]] = {}
_set_attribute = object.__setattr__
_COPIERS: dict[type, Callable[[Any], Any]] = {}


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


def evolve_slotted(obj: _T, **changes: Any) -> _T:
    """``dataclasses.replace`` for frozen, slotted records (no ``__post_init__``, every field
    an ``__init__`` argument), at a third of its cost: the IPAd's pull rules make several per
    event. The copy takes every slot of ``obj``, then the changed fields are set on it before
    anyone else sees it; a name that is no field raises AttributeError."""
    cls = type(obj)
    copier = _COPIERS.get(cls)
    if copier is None:
        copier = _COPIERS[cls] = _copier_for(cls)
    new = copier(obj)
    for name, value in changes.items():
        _set_attribute(new, name, value)
    return new  # type: ignore[no-any-return]


def _copier_for(cls: type) -> Callable[[Any], Any]:
    """A function copying a ``cls`` slot by slot (straight-line code, as dataclasses generates
    its ``__init__``: a loop over the fields would cost as much as ``replace``)."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    if hasattr(cls, "__post_init__") or "__slots__" not in cls.__dict__ or len(names) < 2:
        raise TypeError(f"evolve_slotted needs a slotted dataclass of 2+ fields: {cls.__name__}")
    if any(not f.init for f in fields(cls)) or not all(n.isidentifier() for n in names):  # type: ignore[arg-type]
        raise TypeError(f"evolve_slotted: {cls.__name__} has fields outside __init__")
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    lines = ["def copy(obj):", "    new = _new(_cls)"]
    for i, name in enumerate(names):
        scope[f"_set{i}"] = cls.__dict__[name].__set__  # the slot's own setter
        lines.append(f"    _set{i}(new, obj.{name})")
    lines.append("    return new")
    exec("\n".join(lines), scope)  # noqa: S102 - field names only, checked above
    return scope["copy"]  # type: ignore[no-any-return]
