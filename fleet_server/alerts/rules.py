"""Alert rules, their default parameters, and overrides per scope.

Scopes apply in order, later ones winning key by key: ``global`` → ``region`` (every
region code that is a prefix of the outlet's, shortest first, so a province override
is refined by a county one; regions need not exist in the ``regions`` table) →
``kind`` (outlet kind) → ``outlet``. ``enabled: false`` at any scope turns a rule off.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DEFAULT_RULES: dict[str, dict[str, Any]] = {
    # Outlet's agent offline (death seen) longer than after_s, during opening hours.
    "outlet_offline": {"enabled": True, "after_s": 600, "severity": "critical"},
    # A 24-hour self-service kiosk outlet offline longer than after_s, any time.
    "kiosk_down_24h": {"enabled": True, "after_s": 300, "severity": "critical"},
    # A device offline or in error longer than after_s while its agent is online.
    "device_offline": {"enabled": True, "after_s": 300, "severity": "warning"},
    # reads_failed / (reads_ok + reads_failed) above max_ratio, after min_reads reads.
    "read_failure_rate": {
        "enabled": True,
        "max_ratio": 0.2,
        "min_reads": 20,
        "severity": "warning",
    },
    # A printer's paper near its end (warning) or out (critical).
    "printer_paper": {"enabled": True, "near_end": True, "severity": "warning"},
    # The agent's oldest undelivered outbox entry older than max_age_s.
    "outbox_backlog_age": {"enabled": True, "max_age_s": 1800, "severity": "warning"},
    # The agent's data disk fuller than max_used_percent.
    "disk_almost_full": {"enabled": True, "max_used_percent": 90.0, "severity": "warning"},
    # |receive time - payload time| above max_skew_s.
    "clock_skew": {"enabled": True, "max_skew_s": 120.0, "severity": "warning"},
    # The ingest refused messages of a revoked outlet (its key is in someone's hands)
    # within the last within_s; any presence state (docs/security.md, "Revocation").
    "revoked_outlet_traffic": {"enabled": True, "within_s": 3600, "severity": "critical"},
    # The outlet went over GOVEDGE_OUTLET_DAILY_BYTES today: its transactions are refused
    # until tomorrow (fleet_server.transactions.usage). A stolen key, or a runaway app.
    "outlet_daily_bytes": {"enabled": True, "severity": "critical"},
    # The online outlet runs another config than the desired one longer than after_s
    # (counted from when it drifted or came online, whichever is later), or its agent
    # refused the desired config (docs/config.md, "Drift").
    "config_drift": {"enabled": True, "after_s": 900, "severity": "warning"},
    # The outlet's install in an open (running or paused) campaign failed or rolled back
    # (docs/updates.md); resolved when the campaign ends or the outlet is retried.
    "update_failed": {"enabled": True, "severity": "warning"},
    # A campaign paused itself or was paused (campaign-level: outlet_id "_fleet",
    # device_id "campaign:{id}"); resolved when it runs again or ends.
    "campaign_paused": {"enabled": True, "severity": "warning"},
    # The outlet has at least min_count dead letters nobody replayed (docs/transactions.md);
    # resolved when they are replayed.
    "dead_letters": {"enabled": True, "min_count": 1, "severity": "warning"},
    # An upstream target's circuit breaker is open or half-open in the leading process
    # (fleet-level: outlet_id "_fleet", device_id "target:{name}"); resolved when closed.
    "upstream_breaker_open": {"enabled": True, "severity": "critical"},
    # The outlet has 差评 rectification tickets still open past their deadline.
    "rectification_overdue": {"enabled": True, "severity": "warning"},
    # The outlet's active evaluation rate over the last `days` is below min_rate, once it
    # had at least min_cases cases in them (fewer say little).
    "evaluation_rate_low": {
        "enabled": True,
        "min_rate": 0.6,
        "days": 7,
        "min_cases": 20,
        "severity": "warning",
    },
    # The outlet's newest unrevoked client certificate expires within `within_days` (or
    # has expired): renew it (docs/security.md) before the broker refuses the outlet.
    "certificate_expiring": {"enabled": True, "within_days": 14, "severity": "warning"},
}
RULE_NAMES = tuple(DEFAULT_RULES)
SEVERITIES = ("info", "warning", "critical")


class UnknownRule(ValueError):
    """An override named a rule or a parameter that does not exist, or gave a parameter
    a value of the wrong kind; ``field`` is the parameter (``None``: the rule itself)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def check_override(rule: str, params: dict[str, Any]) -> None:
    """Raise ``UnknownRule`` unless every key of ``params`` is a parameter of ``rule``
    with a value of the default's kind (a flag, a number not below 0, a severity)."""
    if rule not in DEFAULT_RULES:
        raise UnknownRule(f"unknown rule {rule!r}; rules are {', '.join(RULE_NAMES)}")
    defaults = DEFAULT_RULES[rule]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise UnknownRule(
            f"rule {rule!r} has no parameter(s) {', '.join(unknown)}", field=unknown[0]
        )
    for name, value in params.items():
        problem = _value_problem(defaults[name], value)
        if problem:
            raise UnknownRule(f"{name}: {problem}", field=name)


def _value_problem(default: object, value: object) -> str | None:
    """Why ``value`` cannot stand in for ``default`` (None: it can)."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(default, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
        return None if value >= 0 else "must not be negative"
    if default in SEVERITIES:
        return None if value in SEVERITIES else f"must be one of {', '.join(SEVERITIES)}"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Override:
    """One stored override."""

    scope: str
    scope_value: str
    rule: str
    params: dict[str, Any]


class RuleBook:
    """Effective parameters per outlet, from the defaults and a list of overrides."""

    def __init__(self, overrides: Iterable[Override]) -> None:
        self._by_scope: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for item in overrides:
            self._by_scope.setdefault((item.scope, item.scope_value), {})[item.rule] = item.params
        # Keyed by the layers that have overrides: outlets none of whose layers has one
        # (most of a fleet) share one dict instead of a copy of every rule each.
        self._cache: dict[tuple[tuple[str, str], ...], dict[str, dict[str, Any]]] = {}

    def loosest_read_thresholds(self) -> tuple[int, float]:
        """The lowest ``min_reads`` and ``max_ratio`` of ``read_failure_rate`` anywhere.

        Used to pre-filter devices in SQL: a device below both cannot fire the rule
        for any outlet, whatever scope applies to it.
        """
        layers = [DEFAULT_RULES["read_failure_rate"]] + [
            rules["read_failure_rate"]
            for rules in self._by_scope.values()
            if "read_failure_rate" in rules
        ]
        min_reads = min(_as_number(p.get("min_reads"), 20.0) for p in layers)
        max_ratio = min(_as_number(p.get("max_ratio"), 0.2) for p in layers)
        return int(min_reads), max_ratio

    def for_outlet(
        self, *, outlet_id: str, region_code: str | None, kind: str | None
    ) -> dict[str, dict[str, Any]]:
        """Every rule's effective parameters for one outlet (shared: never mutate it)."""
        layers: list[tuple[str, str]] = [("global", "")]
        if region_code:
            layers += [("region", region_code[:n]) for n in range(1, len(region_code) + 1)]
        if kind:
            layers.append(("kind", kind))
        layers.append(("outlet", outlet_id))
        key = tuple(layer for layer in layers if layer in self._by_scope)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        effective = {rule: dict(params) for rule, params in DEFAULT_RULES.items()}
        for layer in key:
            for rule, params in self._by_scope[layer].items():
                effective[rule].update(params)
        self._cache[key] = effective
        return effective


def _as_number(value: object, default: float) -> float:
    """A parameter as stored (number or numeric string); ``default`` if absent."""
    if value is None:
        return default
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
