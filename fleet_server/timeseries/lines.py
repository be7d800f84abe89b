"""InfluxDB line protocol built as strings (~7x faster than ``Point``: docs/performance.md).

One line per telemetry message for host metrics (measurement ``outlet``) and one per
device (measurement ``device``), tagged by outlet and device (and by the outlet's
region code when it has one: scoped Grafana dashboards filter on it), stamped with the
server's receive time in milliseconds (an agent's clock may be skewed; the skew itself
is a field, ``clock_skew_s``). Only numbers and booleans become fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

from govedge_wire import Telemetry


def _tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _fields(metrics: Mapping[str, object]) -> str:
    parts = []
    for name, value in metrics.items():
        if isinstance(value, bool):
            parts.append(f"{_tag(name)}={'true' if value else 'false'}")
        elif isinstance(value, int):
            parts.append(f"{_tag(name)}={value}i")
        elif isinstance(value, float) and math.isfinite(value):
            parts.append(f"{_tag(name)}={value!r}")
    return ",".join(parts)


def telemetry_lines(
    message: Telemetry, *, received_at: datetime, region: str | None = None
) -> list[str]:
    """The line-protocol lines of one telemetry message (ms precision)."""
    ts = int(received_at.timestamp() * 1000)
    outlet = _tag(message.outlet_id)
    if region:
        outlet += f",region={_tag(region)}"
    host = dict(message.metrics)
    host["clock_skew_s"] = round(received_at.timestamp() - message.ts / 1000, 3)
    lines = []
    fields = _fields(host)
    if fields:
        lines.append(f"outlet,outlet_id={outlet} {fields} {ts}")
    for device_id, metrics in message.devices.items():
        fields = _fields(dict(metrics))
        if fields:
            lines.append(f"device,outlet_id={outlet},device_id={_tag(device_id)} {fields} {ts}")
    return lines
