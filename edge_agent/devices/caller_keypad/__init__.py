"""Device kind ``caller_keypad``: the clerks' caller keypads (docs/devices/caller-keypad.md)."""

from edge_agent.devices.caller_keypad.capability import Keypad
from edge_agent.devices.caller_keypad.driver import CallerKeypad
from edge_agent.devices.caller_keypad.simulation import simulate
from edge_agent.devices.caller_keypad.simulator import CallerKeypadSimulator
from edge_agent.devices.registry import DeviceKind

# mypy --strict proves here that the driver has the kind's capability.
_CHECKED: type[Keypad] = CallerKeypad

KIND = DeviceKind(
    name="caller_keypad",
    capability=Keypad,
    drivers=(CallerKeypad,),
    simulators=(CallerKeypadSimulator,),
    simulate=simulate,
    window_field="keypad",
    window_bus=True,
)

__all__ = ["KIND", "Keypad"]
