"""Wire shapes of ``/v1/devices``: the devices the agent has seen and their health."""

from __future__ import annotations

from pydantic import BaseModel

from edge_agent.local_api.models.common import examples

__all__ = ["DeviceList", "DevicePublic"]


class DevicePublic(BaseModel):
    """One device: kind, model, state (``ready``/``probing``/``error``/``offline``), health."""

    model_config = examples(
        {
            "device_id": "sam-serial-bridge.sn-10c4ea60-0001",
            "kind": "id_card_reader",
            "model": "SAM_A",
            "state": "ready",
            "health": {"reads_ok": 12, "connected": True, "level": "ok"},
        }
    )

    device_id: str
    kind: str
    model: str
    state: str
    health: dict[str, float | int | bool | str]


class DeviceList(BaseModel):
    """Every device the agent has seen since it started."""

    devices: list[DevicePublic]
