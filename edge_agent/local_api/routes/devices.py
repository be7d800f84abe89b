"""``/v1/devices``: what is attached, its state and its health."""

from __future__ import annotations

from edge_agent.local_api.deps import RuntimeDep
from edge_agent.local_api.errors import ApiError, error_responses
from edge_agent.local_api.models import DeviceList, DevicePublic
from edge_agent.local_api.routing import APIRouter

router = APIRouter(prefix="/devices", tags=["devices"])


async def _devices(runtime: RuntimeDep) -> list[DevicePublic]:
    health = await runtime.devices.health()  # fresh samples of ready devices (bounded)
    return [
        DevicePublic(
            device_id=info.device_id,
            kind=info.kind,
            model=info.model,
            state=info.state,
            health=dict(health.get(info.device_id, info.health)),
        )
        for info in runtime.devices.inventory()
    ]


@router.get("", response_model=DeviceList, responses=error_responses())
async def list_devices(runtime: RuntimeDep) -> DeviceList:
    """Every device seen since start, with state and a fresh health sample of ready ones."""
    return DeviceList(devices=await _devices(runtime))


@router.get("/{device_id}", response_model=DevicePublic, responses=error_responses(404))
async def get_device(device_id: str, runtime: RuntimeDep) -> DevicePublic:
    """One device; 404 ``unknown_device`` if the agent never saw it."""
    for device in await _devices(runtime):
        if device.device_id == device_id:
            return device
    raise ApiError(404, "unknown_device", f"no device {device_id!r}", hint="see GET /v1/devices")
