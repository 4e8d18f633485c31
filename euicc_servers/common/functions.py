"""What an ES9+ or ESipa function answers over the JSON binding (SGP.22 §6.5.1, SGP.32
§6.1): the executed-with-failure status and its statusCodeData, and the HTTP response both
servers send for a function."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

__all__ = [
    "ACCEPTED_PROTOCOL_PREFIX",
    "ADMIN_PROTOCOL",
    "JSON_CONTENT_TYPE",
    "FunctionFailed",
    "failed_response",
    "function_response",
    "success_response",
]

#: X-Admin-Protocol of every ES9+/ESipa JSON response.
ADMIN_PROTOCOL = "gsma/rsp/v2.5.0"
#: What a request's X-Admin-Protocol must start with.
ACCEPTED_PROTOCOL_PREFIX = "gsma/rsp/v"
#: Content-Type of every JSON function response.
JSON_CONTENT_TYPE = "application/json;charset=UTF-8"


class FunctionFailed(Exception):
    """A function ends with status Failed and this statusCodeData (subjectCode/reasonCode)."""

    def __init__(self, subject: str, reason: str, message: str) -> None:
        super().__init__(f"{subject}/{reason}: {message}")
        self.subject = subject
        self.reason = reason
        self.message = message

    def status_code_data(self) -> dict[str, str]:
        """The JSON ``statusCodeData`` object."""
        return {"subjectCode": self.subject, "reasonCode": self.reason, "message": self.message}


def failed_response(error: FunctionFailed) -> dict[str, Any]:
    """The JSON body of a function that ended with status Failed."""
    status = {"status": "Failed", "statusCodeData": error.status_code_data()}
    return {"header": {"functionExecutionStatus": status}}


def success_response(fields: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of a function executed with success, with its response ``fields``."""
    return {"header": {"functionExecutionStatus": {"status": "Executed-Success"}}, **fields}


def function_response(status: int, body: dict[str, Any] | None) -> Response:
    """The HTTP response of a JSON function: ``body`` compact UTF-8 JSON, or none (204)."""
    headers = {"X-Admin-Protocol": ADMIN_PROTOCOL}
    if body is None:
        return Response(status_code=status, headers=headers)
    headers["Content-Type"] = JSON_CONTENT_TYPE
    content = json.dumps(body, separators=(",", ":")).encode("utf-8")
    return Response(content, status_code=status, headers=headers)
