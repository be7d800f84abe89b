"""A USB CCID reader from udev (``/dev/bus/usb/…``) is found under its PC/SC name.

The naming rules come from pcsc-lite's ``hotplug_libudev.c`` (Info.plist friendly name,
`` [interface]``, `` (serial)``, reader number, slot). The Info.plist lookups read the
real libccid bundle installed here. This machine has no USB bus, so no real CCID reader
appears in pcscd; the end-to-end tests instead use the real pcscd with vsmartcard's
vpcd reader ("Virtual PCD", two slots): the driver is given what udev would report for
a USB reader whose strings are "Virtual" / "PCD" and an address ``/dev/bus/usb/…``, and
must find "Virtual PCD 00 00" in pcscd's real reader list and read the card through it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from edge_agent.devices import DeviceIdentity, DeviceUnavailable, UsbFacts
from edge_agent.devices.social_security_card_reader.driver import PcscSocialSecurityReader
from edge_agent.devices.social_security_card_reader.names import (
    PCSC_DRIVERS_DIR,
    expected_bases,
    friendly_names,
    match_reader,
    parse_reader_name,
)
from edge_agent.devices.social_security_card_reader.simulator import SocialSecurityCardSimulator
from edge_agent.devices.social_security_card_reader.transport import list_readers
from edge_agent.devices.social_security_card_reader.vpcd import PcscStack
from tests.devices.social_security_card_reader.test_social_security import CARD, wait_until_absent

IN_CI = os.environ.get("CI", "").lower() == "true"
CCID_PLIST = PCSC_DRIVERS_DIR / "ifd-ccid.bundle" / "Contents" / "Info.plist"
needs_libccid = pytest.mark.skipif(
    not CCID_PLIST.exists() and not IN_CI, reason="libccid not installed (outside CI)"
)
ACR38 = UsbFacts(vendor_id="072f", product_id="90cc", manufacturer="ACS", product="ACR38U-CCID")


def test_names_are_split_as_pcscd_builds_them() -> None:
    full = parse_reader_name("ACS ACR 38U-CCID [CCID Interface] (0123ABCD) 01 00")
    assert full is not None
    assert (full.base, full.interface, full.serial) == (
        "ACS ACR 38U-CCID",
        "CCID Interface",
        "0123ABCD",
    )
    assert (full.reader, full.slot) == (1, 0)
    assert full.reader_key == "ACS ACR 38U-CCID [CCID Interface] (0123ABCD) 01"
    plain = parse_reader_name("Virtual PCD 00 01")
    assert plain is not None
    assert (plain.base, plain.interface, plain.serial, plain.slot) == ("Virtual PCD", None, None, 1)
    assert parse_reader_name("not a pcscd name") is None


@needs_libccid
def test_friendly_names_come_from_the_installed_libccid_bundle() -> None:
    assert friendly_names("072f", "90cc") == ["ACS ACR 38U-CCID"]
    assert friendly_names("072F", "90CC") == ["ACS ACR 38U-CCID"]
    assert friendly_names("ffff", "ffff") == []
    # the Info.plist name first, then the USB strings as fallbacks
    assert expected_bases(ACR38) == ["ACS ACR 38U-CCID", "ACS ACR38U-CCID", "ACR38U-CCID"]


@needs_libccid
def test_two_identical_readers_are_told_apart_by_serial() -> None:
    names = [
        "ACS ACR 38U-CCID (11111111) 00 00",
        "ACS ACR 38U-CCID (22222222) 01 00",
        "Alcor Micro AU9540 00 00",
    ]
    mine = UsbFacts(vendor_id="072f", product_id="90cc", serial="22222222")
    assert match_reader(names, mine) == "ACS ACR 38U-CCID (22222222) 01 00"
    without_serial = UsbFacts(vendor_id="072f", product_id="90cc")
    with pytest.raises(LookupError, match="2 PC/SC readers fit"):
        match_reader(names, without_serial)
    stranger = UsbFacts(vendor_id="072f", product_id="90cc", serial="33333333")
    with pytest.raises(LookupError, match="no PC/SC reader"):
        match_reader(names, stranger)


def test_first_slot_and_usb_strings_when_no_bundle_knows_the_reader(tmp_path: Path) -> None:
    names = ["Acme Card Box [SAM] (S1) 00 01", "Acme Card Box [SAM] (S1) 00 00", "Other 01 00"]
    usb = UsbFacts(vendor_id="1234", product_id="5678", manufacturer="Acme", product="Card Box")
    assert match_reader(names, usb, drivers_dir=tmp_path) == "Acme Card Box [SAM] (S1) 00 00"
    wrong_interface = UsbFacts(
        vendor_id="1234", product_id="5678", product="Acme Card Box", interface="Contactless"
    )
    with pytest.raises(LookupError):
        match_reader(names, wrong_interface, drivers_dir=tmp_path)


# ---- against the real pcscd + vpcd


def vpcd_as_usb(stack: PcscStack) -> DeviceIdentity:
    """What the device manager builds for a USB reader named like the vpcd reader."""
    manufacturer, _, product = stack.reader_name.removesuffix(" 00 00").partition(" ")
    return DeviceIdentity(
        device_id="ssc-usb",
        profile="ssc-pcsc-reader",
        kind="social_security_card_reader",
        address="/dev/bus/usb/001/007",
        usb=UsbFacts(
            vendor_id="1d6b", product_id="0104", manufacturer=manufacturer, product=product
        ),
    )


def test_real_pcscd_list_maps_to_the_first_slot(pcsc: PcscStack) -> None:
    names = list_readers()
    assert pcsc.reader_name in names
    usb = vpcd_as_usb(pcsc).usb
    assert usb is not None
    assert match_reader(names, usb) == pcsc.reader_name


def test_driver_finds_its_usb_reader_in_pcscd_and_reads_the_card(pcsc: PcscStack) -> None:
    wait_until_absent(pcsc)
    with SocialSecurityCardSimulator(CARD, port=pcsc.vpcd_port):

        async def main() -> tuple[str, str]:
            driver = PcscSocialSecurityReader(vpcd_as_usb(pcsc), settings={"card_timeout": 5.0})
            async with driver:
                probe = await driver.probe()
                card = await driver.read_card()
                return str(probe.model), card.id_number

        model, id_number = asyncio.run(main())
    assert model == pcsc.reader_name
    assert id_number == CARD.ssn


def test_unmatched_usb_reader_is_unavailable_with_the_list(pcsc: PcscStack) -> None:
    identity = DeviceIdentity(
        device_id="ssc-usb-2",
        profile="ssc-pcsc-reader",
        kind="social_security_card_reader",
        address="/dev/bus/usb/001/008",
        usb=UsbFacts(vendor_id="abcd", product_id="0001", product="Nowhere Reader"),
    )

    async def main() -> None:
        with pytest.raises(DeviceUnavailable, match="no PC/SC reader is the USB reader"):
            await PcscSocialSecurityReader(identity).open()

    asyncio.run(main())


def test_reader_setting_still_pins_the_name(pcsc: PcscStack) -> None:
    async def main() -> str:
        driver = PcscSocialSecurityReader(vpcd_as_usb(pcsc), settings={"reader": "No Such"})
        with pytest.raises(DeviceUnavailable, match="not found"):
            await driver.open()
        pinned = PcscSocialSecurityReader(vpcd_as_usb(pcsc), settings={"reader": pcsc.reader_name})
        await pinned.open()
        return str((await pinned.health())["reader"])

    assert asyncio.run(main()) == pcsc.reader_name
