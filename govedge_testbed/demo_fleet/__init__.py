"""The demo's fleet: outlets, regions and a catalogue as data files, loaded through the
product's own API, a demo upstream, and a clerk filing cases at the outlets.

``outlets.json`` holds the outlet registry in the registry file's shape (one object per
outlet: ``id, name, kind, region, lat, lon, address, opening_hours, service_items``),
``regions.geojson`` the regions of one province as GeoJSON, the shape boundary data
comes in (province → prefecture → county → township; prefectures and counties have
schematic rectangles as outlines for the offline map: real boundaries are the
province's own approved data, docs/fleet-health.md), ``catalogue.csv`` the service
items in the catalogue importer's columns. The codes and places are made up to look
real (Zhejiang's prefectures Hangzhou and Zhoushan); they are not an official list.
"""

from govedge_testbed.demo_fleet.clerk import DemoClerk
from govedge_testbed.demo_fleet.registry import DemoOutlet, demo_outlets, load_fleet
from govedge_testbed.demo_fleet.upstream import DemoUpstream, start_upstream

__all__ = [
    "DemoClerk",
    "DemoOutlet",
    "DemoUpstream",
    "demo_outlets",
    "load_fleet",
    "start_upstream",
]
