"""Fixtures for the uplink tests: the agent-process fixtures of tests/agent."""

from tests.agent.conftest import data_dir, observe, start_agent

__all__ = ["data_dir", "observe", "start_agent"]
