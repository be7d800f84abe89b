"""Alerts: rules with scoped overrides, an engine that opens/updates/resolves them,
webhook notifications with retries. See docs/fleet-health.md.

Exception tree::

    UnknownRule (ValueError)   an override names a rule or parameter that does not exist
"""

from fleet_server.alerts.engine import AlertEngine
from fleet_server.alerts.notify import WebhookNotifier
from fleet_server.alerts.rules import DEFAULT_RULES, RuleBook, UnknownRule, check_override

__all__ = [
    "DEFAULT_RULES",
    "AlertEngine",
    "RuleBook",
    "UnknownRule",
    "WebhookNotifier",
    "check_override",
]
