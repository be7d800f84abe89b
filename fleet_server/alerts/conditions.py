"""What is wrong right now: every rule applied to one outlet's facts, without I/O.

``conditions_for`` returns the conditions that hold; the engine turns them into alerts
(open once, update, resolve when they stop holding). Presence comes in layers: when the
outlet's agent is not online its devices and metrics are stale, so only the outlet-level
rule may fire — one alert for the outlet, not one per device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fleet_server.health.hours import is_24h, is_open


@dataclass(frozen=True, slots=True, kw_only=True)
class OutletFacts:
    """Everything the rules read about one outlet."""

    outlet_id: str
    state: str
    state_since: datetime
    kind: str | None = None
    region_code: str | None = None
    opening_hours: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    clock_skew_s: float | None = None
    devices: list[dict[str, Any]] = field(default_factory=list)
    # Messages refused because the outlet is revoked (table revoked_traffic).
    revoked_refused: int = 0
    revoked_last_at: datetime | None = None
    # Today's refusals over the outlet's stored-bytes bound, and what it stored today.
    refused_today: int = 0
    stored_today: int = 0
    # Desired config (outlet_configs): out of sync since, and the reason of a refusal of
    # the desired version (None: not refused).
    config_drifting_since: datetime | None = None
    config_refused: str | None = None
    # The ``alerts`` part of the outlet's desired config (rule -> parameters), laid over
    # the rule book's parameters for this outlet (docs/config.md, "What a config holds").
    config_alerts: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """One rule that holds for one outlet (``device_id`` "" for outlet-level)."""

    rule: str
    outlet_id: str
    device_id: str
    severity: str
    summary: str
    value: float | None
    detail: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str]:
        """What identifies an alert episode."""
        return (self.rule, self.outlet_id, self.device_id)


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def conditions_for(
    facts: OutletFacts,
    rules: dict[str, dict[str, Any]],
    *,
    now: datetime,
    local_now: datetime,
    already_open: set[tuple[str, str, str]],
) -> list[Condition]:
    """The conditions holding for ``facts`` at ``now`` under ``rules``."""
    found: list[Condition] = []
    outlet = facts.outlet_id

    def add(rule: str, device: str, summary: str, value: float | None, **detail: Any) -> None:
        severity = str(detail.pop("severity", rules[rule]["severity"]))
        found.append(
            Condition(
                rule=rule,
                outlet_id=outlet,
                device_id=device,
                severity=severity,
                summary=summary,
                value=value,
                detail=detail,
            )
        )

    params = rules["revoked_outlet_traffic"]
    last = facts.revoked_last_at
    if (
        params["enabled"]
        and last is not None
        and (now - last).total_seconds() <= float(params["within_s"])
    ):
        refused = facts.revoked_refused
        summary = f"revoked outlet {outlet} still sends: {refused} messages refused"
        add("revoked_outlet_traffic", "", summary, float(refused), last_at=last.isoformat())

    params = rules["outlet_daily_bytes"]
    if params["enabled"] and facts.refused_today > 0:
        add("outlet_daily_bytes", "",
            f"outlet {outlet} over its stored bytes for today: "
            f"{facts.refused_today} transactions refused",
            float(facts.refused_today), stored_bytes=facts.stored_today)  # fmt: skip

    if facts.state != "online":
        down_s = (now - facts.state_since).total_seconds()
        if facts.state != "offline":
            # stale/unknown: the server cannot tell; never alert on what it does not know,
            # but keep an alert already open until the outlet is heard again.
            for rule in ("outlet_offline", "kiosk_down_24h"):
                if (rule, outlet, "") in already_open:
                    add(rule, "", f"outlet {outlet} {facts.state}", down_s, state=facts.state)
            return found
        kiosk = facts.kind == "kiosk" and is_24h(facts.opening_hours)
        rule = "kiosk_down_24h" if kiosk else "outlet_offline"
        params = rules[rule]
        opened = (rule, outlet, "") in already_open
        in_hours = kiosk or is_open(facts.opening_hours, local_now)
        if params["enabled"] and down_s >= float(params["after_s"]) and (in_hours or opened):
            add(rule, "", f"outlet {outlet} offline for {int(down_s)} s", down_s)
        return found

    for device in facts.devices:
        device_id = str(device["device_id"])
        health = device.get("health") or {}
        params = rules["device_offline"]
        if params["enabled"] and device["state"] in ("offline", "error"):
            down_s = (now - device["state_since"]).total_seconds()
            if down_s >= float(params["after_s"]):
                add(
                    "device_offline",
                    device_id,
                    f"device {device_id} {device['state']} for {int(down_s)} s",
                    down_s,
                    state=device["state"],
                )
        params = rules["read_failure_rate"]
        ok, failed = int(device.get("reads_ok") or 0), int(device.get("reads_failed") or 0)
        if params["enabled"] and ok + failed >= int(params["min_reads"]):
            ratio = failed / (ok + failed)
            if ratio > float(params["max_ratio"]):
                add(
                    "read_failure_rate",
                    device_id,
                    f"device {device_id} fails {ratio:.0%} of reads",
                    round(ratio, 4),
                    reads_ok=ok,
                    reads_failed=failed,
                )
        params = rules["printer_paper"]
        paper = health.get("paper")
        if params["enabled"] and paper in ("end", "out"):
            add("printer_paper", device_id, f"printer {device_id} out of paper", 0.0,
                severity="critical", paper=paper)  # fmt: skip
        elif params["enabled"] and params["near_end"] and paper == "near_end":
            add("printer_paper", device_id, f"printer {device_id} paper near end", 1.0,
                paper=paper)  # fmt: skip

    params = rules["config_drift"]
    if params["enabled"] and facts.config_refused is not None:
        add("config_drift", "", f"outlet {outlet} refused its config: {facts.config_refused}",
            0.0, reason=facts.config_refused)  # fmt: skip
    elif params["enabled"] and facts.config_drifting_since is not None:
        # Offline time is the outlet_offline rule's: count from when it came online.
        out_s = (now - max(facts.config_drifting_since, facts.state_since)).total_seconds()
        if out_s >= float(params["after_s"]):
            add("config_drift", "", f"outlet {outlet} out of config sync for {int(out_s)} s",
                out_s, since=facts.config_drifting_since.isoformat())  # fmt: skip

    metrics = facts.metrics
    params = rules["outbox_backlog_age"]
    age = _num(metrics.get("outbox_oldest_age_s"))
    if params["enabled"] and age is not None and age > float(params["max_age_s"]):
        add("outbox_backlog_age", "", f"outbox backlog {int(age)} s old", age,
            depth=metrics.get("outbox_depth_transaction"))  # fmt: skip
    params = rules["disk_almost_full"]
    used = _num(metrics.get("disk_used_percent"))
    if params["enabled"] and used is not None and used > float(params["max_used_percent"]):
        add("disk_almost_full", "", f"disk {used:.0f}% full", used,
            free_bytes=metrics.get("disk_free_bytes"))  # fmt: skip
    params = rules["clock_skew"]
    skew = facts.clock_skew_s
    if params["enabled"] and skew is not None and abs(skew) > float(params["max_skew_s"]):
        add("clock_skew", "", f"clock off by {skew:+.0f} s", skew)
    return found
