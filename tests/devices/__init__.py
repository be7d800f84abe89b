"""Device driver tests against simulators over real pseudo-terminals and sockets."""
