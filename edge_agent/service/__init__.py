"""The agent as a systemd service: the notify protocol, the unit and the udev rules."""
