"""The agent's MQTT uplink: session, presence, downlink, telemetry and its helpers.

Modules are imported directly (``edge_agent.uplink.session`` and so on); this package
re-exports nothing so that importing one piece does not pull in MQTT.
"""
