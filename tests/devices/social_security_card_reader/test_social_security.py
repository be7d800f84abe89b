"""The PC/SC social-security driver against a REAL PC/SC stack.

pcscd (pcsc-lite) runs with vsmartcard's vpcd reader; the virtual card connects to vpcd
over TCP and answers APDUs. The driver goes through pyscard → libpcsclite → pcscd →
vpcd → the card, the same path as a USB CCID reader. pcsc-lite allows one pcscd per
machine, so the fixture is session-scoped and reuses a running pcscd if there is one.
Outside CI a missing pcscd/vpcd skips with the reason; under ``CI=true`` it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from edge_agent.devices import (
    DeviceEvent,
    DeviceIdentity,
    DeviceRefused,
    DeviceUnavailable,
    driver_class,
)
from edge_agent.devices.social_security_card_reader.apdu import SSSE_AID, select_aid, select_file
from edge_agent.devices.social_security_card_reader.driver import (
    PcscSocialSecurityReader,
    SocialSecurityCard,
)
from edge_agent.devices.social_security_card_reader.simulator import (
    CardLogic,
    SocialSecurityCardData,
    SocialSecurityCardSimulator,
)
from edge_agent.devices.social_security_card_reader.transport import wait_for_card
from edge_agent.devices.social_security_card_reader.vpcd import PcscStack
from govedge_wire.pii import make_id_number, mask_id_number

IN_CI = os.environ.get("CI", "").lower() == "true"
CARD = SocialSecurityCardData(
    card_number="B98765432",
    region="410400",
    ssn=make_id_number("410402", "19851231", 77),
    name="欧阳娜娜",
)


def wait_until_absent(stack: PcscStack, *, within: float = 5.0) -> None:
    """Poll (with a deadline) until pcscd has noticed the previous card left."""
    deadline = time.monotonic() + within
    while wait_for_card(stack.reader_name, within=0.0):
        assert time.monotonic() < deadline, "pcscd still reports a card after removal"
        time.sleep(0.05)


@contextlib.contextmanager
def inserted(
    stack: PcscStack, data: SocialSecurityCardData = CARD
) -> Iterator[SocialSecurityCardSimulator]:
    """The card in the reader, once vpcd talks to it (not merely connected)."""
    with SocialSecurityCardSimulator(data, port=stack.vpcd_port) as card:
        card.wait_attached()
        yield card


@pytest.fixture
def reader(pcsc: PcscStack) -> PcscStack:
    wait_until_absent(pcsc)
    return pcsc


def make_driver(
    stack: PcscStack, *, events: list[DeviceEvent] | None = None, **settings: Any
) -> PcscSocialSecurityReader:
    identity = DeviceIdentity(
        device_id="ssc-1",
        profile="pcsc-generic",
        kind="social_security_card_reader",
        address=stack.reader_name,
    )
    return PcscSocialSecurityReader(
        identity,
        settings={"card_timeout": 5.0, **settings},
        on_event=events.append if events is not None else None,
    )


def read(stack: PcscStack, **settings: Any) -> SocialSecurityCard:
    async def main() -> SocialSecurityCard:
        async with make_driver(stack, **settings) as driver:
            return await driver.read_card()

    return asyncio.run(main())


def test_registered_under_its_profile_name() -> None:
    assert driver_class("pcsc_social_security") is PcscSocialSecurityReader


def test_reads_a_card_through_pcscd(reader: PcscStack) -> None:
    events: list[DeviceEvent] = []
    with inserted(reader) as card_sim:

        async def main() -> tuple[SocialSecurityCard, dict[str, Any]]:
            async with make_driver(reader, events=events) as driver:
                probe = await driver.probe()
                assert probe.model == reader.reader_name
                card = await driver.read_card()
                return card, dict(await driver.health())

        card, health = asyncio.run(main())
    assert card.card_number == "B98765432"
    assert card.region == "410400"
    assert card.name == "欧阳娜娜"
    assert card.id_number == CARD.ssn
    assert health["reads_ok"] == 1
    assert card_sim.apdus[0] == select_aid()
    assert card_sim.apdus[1] == select_file(0x05)
    # auto style: SFI addressing first, e.g. 00 B2 07 2C 00 for the card number.
    assert bytes.fromhex("00B2072C00") in card_sim.apdus
    assert [e.name for e in events] == ["card.read"]
    assert events[0].data["id_number"] == mask_id_number(CARD.ssn)
    text = repr(card) + str(card) + repr(events)
    assert CARD.ssn not in text
    assert "欧阳娜娜" not in text


def test_current_ef_read_style(reader: PcscStack) -> None:
    with inserted(reader) as card_sim:
        card = read(reader, read_style="current")
    assert card.card_number == "B98765432"
    assert bytes.fromhex("00B207040B") in card_sim.apdus  # the documented current-EF form
    assert not any(a[:2] == b"\x00\xb2" and a[3] != 0x04 for a in card_sim.apdus)


def test_sfi_read_style(reader: PcscStack) -> None:
    with inserted(reader) as card_sim:
        card = read(reader, read_style="sfi")
    assert card.id_number == CARD.ssn
    assert bytes.fromhex("00B2093400") in card_sim.apdus  # EF06 record 09 by SFI


def test_card_without_ssse_is_refused_clearly(reader: PcscStack) -> None:
    bank_card = SocialSecurityCardData(has_ssse=False)
    with (
        inserted(reader, bank_card),
        pytest.raises(DeviceRefused, match="6A82") as info,
    ):
        read(reader)
    assert info.value.code == "not_social_security_card"
    assert "social-security" in info.value.hint


def test_no_card_is_refused_after_the_wait(reader: PcscStack) -> None:
    async def main() -> dict[str, Any]:
        async with make_driver(reader) as driver:
            with pytest.raises(DeviceRefused) as info:
                await driver.read_card(wait=0.3)
            assert info.value.code == "no_card"
            return dict(await driver.health())

    health = asyncio.run(main())
    assert health["no_card"] == 1


def test_unknown_reader_is_unavailable(pcsc: PcscStack) -> None:
    identity = DeviceIdentity(
        device_id="ssc-x",
        profile="pcsc-generic",
        kind="social_security_card_reader",
        address="No Such Reader 99",
    )

    async def main() -> None:
        with pytest.raises(DeviceUnavailable, match="not found"):
            await PcscSocialSecurityReader(identity).open()

    asyncio.run(main())


def test_no_pcscd_is_unavailable(tmp_path: Any) -> None:
    """A client pointed at a socket with no pcscd behind it gets a clear error.

    libpcsclite honours PCSCLITE_CSOCK_NAME, so a subprocess sees "no service" while the
    session's pcscd keeps running.
    """
    script = (
        "import asyncio\n"
        "from edge_agent.devices import DeviceIdentity, DeviceUnavailable\n"
        "from edge_agent.devices.social_security_card_reader.driver import (\n"
        "    PcscSocialSecurityReader,\n"
        ")\n"
        "ident = DeviceIdentity(device_id='s', profile='p', kind='k', address='Virtual PCD')\n"
        "try:\n"
        "    asyncio.run(PcscSocialSecurityReader(ident).open())\n"
        "except DeviceUnavailable as exc:\n"
        "    print('UNAVAILABLE', exc)\n"
    )
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=str(tmp_path / "nothing.comm"))
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "UNAVAILABLE pcscd is not running" in result.stdout, result.stderr


# ---------------------------------------------------------------- the card alone


def test_card_logic_answers_per_the_brief() -> None:
    logic = CardLogic(CARD)
    assert logic.answer(select_file(0x05)) == b"\x6a\x82"  # SSSE not selected yet
    assert logic.answer(select_aid()) == b"\x90\x00"
    assert logic.answer(select_aid(b"\xa0\x00\x00\x00\x03")) == b"\x6a\x82"
    assert logic.answer(select_aid(SSSE_AID)) == b"\x90\x00"
    assert logic.answer(select_file(0x09)) == b"\x6a\x82"  # unknown EF
    assert logic.answer(select_file(0x05)) == b"\x90\x00"
    assert logic.answer(bytes.fromhex("00B207040B")) == b"\x07\x09B98765432\x90\x00"
    assert logic.answer(bytes.fromhex("00B2072C00")) == b"\x07\x09B98765432\x90\x00"
    assert logic.answer(bytes.fromhex("00B2070405")) == b"\x6c\x0b"  # Le too short
    assert logic.answer(bytes.fromhex("00B2630400")) == b"\x6a\x83"  # no such record
    assert logic.answer(bytes.fromhex("00B2017C00")) == b"\x6a\x82"  # no EF with SFI 15
    assert logic.answer(bytes.fromhex("0084000008")) == b"\x6d\x00"
    assert logic.answer(bytes.fromhex("80B2072C00")) == b"\x6e\x00"


def test_a_second_card_waits_while_another_holds_the_reader(reader: PcscStack) -> None:
    """vpcd serves one card; a later one is connected but unheard, and says so."""
    with inserted(reader) as first:
        second = SocialSecurityCardSimulator(CARD, port=reader.vpcd_port).start()
        try:
            with pytest.raises(ConnectionError, match="another virtual card holds"):
                second.wait_attached(within=1.5)
        finally:
            second.stop()
        card = read(reader)
    assert card.card_number == CARD.card_number
    assert first.apdus  # the first card answered
    assert not second.apdus
