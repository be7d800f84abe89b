"""Fleet health: device state, events, per-outlet rate limits and the health API.

Exception tree: none of its own; database errors are counted and logged by the caller.
"""
