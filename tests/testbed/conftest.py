"""Fixtures for the testbed tests: the secure-mode broker and fleet CA of tests/security."""

from tests.security.conftest import fleet_ca, pki_dir, secure_broker

__all__ = ["fleet_ca", "pki_dir", "secure_broker"]
