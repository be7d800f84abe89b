"""Configuration from the fleet at the agent: held keys, checks, live apply, last good.

``keys``: the config-signing public keys (from enrollment and renewal, or the
``config_keys_file`` setting). ``effective``: the local settings with a config on top,
checked against this outlet. ``applier``: verify, apply all or nothing, keep the last
good envelope (docs/config.md, "At the agent").
"""

from edge_agent.fleet_config.applier import LAST_GOOD, ConfigApplier, Outcome, load_last_good
from edge_agent.fleet_config.effective import Effective, LiveSettings, NotHereError, Outlet
from edge_agent.fleet_config.keys import ConfigKeysError, load_config_keys, store_config_keys

__all__ = [
    "LAST_GOOD",
    "ConfigApplier",
    "ConfigKeysError",
    "Effective",
    "LiveSettings",
    "NotHereError",
    "Outcome",
    "Outlet",
    "load_config_keys",
    "load_last_good",
    "store_config_keys",
]
