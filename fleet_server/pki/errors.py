"""The PKI's exceptions (tree in ``fleet_server.pki``)."""

from __future__ import annotations


class PkiError(Exception):
    """The CA files cannot be used, or a certificate cannot be issued."""


class BadCertificateRequest(PkiError):
    """A CSR, a presented certificate or a proof-of-possession signature is unusable."""
