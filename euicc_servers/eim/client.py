"""A Python client of a running eIM's operator API for fleet work: labels, campaigns and the
event feed (``euicc-sim eim campaign ...`` is built on it).

    from euicc_servers.eim.client import EimApi

    with EimApi("https://127.0.0.1:8444", token, verify="ci.pem") as api:
        api.label(eid, {"site": "berlin"})
        c = api.create_campaign("enable", {"labels": {"site": "berlin"}}, order,
                                {"batchSize": 50, "maxFailures": 2})
        print(api.campaign(c["id"])["counts"])

Every call returns the API's JSON; an answer other than 2xx raises :class:`EimApiError` with
the status and the eIM's message, a transport failure :class:`httpx.HTTPError`.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import httpx

__all__ = ["EimApi", "EimApiError"]


class EimApiError(Exception):
    """The eIM answered with an error (``status``: the HTTP status)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class EimApi:
    """The operator API at ``base_url`` with ``token`` (``None``: an open API). ``verify``:
    ``True`` (system CAs), a CA file or an :class:`ssl.SSLContext`, or ``False``."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        verify: bool | str | ssl.SSLContext = True,
        timeout: float = 10.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if isinstance(verify, str):
            verify = ssl.create_default_context(cafile=verify)
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/api", headers=headers, verify=verify, timeout=timeout
        )

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> EimApi:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One operator API call; the JSON answer (``None`` for 204).

        Raises:
            EimApiError: a non-2xx answer.
        """
        response = self._http.request(method, path, json=body)
        if not response.is_success:
            try:
                message = str(response.json().get("error", response.text))
            except ValueError:
                message = response.text
            raise EimApiError(response.status_code, message)
        return response.json() if response.content else None

    # -- devices ---------------------------------------------------------------------------

    def label(self, eid: str, labels: dict[str, str]) -> dict[str, Any]:
        """Replace the labels of a registered eUICC; returns its record."""
        return dict(self.request("PATCH", f"/euiccs/{eid}", {"labels": labels})["euicc"])

    # -- campaigns -------------------------------------------------------------------------

    def create_campaign(
        self,
        name: str,
        select: Any,
        order: dict[str, Any],
        rollout: dict[str, Any] | None = None,
        *,
        follow: bool = False,
    ) -> dict[str, Any]:
        """``POST /api/campaigns``: the new campaign's view."""
        body: dict[str, Any] = {"name": name, "select": select, "order": order, "follow": follow}
        if rollout is not None:
            body["rollout"] = rollout
        return dict(self.request("POST", "/campaigns", body))

    def campaigns(self) -> list[dict[str, Any]]:
        """Every campaign with its counts."""
        return list(self.request("GET", "/campaigns")["campaigns"])

    def campaign(self, campaign_id: int) -> dict[str, Any]:
        """One campaign: state, counts, per-device results."""
        return dict(self.request("GET", f"/campaigns/{campaign_id}"))

    def pause(self, campaign_id: int) -> dict[str, Any]:
        """Pause a running campaign."""
        return dict(self.request("POST", f"/campaigns/{campaign_id}/pause"))

    def resume(self, campaign_id: int) -> dict[str, Any]:
        """Resume a paused campaign."""
        return dict(self.request("POST", f"/campaigns/{campaign_id}/resume"))

    def abort(self, campaign_id: int) -> dict[str, Any]:
        """Stop a campaign for good."""
        return dict(self.request("POST", f"/campaigns/{campaign_id}/abort"))

    # -- events ----------------------------------------------------------------------------

    def feed(self, after: int = 0) -> list[dict[str, Any]]:
        """Published events after ``after`` (``GET /api/feed``, at most 500 at a time)."""
        return list(self.request("GET", f"/feed?after={after}")["events"])

    def events(self, after: int | None = None) -> Iterator[dict[str, Any]]:
        """The live SSE stream (``GET /api/events``) as event dicts, from ``after`` on."""
        import json

        headers = {"Last-Event-ID": str(after)} if after is not None else {}
        timeout = httpx.Timeout(10.0, read=None)
        with self._http.stream("GET", "/events", headers=headers, timeout=timeout) as response:
            if not response.is_success:
                raise EimApiError(response.status_code, response.read().decode(errors="replace"))
            for line in response.iter_lines():
                if line.startswith("data:"):
                    yield dict(json.loads(line[5:]))
