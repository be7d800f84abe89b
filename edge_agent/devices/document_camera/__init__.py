"""Device kind ``document_camera``: the document camera (docs/devices/document-camera.md)."""

from edge_agent.devices.document_camera.capability import DocumentCamera
from edge_agent.devices.document_camera.driver import UvcDocumentCamera
from edge_agent.devices.document_camera.simulation import simulate
from edge_agent.devices.document_camera.simulator import DocumentCameraSimulator
from edge_agent.devices.registry import DeviceKind

# mypy --strict proves here that the driver has the kind's capability.
_CHECKED: type[DocumentCamera] = UvcDocumentCamera

KIND = DeviceKind(
    name="document_camera",
    capability=DocumentCamera,
    drivers=(UvcDocumentCamera,),
    simulators=(DocumentCameraSimulator,),
    simulate=simulate,
)

__all__ = ["KIND", "DocumentCamera"]
