"""Telemetry to an InfluxDB-v2-compatible store (InfluxDB 2, VictoriaMetrics).

Off unless ``timeseries_url`` is set. See ``fleet_server.timeseries.sink``.
"""

from fleet_server.timeseries.lines import telemetry_lines
from fleet_server.timeseries.sink import SinkStats, TelemetrySink

__all__ = ["SinkStats", "TelemetrySink", "telemetry_lines"]
