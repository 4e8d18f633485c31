"""Operator API authentication shared by the reference servers.

Rules:

* The operator API is authenticated unless the operator opts out explicitly: a server given
  no token makes one at first start (32 random bytes, URL-safe base64), keeps it in its state
  directory as ``admin-token`` (mode 0600, reused at every later start) and says where; without
  a state directory the token lives in memory for the life of the process.
* Every operator request carries ``Authorization: Bearer <token>``; a missing or wrong one is
  401. The whole header is compared in constant time (:func:`hmac.compare_digest`).
* Running without authentication (``--no-auth``, ``open_operator_api=True``) logs a warning.
"""

from __future__ import annotations

import argparse
import hmac
import logging
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TOKEN_FILE", "OperatorAuth", "announce_auth", "load_or_create_token", "new_token"]

log = logging.getLogger(__name__)

#: The token's file name in a server's state directory.
TOKEN_FILE = "admin-token"


def load_or_create_token(directory: str | os.PathLike[str]) -> tuple[str, Path]:
    """The token kept in ``directory/admin-token``, created (mode 0600) when absent.

    Raises:
        ValueError: the file exists but holds no usable token.
    """
    path = Path(directory) / TOKEN_FILE
    Path(directory).mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text(encoding="ascii").strip()
        if len(token) < 16 or any(c.isspace() for c in token):
            raise ValueError(f"{path}: not a usable operator token") from None
        return token, path
    token = new_token()
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    log.info("operator API token created in %s", path)
    return token, path


def new_token() -> str:
    """A random URL-safe token (256 bits) that does not start with ``-``: it is given on
    command lines (``--token VALUE``), where a leading dash reads as an option."""
    while True:
        token = secrets.token_urlsafe(32)
        if not token.startswith("-"):
            return token


@dataclass(frozen=True)
class OperatorAuth:
    """How a server's operator API is protected: ``token`` (``None`` only when opened on
    purpose) and ``path``, the file it is kept in (``None``: given, or in memory)."""

    token: str | None = field(repr=False)
    path: Path | None = None

    @classmethod
    def resolve(
        cls,
        token: str | None,
        *,
        open_api: bool = False,
        state_dir: str | os.PathLike[str] | None = None,
    ) -> OperatorAuth:
        """The protection a server starts with: ``token`` when given; none when ``open_api``
        (with a warning); else the token of ``state_dir`` (created at first start), or a
        random one kept in memory."""
        if open_api:
            if token is not None:
                raise ValueError("give an operator token or open the API, not both")
            log.warning("the operator API is NOT authenticated: anyone who reaches it controls it")
            return cls(None)
        if token is not None:
            if not token or any(c.isspace() for c in token):
                raise ValueError("the operator token must be non-empty without whitespace")
            return cls(token)
        if state_dir is not None:
            stored, path = load_or_create_token(state_dir)
            return cls(stored, path)
        return cls(new_token())

    @property
    def header(self) -> dict[str, str]:
        """The header a client sends (empty for an open API)."""
        return {} if self.token is None else {"Authorization": f"Bearer {self.token}"}

    def allows(self, authorization: str | None) -> bool:
        """Whether a request with this ``Authorization`` header may use the operator API."""
        if self.token is None:
            return True
        given = (authorization or "").encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, f"Bearer {self.token}".encode())

    def describe(self) -> str:
        """Where the token is, for the start-up message (never the token itself when it is
        kept in a file)."""
        if self.token is None:
            return "operator API open (no authentication)"
        if self.path is not None:
            return f"operator API token in {self.path}"
        return "operator API token given on the command line or in memory"


def announce_auth(auth: OperatorAuth, state: str | None) -> None:
    """Tell the operator where the token is (stderr: the token is printed only when it is
    kept nowhere else)."""
    if auth.token is None:
        print("WARNING: the operator API is open to anyone (--no-auth)", file=sys.stderr)
    elif auth.path is not None:
        print(f"operator API token: {auth.path} (mode 0600)", file=sys.stderr)
    elif state is None:
        print(f"operator API token (this run only): {auth.token}", file=sys.stderr)


def add_auth_arguments(parser: argparse.ArgumentParser, api_path: str) -> None:
    """Add ``--admin-token`` / ``--no-auth`` (mutually exclusive) for the operator API at
    ``api_path`` to a server command's ``parser``."""
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument(
        "--admin-token",
        help=f"operator API token ('Authorization: Bearer TOKEN' on {api_path}; default: one "
        "made at first start, kept in --state as admin-token)",
    )
    auth.add_argument(
        "--no-auth", action="store_true", help="serve the operator API WITHOUT authentication"
    )
