"""``python -m edge_agent``: the same command line as ``edge-agent``."""

from edge_agent.cli import main

main(prog_name="edge-agent")
