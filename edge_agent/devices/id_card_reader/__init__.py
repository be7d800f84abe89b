"""Device kind ``id_card_reader``: the second-generation ID-card reader (SAM module).

See docs/devices/id-card-reader.md.
"""

from edge_agent.devices.id_card_reader.capability import IdCardReader
from edge_agent.devices.id_card_reader.driver import SamIdReader
from edge_agent.devices.id_card_reader.simulation import simulate
from edge_agent.devices.id_card_reader.simulator import IdCardSimulator
from edge_agent.devices.id_card_reader.simulator_usb import UsbIdCardSimulator
from edge_agent.devices.registry import DeviceKind

# mypy --strict proves here that the driver has the kind's capability.
_CHECKED: type[IdCardReader] = SamIdReader

KIND = DeviceKind(
    name="id_card_reader",
    capability=IdCardReader,
    drivers=(SamIdReader,),
    simulators=(
        IdCardSimulator,
        UsbIdCardSimulator,
    ),
    simulate=simulate,
)

__all__ = ["KIND", "IdCardReader"]
