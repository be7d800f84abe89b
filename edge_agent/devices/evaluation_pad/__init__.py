"""Device kind ``evaluation_pad``: the evaluation (rating) pad at a window.

See docs/devices/evaluation-pad.md.
"""

from edge_agent.devices.evaluation_pad.capability import RatingPad
from edge_agent.devices.evaluation_pad.driver import EvaluationPad
from edge_agent.devices.evaluation_pad.simulation import simulate
from edge_agent.devices.evaluation_pad.simulator import EvaluationPadSimulator
from edge_agent.devices.registry import DeviceKind

# mypy --strict proves here that the driver has the kind's capability.
_CHECKED: type[RatingPad] = EvaluationPad

KIND = DeviceKind(
    name="evaluation_pad",
    capability=RatingPad,
    drivers=(EvaluationPad,),
    simulators=(EvaluationPadSimulator,),
    simulate=simulate,
    window_field="pad",
)

__all__ = ["KIND", "RatingPad"]
