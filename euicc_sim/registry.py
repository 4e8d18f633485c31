"""A tiny decorator-based table of ES10 handlers, keyed by ASN.1 request type name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Handler = Callable[[Any, Any], Any]


class HandlerTable(dict[str, Handler]):
    """``@table.handles("GetEuiccDataRequest")`` registers a handler for that request type."""

    def handles(self, *request_types: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            for name in request_types:
                if name in self:
                    raise ValueError(f"two handlers for {name}")
                self[name] = fn
            return fn

        return register
