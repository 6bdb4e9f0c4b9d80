"""The one exception a request handler raises for a request the server cannot serve."""

from __future__ import annotations


class RequestError(Exception):
    """Answered as `{"error": message}` with `status`; the message names the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
