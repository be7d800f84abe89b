"""Exceptions of ``edge_agent.enrollment`` (tree in its ``__init__``)."""

from __future__ import annotations

from edge_agent.errors import AgentError


class EnrollmentError(AgentError):
    """Enrollment or renewal failed, or the stored identity cannot be used."""

    exit_code = 1


class NotEnrolled(EnrollmentError):
    """There is no certificate in the data directory: run ``edge-agent enroll`` first."""


class UntrustedAnswer(EnrollmentError):
    """The server's answer does not match the pinned fleet CA (or the CA given to
    ``enroll``), or its certificate is not for this outlet's new key; nothing was stored."""
