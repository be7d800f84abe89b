"""Software-update campaigns: which outlets install which release, in waves (docs/updates.md)."""
