"""The card's exceptions (one tree: every failure to create, open or change a card is a
:class:`CardError`)."""

from __future__ import annotations


class CardError(Exception):
    """A card cannot be created, opened or changed as asked."""


class CardBusy(CardError):
    """The card directory is open elsewhere: it has one owner at a time.

    ``pid`` is the process that holds it, as it wrote itself into the lock file (``None``
    if it cannot be read); it may be this very process, when another :class:`Euicc` object
    still has the directory open.
    """

    def __init__(self, directory: str, pid: int | None, waited: float | None = None) -> None:
        self.directory = directory
        self.pid = pid
        self.waited = waited
        if pid is None:
            holder = "another process"
        else:
            holder = f"process {pid}"
        message = f"card directory {directory} is in use by {holder}"
        if waited:
            message += f" (waited {waited:g} s)"
        super().__init__(message)


class CardClosed(CardError):
    """The card object was closed (:meth:`Euicc.close`); open the directory again to use it."""
