"""Routing upstream: targets, the HTTP JSON adapter, breakers, and the delivery worker."""

from fleet_server.routing.targets import TargetConfig, TargetsConfig, TargetsFileError, load_targets
from fleet_server.routing.worker import DeliveryWorker

__all__ = ["DeliveryWorker", "TargetConfig", "TargetsConfig", "TargetsFileError", "load_targets"]
