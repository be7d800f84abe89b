"""Device kind ``social_security_card_reader``: the social-security card reader (PC/SC).

See docs/devices/social-security-card.md.
"""

from edge_agent.devices.registry import DeviceKind
from edge_agent.devices.social_security_card_reader.capability import SocialSecurityReader
from edge_agent.devices.social_security_card_reader.driver import PcscSocialSecurityReader
from edge_agent.devices.social_security_card_reader.simulation import simulate
from edge_agent.devices.social_security_card_reader.simulator import SocialSecurityCardSimulator

# mypy --strict proves here that the driver has the kind's capability.
_CHECKED: type[SocialSecurityReader] = PcscSocialSecurityReader

KIND = DeviceKind(
    name="social_security_card_reader",
    capability=SocialSecurityReader,
    drivers=(PcscSocialSecurityReader,),
    simulators=(SocialSecurityCardSimulator,),
    simulate=simulate,
)

__all__ = ["KIND", "SocialSecurityReader"]
