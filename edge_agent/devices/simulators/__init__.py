"""Simulators that speak each device's real bytes over a pseudo-terminal or a socket."""
