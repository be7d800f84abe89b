"""``edge-agent`` with the camera kind's simulator taken away (bench/agent_footprint.py).

Every other simulated device attaches as in ``--simulate``; the agent then runs exactly
as ``edge-agent run`` does. Only the benchmark uses this launcher.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_agent.cli import main
from edge_agent.devices.registry import kinds

# ``kinds()`` is cached: editing the cached dict is what the agent will see.
registry = kinds()
registry["document_camera"] = dataclasses.replace(registry["document_camera"], simulate=None)

if __name__ == "__main__":
    main()
