"""Errors raised while decoding a message; each carries the reason it is counted under."""

from __future__ import annotations


class WireError(Exception):
    """A message that cannot be accepted; ``reason`` is a short stable counter key."""

    reason: str = "invalid"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class PayloadTooLarge(WireError):
    """The payload is larger than ``MAX_PAYLOAD_BYTES``; it was not parsed."""

    reason = "too_large"


class MalformedPayload(WireError):
    """The payload is not JSON, not an object, or does not fit the model of its kind."""

    reason = "invalid"


class UnsupportedSchema(WireError):
    """The payload declares a schema version this peer does not speak."""

    reason = "unsupported_schema"

    def __init__(self, message: str, *, schema: object) -> None:
        super().__init__(message)
        self.schema = schema


class TopicMismatch(WireError):
    """The topic is not ours, or disagrees with the payload's kind or outlet."""

    reason = "bad_topic"
