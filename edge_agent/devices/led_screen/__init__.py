"""Device kind ``led_screen``: the LED screens above the windows (docs/devices/led-screen.md)."""

from edge_agent.devices.led_screen.capability import WindowScreen
from edge_agent.devices.led_screen.driver import LedWindowScreen
from edge_agent.devices.led_screen.simulation import simulate
from edge_agent.devices.led_screen.simulator import LedScreenSimulator
from edge_agent.devices.registry import DeviceKind

# mypy --strict proves here that the driver has the kind's capability.
_CHECKED: type[WindowScreen] = LedWindowScreen

KIND = DeviceKind(
    name="led_screen",
    capability=WindowScreen,
    drivers=(LedWindowScreen,),
    simulators=(LedScreenSimulator,),
    simulate=simulate,
    window_field="led",
    window_bus=True,
)

__all__ = ["KIND", "WindowScreen"]
