"""Matching device descriptions against profiles: specificity, bridges, stable identity."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge_agent.discovery import DeviceDescription, Matcher, stable_identity
from edge_agent.profiles import ProfileSet, load_profiles
from tests.profiles.test_profiles import EXPECTED_DRIVERS


@pytest.fixture(scope="module")
def shipped() -> ProfileSet:
    profiles = load_profiles(driver_names=EXPECTED_DRIVERS)
    assert profiles.ok
    return profiles


def _tty(**kwargs: object) -> DeviceDescription:
    base: dict[str, object] = {
        "subsystem": "tty",
        "device_node": "/dev/ttyUSB0",
        "sys_path": "/sys/devices/pci0000:00/usb1/1-2/1-2:1.0/ttyUSB0/tty/ttyUSB0",
        "port_path": "pci-0000:00:14.0-usb-0:2:1.0",
    }
    base.update(kwargs)
    return DeviceDescription(**base)  # type: ignore[arg-type]


def test_sam_usb_module_matches_on_its_ids(shipped: ProfileSet) -> None:
    device = DeviceDescription(
        subsystem="usb",
        device_node="/dev/bus/usb/001/004",
        vendor_id="0400",
        product_id="C35A",
        serial="0123456789",
    )
    found = Matcher(shipped).match(device)
    assert found is not None
    assert found.profile.id == "sam-usb-c35a"
    assert found.device_id == "sam-usb-c35a.sn-0400c35a-0123456789"


def test_bridge_ids_alone_never_match(
    shipped: ProfileSet, caplog: pytest.LogCaptureFixture
) -> None:
    matcher = Matcher(shipped)
    for vid, pid in [("1a86", "7523"), ("10c4", "ea60"), ("0403", "6001"), ("067b", "2303")]:
        assert matcher.match(_tty(vendor_id=vid, product_id=pid, product="USB Serial")) is None


def test_bridge_with_a_product_string_matches(shipped: ProfileSet) -> None:
    device = _tty(vendor_id="10c4", product_id="ea60", product="CVR-100 IDCard Reader")
    found = Matcher(shipped).match(device)
    assert found is not None
    assert found.profile.id == "sam-serial-bridge"


def test_most_specific_rule_wins(tmp_path: Path) -> None:
    common = "kind: id_card_reader\ndriver: sam_id_reader\nmatch:\n  - usb:\n      subsystem: tty\n"
    (tmp_path / "vendor.yaml").write_text(
        f'id: by-vendor\nname: v\n{common}      vendor_id: "2015"\n', encoding="utf-8"
    )
    (tmp_path / "exact.yaml").write_text(
        f'id: by-model\nname: m\n{common}      vendor_id: "2015"\n      product_id: "0008"\n'
        '      product: "SR-ID100"\n',
        encoding="utf-8",
    )
    (tmp_path / "glob.yaml").write_text(
        f'id: by-glob\nname: g\n{common}      vendor_id: "2015"\n      product_id: "0008"\n'
        '      product: "SR-*"\n',
        encoding="utf-8",
    )
    matcher = Matcher(load_profiles(tmp_path, driver_names=EXPECTED_DRIVERS))
    exact = matcher.match(_tty(vendor_id="2015", product_id="0008", product="sr-id100"))
    glob = matcher.match(_tty(vendor_id="2015", product_id="0008", product="SR-ID200"))
    vendor = matcher.match(_tty(vendor_id="2015", product_id="0009", product="other"))
    assert exact is not None
    assert glob is not None
    assert vendor is not None
    assert (exact.profile.id, glob.profile.id, vendor.profile.id) == (
        "by-model",
        "by-glob",
        "by-vendor",
    )
    assert exact.score > glob.score > vendor.score


def test_identity_from_serial_then_by_id_never_the_tty_name() -> None:
    with_serial = _tty(vendor_id="0403", product_id="6001", serial="A50285BI", interface_num="00")
    assert stable_identity(with_serial) == "sn-04036001-A50285BI-if00"
    link = "/dev/serial/by-id/usb-1a86_USB2.0-Serial-if00-port0"
    first = _tty(vendor_id="1a86", product_id="7523", by_id_links=(link,))
    replugged = _tty(
        vendor_id="1a86", product_id="7523", by_id_links=(link,), device_node="/dev/ttyUSB3"
    )
    assert stable_identity(first) == stable_identity(replugged)
    assert stable_identity(first) == "byid-usb-1a86_USB2.0-Serial-if00-port0"
    port_only = _tty(vendor_id="1a86", product_id="7523")
    assert stable_identity(port_only) == "port-pci-0000:00:14.0-usb-0:2:1.0"
    for identity in (stable_identity(with_serial), stable_identity(first)):
        assert identity is not None
        assert "ttyUSB" not in identity


def test_unknown_device_is_ignored_and_logged_once(
    shipped: ProfileSet, caplog: pytest.LogCaptureFixture
) -> None:
    matcher = Matcher(shipped)
    mouse = DeviceDescription(
        subsystem="hidraw", device_node="/dev/hidraw0", vendor_id="046d", product_id="c077"
    )
    with caplog.at_level(logging.INFO, logger="edge_agent.discovery.matching"):
        for _ in range(3):
            assert matcher.match(mouse) is None
        assert matcher.match(_tty(vendor_id="1a86", product_id="7523")) is None
    messages = [r.getMessage() for r in caplog.records]
    assert sum("046d:c077" in m for m in messages) == 1
    assert sum("1a86:7523" in m for m in messages) == 1
