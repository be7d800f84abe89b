"""The one error a test service raises."""

from __future__ import annotations


class ServiceUnavailable(RuntimeError):
    """A service binary is missing or the service did not start; ``hint`` says how to fix it."""

    def __init__(self, message: str, *, hint: str) -> None:
        super().__init__(f"{message} ({hint})")
        self.hint = hint
