"""Pure tests of the SAM_A frame codec, the text-block parser and the ID-number rules."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from edge_agent.devices import ProtocolError
from edge_agent.devices.id_card_reader.cards import make_card
from edge_agent.devices.id_card_reader.frame import (
    Command,
    FrameChecksumError,
    FrameDecoder,
    FrameLengthError,
    encode_request,
    encode_response,
    parse_request,
    parse_response,
)
from edge_agent.devices.id_card_reader.text import (
    CardDataError,
    CardType,
    IdCard,
    decode_extra_addresses,
    encode_extra_addresses,
    encode_text_block,
    parse_text_block,
)
from govedge_wire.pii import (
    InvalidIdNumber,
    check_digit,
    is_valid_id_number,
    make_id_number,
    mask_address,
    mask_id_number,
    mask_name,
    validate_id_number,
)

# Complete request frames exactly as the protocol table lists them.
DOC_FRAMES = {
    Command.RESET: "AAAAAA9669 0003 10FF EC",
    Command.STATUS: "AAAAAA9669 0003 11FF ED",
    Command.SAM_ID: "AAAAAA9669 0003 12FF EE",
    Command.FIND: "AAAAAA9669 0003 2001 22",
    Command.SELECT: "AAAAAA9669 0003 2002 21",
    Command.READ_TEXT_PHOTO: "AAAAAA9669 0003 3001 32",
    Command.READ_WITH_FINGERPRINT: "AAAAAA9669 0003 3010 23",
    Command.READ_EXTRA_ADDRESS: "AAAAAA9669 0003 3003 30",
    Command.READ_MANAGEMENT: "AAAAAA9669 0003 3005 36",
}


@pytest.mark.parametrize(("command", "expected"), DOC_FRAMES.items())
def test_request_frames_match_the_documented_bytes(command: Command, expected: str) -> None:
    assert encode_request(command) == bytes.fromhex(expected)


def test_rf_frame_request_with_data() -> None:
    assert encode_request(b"\x61\xff", b"\x50") == bytes.fromhex("AAAAAA9669 0004 61FF50 CA")


def test_status_and_error_responses_match_the_documented_bytes() -> None:
    assert encode_response(0x90) == bytes.fromhex("AAAAAA9669 0004 000090 94")
    assert encode_response(0x80) == bytes.fromhex("AAAAAA9669 0004 000080 84")
    response = parse_response(bytes.fromhex("AAAAAA9669 0004 000060 64"))
    assert (response.sw1, response.sw2, response.sw3, response.data) == (0, 0, 0x60, b"")
    assert response.meaning == "SAM self-test failed"


def test_parse_request_round_trip() -> None:
    request = parse_request(encode_request(b"\x61\xff", b"\x50"))
    assert (request.command, request.data) == (b"\x61\xff", b"\x50")


def test_bad_checksum_is_rejected() -> None:
    frame = bytearray(encode_response(0x90, b"\x01\x02"))
    frame[-1] ^= 0xFF
    with pytest.raises(FrameChecksumError, match="checksum"):
        parse_response(bytes(frame))


def test_truncated_frame_is_rejected() -> None:
    frame = encode_response(0x90, bytes(16))
    with pytest.raises(FrameLengthError, match="truncated"):
        parse_response(frame[:-3])


@pytest.mark.parametrize("length", [b"\x00\x00", b"\xff\xf0"])
def test_impossible_length_is_rejected(length: bytes) -> None:
    frame = bytes.fromhex("AAAAAA9669") + length + b"\x00\x00\x90\x94"
    with pytest.raises(ProtocolError, match="length"):
        parse_response(frame)
    decoder = FrameDecoder()
    decoder.feed(frame)
    with pytest.raises(FrameLengthError):
        decoder.next_frame()


def test_decoder_resynchronises_after_random_noise() -> None:
    rng = random.Random(7)
    noise = bytes(rng.randrange(256) for _ in range(300)).replace(b"\xaa", b"\x55")
    good = encode_response(0x9F, bytes(4))
    decoder = FrameDecoder()
    # Feed byte by byte, as a slow line would, with a preamble split across reads.
    frames = []
    for byte in noise + b"\xaa\xaa" + good:
        decoder.feed(bytes([byte]))
        frame = decoder.next_frame()
        if frame is not None:
            frames.append(frame)
    assert frames == [good]
    assert decoder.skipped == len(noise) + 2


def test_decoder_recovers_after_a_bad_frame() -> None:
    bad = bytearray(encode_response(0x90))
    bad[-1] ^= 1
    good = encode_response(0x90, b"\x42")
    decoder = FrameDecoder()
    decoder.feed(bytes(bad) + good)
    with pytest.raises(FrameChecksumError):
        decoder.next_frame()
    assert decoder.next_frame() == good


def test_decoder_waits_for_a_partial_frame() -> None:
    good = encode_response(0x90, bytes(100))
    decoder = FrameDecoder()
    decoder.feed(good[:50])
    assert decoder.next_frame() is None
    assert decoder.partial
    decoder.feed(good[50:])
    assert decoder.next_frame() == good


# ---------------------------------------------------------------- ID numbers


def test_check_digit_of_known_numbers() -> None:
    # The GB 11643 textbook example and its X check character.
    assert check_digit("11010519491231002") == "X"
    assert validate_id_number("11010519491231002x") == "11010519491231002X"
    assert is_valid_id_number(make_id_number("330106", "19900101", 123))


def test_wrong_check_digit_has_a_clear_message_without_the_number() -> None:
    with pytest.raises(InvalidIdNumber, match="check digit") as info:
        validate_id_number("110105194912310021")
    assert "110105" not in str(info.value)
    with pytest.raises(InvalidIdNumber, match="17 digits"):
        validate_id_number("1101051949")


def test_masking() -> None:
    assert mask_id_number("330106199001011234") == "3301**********1234"
    assert mask_name("张三丰") == "张**"
    assert mask_name("李") == "*"
    assert mask_address("浙江省杭州市西湖区") == "浙江省***"
    assert mask_id_number("") == ""


# ---------------------------------------------------------------- text blocks


@pytest.mark.parametrize("card_type", list(CardType))
@pytest.mark.parametrize("long_term", [False, True])
def test_text_block_round_trip_for_every_card_type(card_type: CardType, long_term: bool) -> None:
    card = make_card(card_type, seed=3, long_term=long_term)
    block = encode_text_block(card)
    assert len(block) == 256
    parsed = parse_text_block(block, photo=card.photo)
    assert parsed == card
    assert parsed.long_term is long_term
    if card_type is not CardType.FOREIGNER_2017:
        assert is_valid_id_number(parsed.id_number)


def test_discriminators_sit_at_offset_248() -> None:
    marks = {CardType.GAT_RESIDENCE: b"J\x00", CardType.FOREIGNER_2017: b"I\x00"}
    marks[CardType.FOREIGNER_2023] = b"Y\x00"
    marks[CardType.RESIDENT] = b" \x00"
    for card_type, mark in marks.items():
        assert encode_text_block(make_card(card_type))[248:250] == mark


def test_resident_block_at_documented_offsets() -> None:
    card = make_card(CardType.RESIDENT, long_term=True)
    block = encode_text_block(card)
    assert block[0:6].decode("utf-16-le") == card.name
    assert block[6:30] == b" \x00" * 12  # space padding, UCS-2LE
    assert block[122:158].decode("utf-16-le") == card.id_number
    assert block[204:208].decode("utf-16-le") == "长期"
    parsed = parse_text_block(block)
    assert parsed.valid_to is None
    assert parsed.nation_label is not None
    assert parsed.sex_label in {"男", "女"}


def test_bad_check_digit_in_a_card_is_a_data_error() -> None:
    card = make_card(CardType.RESIDENT)
    wrong = card.id_number[:17] + ("0" if card.id_number[17] != "0" else "1")
    block = bytearray(encode_text_block(card))
    block[122:158] = wrong.encode("utf-16-le")
    with pytest.raises(CardDataError, match="check digit") as info:
        parse_text_block(bytes(block))
    assert isinstance(info.value, ProtocolError)
    assert wrong not in str(info.value)


def test_bad_date_is_a_data_error() -> None:
    block = bytearray(encode_text_block(make_card(CardType.RESIDENT)))
    block[36:52] = "19901340".encode("utf-16-le")
    with pytest.raises(CardDataError, match="birth date"):
        parse_text_block(bytes(block))


def test_wrong_block_size_is_a_data_error() -> None:
    with pytest.raises(CardDataError, match="256"):
        parse_text_block(bytes(200))


def test_repr_and_str_mask_personal_data() -> None:
    card = make_card(CardType.GAT_RESIDENCE, fingerprint=True)
    for text in (repr(card), str(card), str([card])):
        assert card.id_number not in text
        assert card.name not in text
        assert card.address is not None
        assert card.address not in text
        assert card.photo.hex()[:16] not in text
        assert card.id_number[:4] in text
        assert card.id_number[-4:] in text


def test_extra_addresses_round_trip() -> None:
    extra = ("浙江省杭州市西湖区文三路90号", "浙江省杭州市滨江区江南大道1号", "上城区" * 11)
    data = encode_extra_addresses(extra)
    assert len(data) == 3 * 70
    assert decode_extra_addresses(data) == extra
    assert decode_extra_addresses(b"") == ()
    with pytest.raises(CardDataError):
        decode_extra_addresses(bytes(69))
    with pytest.raises(CardDataError, match="0-4 slots"):
        decode_extra_addresses(bytes(5 * 70))
    with pytest.raises(ValueError, match="at most 4"):
        encode_extra_addresses(extra + extra)


def test_card_value_object_is_frozen() -> None:
    card: IdCard = make_card()
    with pytest.raises(AttributeError):
        card.name = "x"  # type: ignore[misc]
    assert card.birth_date > dt.date(1900, 1, 1)
