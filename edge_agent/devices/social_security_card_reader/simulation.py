"""The simulated social-security reader: a card in pcscd's vpcd reader (when installed)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Final

from edge_agent.devices.description import DeviceDescription
from edge_agent.devices.simulation import SIM_MANUFACTURER, SimulatedDevice, SimulationOptions
from edge_agent.devices.social_security_card_reader.simulator import SocialSecurityCardSimulator
from edge_agent.devices.social_security_card_reader.vpcd import (
    PcscStack,
    PcscUnavailable,
    environment_ok,
)

log = logging.getLogger(__name__)

PCSC_START_TIMEOUT_S: Final = 10.0
CARD_CONNECT_TIMEOUT_S: Final = 3.0


def udev_description(reader_name: str) -> DeviceDescription:
    """A CCID smart-card reader; its PC/SC reader name is where the driver finds it."""
    return DeviceDescription(
        subsystem="usb",
        sys_path="/sys/devices/simulated/usb1/1-4",
        vendor_id="072f",
        product_id="90cc",
        serial="SIMSSC0001",
        product="SIM CCID Reader",
        manufacturer=SIM_MANUFACTURER,
        port_path="simulated-usb-0:4",
        interface_classes=("0b",),
        address=reader_name,
    )


async def simulate(stack: AsyncExitStack, options: SimulationOptions) -> SimulatedDevice | None:
    """pcscd with vpcd and a card in it; None (and a log line) when that cannot run here."""
    why_not = environment_ok() if options.pcsc is None else None
    if options.pcsc is False or why_not is not None:
        log.info("no simulated social-security card: %s", why_not or "turned off")
        return None
    pcsc = PcscStack(start_timeout=PCSC_START_TIMEOUT_S)
    try:
        async with asyncio.timeout(PCSC_START_TIMEOUT_S + 2):
            await asyncio.to_thread(pcsc.start)
    except (PcscUnavailable, OSError, TimeoutError) as exc:
        log.warning("no simulated social-security card: pcscd/vpcd did not start: %s", exc)
        await asyncio.to_thread(pcsc.stop)
        return None
    stack.callback(pcsc.stop)
    card: SocialSecurityCardSimulator | None = SocialSecurityCardSimulator(
        port=pcsc.vpcd_port, connect_timeout=CARD_CONNECT_TIMEOUT_S
    )
    assert card is not None
    try:
        async with asyncio.timeout(CARD_CONNECT_TIMEOUT_S + 2):
            await asyncio.to_thread(card.start)
    except (ConnectionError, OSError, TimeoutError) as exc:
        log.warning("simulated social-security reader without a card: %s", exc)
        card = None
    else:
        stack.callback(card.stop)
    return SimulatedDevice(simulator=card, usb=udev_description(pcsc.reader_name))
