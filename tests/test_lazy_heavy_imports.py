"""Heavy libraries load only when a device that needs them starts (issue 17).

OpenCV with NumPy costs about 30 MiB of RSS and pyscard its own share, so
``edge-agent run`` must not import them until a camera or a PC/SC reader starts; a
camera's OpenCV loads in its capture process, never in the agent. Each check runs in a
fresh interpreter: ``sys.modules`` of the test process is polluted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from edge_agent.devices.document_camera.simulator import write_document_video

HEAVY = ("cv2", "numpy", "smartcard")
# Loaded by the first update download or enrollment, never by a plain start: httpx pulls
# in its command line's rich and pygments (several MiB, ~0.2 s). jsonschema (~3 MiB) is
# loaded by a profile check only, which a start skips for profiles that passed before.
NOT_AT_START = (*HEAVY, "httpx", "rich", "pygments", "jsonschema")
# The local API is served by Starlette alone: FastAPI (~8 MiB with its OpenAPI models)
# loads only in the child process that writes /openapi.json.
NEVER_IN_THE_AGENT = ("fastapi",)
# pydantic-settings (22 modules, with python-dotenv; ~1.1 MiB): the agent reads its
# GOVEDGE_* variables itself (edge_agent/settings.py); the fleet server keeps it.
# argparse (~0.3 MiB) is release_check's command line only; the agent uses its hashing.
NOT_FOR_SETTINGS = ("pydantic_settings", "dotenv", "argparse")
# Used sometimes, not by every agent every day: a window's QR page (segno with its SVG
# writer), an update's unpacking (tarfile) and the other subcommands of ``edge-agent``.
SOMETIMES = (
    "segno",
    "tarfile",
    "edge_agent.enrollment.cli",
    "edge_agent.local_api.cli",
    "edge_agent.service.cli",
    "edge_agent.technician.cli",
    "edge_agent.technician.device_cli",
    "edge_agent.updates.cli",
)

# What ``edge-agent run`` imports, plus every kind package (the registry loads them all).
_IMPORT_AGENT = """
import json, sys
import edge_agent.assembly, edge_agent.cli, edge_agent.daemon
from edge_agent.devices.registry import kinds
kinds()
loaded = lambda: sorted(m for m in {heavy!r} if m in sys.modules)
"""


def _run(script: str) -> dict[str, list[Any]]:
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded: dict[str, list[Any]] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_the_local_api_and_technician_socket_run_without_fastapi() -> None:
    script = f"""
import json, sys
from pathlib import Path
import edge_agent.assembly, edge_agent.daemon
from edge_agent.local_api import AppRegistry, create_local_app
from edge_agent.technician.socket_api import create_technician_app
from edge_agent.local_api.routes import v1_router
from edge_agent.local_api.routing import starlette_routes
routes = starlette_routes(v1_router)  # every route's parameters bound, as at start
print(json.dumps({{"loaded": sorted(m for m in {NEVER_IN_THE_AGENT!r} if m in sys.modules),
                  "routes": [len(routes)]}}))
"""
    result = _run(script)
    assert result["loaded"] == []
    assert result["routes"][0] >= 20  # the /v1 routes were bound, not none


def test_agent_import_loads_no_heavy_library() -> None:
    loaded = _run(
        _IMPORT_AGENT.format(heavy=NOT_AT_START) + "print(json.dumps({'loaded': loaded()}))"
    )
    assert loaded["loaded"] == []


def test_agent_settings_load_without_pydantic_settings(tmp_path: Path) -> None:
    """``edge-agent run``'s imports and its settings load, a JSON variable among them."""
    script = _IMPORT_AGENT.format(heavy=NOT_FOR_SETTINGS) + (
        "import os\n"
        "from click.testing import CliRunner\n"
        "from edge_agent.cli import main\n"
        "os.environ['GOVEDGE_SIMULATE_RATINGS'] = '[5, 4]'\n"
        "result = CliRunner().invoke(main, ['show-config', '--outlet-id', 'o-1', "
        f"'--data-dir', {str(tmp_path)!r}])\n"
        "shown = json.loads(result.stdout)\n"
        "print(json.dumps({'loaded': loaded(), 'shown': [result.exit_code, "
        "shown['simulate_ratings']]}))\n"
    )
    result = _run(script)
    assert result["shown"] == [0, [5, 4]]  # the environment was read
    assert result["loaded"] == []


def test_agent_import_leaves_what_is_used_sometimes_for_its_first_use() -> None:
    loaded = _run(_IMPORT_AGENT.format(heavy=SOMETIMES) + "print(json.dumps({'loaded': loaded()}))")
    assert loaded["loaded"] == []


def test_the_supervisor_carries_no_agent() -> None:
    """``edge-agent supervise`` runs beside the agent on every outlet PC (the unit's
    main process): it reads the install layout and starts the agent, nothing more."""
    script = """
import json, sys
import edge_agent.cli, edge_agent.supervisor
agent = ("edge_agent.daemon", "edge_agent.settings", "edge_agent.updates.installer",
         "fastapi", "pydantic", "aiomqtt", "cryptography")
print(json.dumps({"loaded": sorted(m for m in agent if m in sys.modules)}))
"""
    assert _run(script)["loaded"] == []


def test_a_subcommand_loads_when_named() -> None:
    script = """
import json, sys
from click.testing import CliRunner
from edge_agent.cli import main
result = CliRunner().invoke(main, ["device", "--help"])
print(json.dumps({"loaded": ["edge_agent.technician.device_cli" in sys.modules],
                  "help": [result.exit_code, "self-test" in result.output]}))
"""
    result = _run(script)
    assert result["help"] == [0, True]
    assert result["loaded"] == [True]


def test_a_camera_starting_loads_opencv_in_its_capture_process(tmp_path: Path) -> None:
    video = write_document_video(tmp_path / "page.avi", width=320, height=240, frames=2)
    script = (
        _IMPORT_AGENT.format(heavy=HEAVY)
        + f"""
import asyncio
from edge_agent.devices import DeviceIdentity
from edge_agent.devices.document_camera.driver import UvcDocumentCamera

before = loaded()
identity = DeviceIdentity(
    device_id="cam-1", profile="uvc-generic", kind="document_camera", address={str(video)!r}
)

def mapped(pid: int) -> list[str]:
    maps = open(f"/proc/{{pid}}/maps").read()
    return sorted(lib for lib in ("cv2", "numpy") if f"/{{lib}}/" in maps)

async def capture() -> tuple[bytes, list[str]]:
    settings = {{"width": 160, "height": 120, "jpeg_quality": 80, "warmup_frames": 0}}
    async with UvcDocumentCamera(identity, settings=settings) as camera:
        jpeg = await camera.capture_jpeg()
        import psutil
        (child,) = psutil.Process().children()
        return jpeg, mapped(child.pid)

jpeg, in_child = asyncio.run(capture())
print(json.dumps({{"before": before, "after": loaded(), "jpeg": [jpeg[:2].hex()],
                   "child": in_child}}))
"""
    )
    result = _run(script)
    assert result["before"] == []
    assert result["jpeg"] == ["ffd8"]
    assert result["child"] == ["cv2", "numpy"]  # the capture process holds OpenCV
    assert result["after"] == []  # the agent does not


def test_the_simulated_camera_writes_its_video_in_another_process() -> None:
    """``--simulate``: the agent holds what a real camera costs, not the video encoder."""
    script = (
        _IMPORT_AGENT.format(heavy=HEAVY)
        + """
import asyncio
from contextlib import AsyncExitStack
from edge_agent.devices.document_camera.simulation import simulate
from edge_agent.devices.simulation import SimulationOptions

async def start() -> list[str]:
    async with AsyncExitStack() as stack:
        device = await simulate(stack, SimulationOptions())
        path = device.usb.device_node
        with open(path, "rb") as video:
            return [video.read(4).decode(), loaded()]

riff, after = asyncio.run(start())
print(json.dumps({"riff": [riff], "after": after}))
"""
    )
    result = _run(script)
    assert result["riff"] == ["RIFF"]  # an AVI is there for the driver to open
    assert result["after"] == []


def test_a_start_with_profiles_checked_before_loads_no_jsonschema_nor_yaml(
    tmp_path: Path,
) -> None:
    """The profile load of ``open_runtime``, twice, each in a fresh interpreter: the
    second takes the profiles' data from the memo (PyYAML ~0.9 MiB)."""
    script = f"""
import json, sys
from pathlib import Path
import edge_agent.assembly, edge_agent.daemon
from edge_agent.profiles import load_profiles
loaded = load_profiles(schema_memo=Path({str(tmp_path / "profiles-checked.json")!r}))
print(json.dumps({{"jsonschema": ["jsonschema" in sys.modules], "yaml": ["yaml" in sys.modules],
                   "profiles": [len(loaded.profiles)], "problems": [len(loaded.problems)]}}))
"""
    first, second = _run(script), _run(script)
    assert first["jsonschema"] == first["yaml"] == [True]  # nothing remembered: the full check
    assert second["jsonschema"] == second["yaml"] == [False]
    assert second["profiles"] == first["profiles"] != [0]
    assert second["problems"] == [0]


_IMPORT_SERVER = """
import json, sys
import fleet_server.app, fleet_server.cli, fleet_server.runtime
before = sorted(m for m in ("influxdb_client", "numpy") if m in sys.modules)
from fleet_server.timeseries.sink import TelemetrySink
sink = TelemetrySink(url="http://127.0.0.1:9", token="", org="", bucket="b")
after = sorted(m for m in ("influxdb_client",) if m in sys.modules)
print(json.dumps({"before": before, "after": after}))
"""


def test_the_fleet_server_loads_the_time_series_client_only_for_a_sink() -> None:
    """influxdb-client (with NumPy) cost every server start ~1.3 CPU s: every worker,
    the alert pass's child, every command; only a configured time-series store needs it."""
    loaded = _run(_IMPORT_SERVER)
    assert loaded["before"] == []
    assert loaded["after"] == ["influxdb_client"]
