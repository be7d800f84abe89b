"""Exceptions of ``fleet_server.security`` (tree in its ``__init__``)."""

from __future__ import annotations


class SecurityError(Exception):
    """A security operation was refused; ``status`` is the HTTP status the API answers."""

    status = 400


class NotFound(SecurityError):
    """The user, outlet or certificate does not exist."""

    status = 404


class Conflict(SecurityError):
    """The name is taken, or the token was already used."""

    status = 409


class Refused(SecurityError):
    """A token or proof is invalid, expired or used (never says which to a caller)."""

    status = 403
