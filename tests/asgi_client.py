"""A synchronous in-process HTTP client for an ASGI app (httpx.ASGITransport), for tests of
the reference servers."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


class AsgiClient:
    """Each request runs the app in-process, with no socket."""

    def __init__(self, app: Any, base_url: str = "http://server.test") -> None:
        self.app = app
        self.base_url = base_url

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=self.base_url) as c:
                return await c.request(method, url, **kwargs)

        return asyncio.run(send())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)
