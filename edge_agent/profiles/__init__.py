"""Device profiles: one YAML file per device model in ``device_profiles/``.

A profile says how discovery recognises the model (USB ids, subsystem, strings, or a
configured network address), which driver runs it with which settings, and which health
metrics it reports with their thresholds. ``load_profiles`` never fails on a bad file:
it returns the good profiles and a ``ProfileProblem`` (file, line, field) per fault.

No exception tree: problems are values, so one broken file cannot stop the others.
"""

from edge_agent.profiles.bridges import GENERIC_USB_SERIAL_BRIDGES, is_generic_bridge
from edge_agent.profiles.check import profiles_check_main
from edge_agent.profiles.loader import (
    DEFAULT_PROFILES_DIR,
    SCHEMA_PATH,
    check_profiles,
    load_profiles,
)
from edge_agent.profiles.models import (
    HealthRule,
    Kind,
    MatchRule,
    NetworkRule,
    Profile,
    ProfileProblem,
    ProfileSet,
    UsbRule,
)

__all__ = [
    "DEFAULT_PROFILES_DIR",
    "GENERIC_USB_SERIAL_BRIDGES",
    "SCHEMA_PATH",
    "HealthRule",
    "Kind",
    "MatchRule",
    "NetworkRule",
    "Profile",
    "ProfileProblem",
    "ProfileSet",
    "UsbRule",
    "check_profiles",
    "is_generic_bridge",
    "load_profiles",
    "profiles_check_main",
]
