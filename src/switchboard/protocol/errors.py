"""Typed decode errors. Each names the offending field so a log line is actionable."""

from __future__ import annotations


class ProtocolError(ValueError):
    """An inbound frame that does not follow the spec.

    ``field`` is a JSON path such as ``$.response_id`` (``None`` when the frame is not
    JSON at all). Callers log it with the call id and keep the socket open, as Retell does.
    """

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{reason} (at {field})" if field else reason)


class UnknownInteraction(ProtocolError):
    """A well-formed frame whose ``interaction_type`` we do not know: tolerated and ignored."""

    def __init__(self, interaction_type: str) -> None:
        self.interaction_type = interaction_type
        super().__init__(f"unknown interaction_type {interaction_type!r}", "$.interaction_type")


class FrameTooLarge(ProtocolError):
    """A frame above the configured size limit; the socket is closed rather than parsed."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"frame of {size} bytes exceeds the {limit}-byte limit")
