"""Device kind ``document_camera``: the document camera (docs/devices/document-camera.md).

``KIND`` and the capability load on first use (PEP 562): the capture process
(``worker.py``) imports this package for ``capture.py`` alone, without the driver, its
settings (pydantic) or the simulator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_agent.devices.document_camera.capability import DocumentCamera
    from edge_agent.devices.document_camera.driver import UvcDocumentCamera
    from edge_agent.devices.registry import DeviceKind

    # mypy --strict proves here that the driver has the kind's capability.
    _CHECKED: type[DocumentCamera] = UvcDocumentCamera
    KIND: DeviceKind

__all__ = ["KIND", "DocumentCamera"]


def _kind() -> DeviceKind:
    from edge_agent.devices.document_camera.driver import UvcDocumentCamera
    from edge_agent.devices.document_camera.simulation import simulate
    from edge_agent.devices.document_camera.simulator import DocumentCameraSimulator
    from edge_agent.devices.registry import DeviceKind

    return DeviceKind(
        name="document_camera",
        capability=_capability(),
        drivers=(UvcDocumentCamera,),
        simulators=(DocumentCameraSimulator,),
        simulate=simulate,
    )


def _capability() -> type[DocumentCamera]:
    from edge_agent.devices.document_camera.capability import DocumentCamera

    return DocumentCamera


def __getattr__(name: str) -> Any:
    if name == "KIND":
        kind = globals()["KIND"] = _kind()  # built once: the registry compares it
        return kind
    if name == "DocumentCamera":
        return _capability()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
