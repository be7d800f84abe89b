"""Desired configuration from the fleet: scopes and versions, each outlet's effective
config, signing and publishing, and what agents report back (docs/config.md)."""
