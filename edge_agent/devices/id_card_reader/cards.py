"""Fictitious ID cards for the simulators and tests, deterministic in a seed."""

from __future__ import annotations

import datetime as dt
import hashlib

from edge_agent.devices.id_card_reader.text import (
    CardType,
    IdCard,
)
from govedge_wire.pii import make_id_number

__all__ = ["make_card"]


def make_card(
    card_type: CardType = CardType.RESIDENT,
    *,
    seed: int = 0,
    long_term: bool = False,
    fingerprint: bool = False,
    extra_addresses: tuple[str, ...] = (),
) -> IdCard:
    """A fictitious card of ``card_type`` with a valid ID number (deterministic in ``seed``)."""
    digest = hashlib.sha256(f"{card_type}-{seed}".encode()).digest()
    birth = dt.date(1950, 1, 1) + dt.timedelta(days=digest[0] * 97 + digest[1] * 13)
    ymd = birth.strftime("%Y%m%d")
    valid_from = dt.date(2015, 1, 1) + dt.timedelta(days=digest[2] * 11)
    valid_to = None if long_term else valid_from.replace(year=valid_from.year + 20)
    photo = (digest * 32)[:1024]
    prints = (bytes(reversed(digest)) * 32)[:1024] if fingerprint else None
    sex = "1" if digest[3] % 2 else "2"
    seq = digest[4] * 3
    if card_type is CardType.FOREIGNER_2017:
        return IdCard(
            card_type=card_type,
            name="安娜",
            english_name=f"SMITH, ANNA TEST{seed}",
            sex=sex,
            id_number=f"USA{310000 + seq:06d}{ymd[2:8]}",
            nationality="USA",
            birth_date=birth,
            valid_from=valid_from,
            valid_to=valid_to,
            card_version="01",
            authority_code="1500",
            photo=photo,
            fingerprint=prints,
        )
    if card_type is CardType.FOREIGNER_2023:
        return IdCard(
            card_type=card_type,
            name="马克",
            english_name=f"MUELLER, MARK ALEXANDER TEST{seed}",
            sex=sex,
            id_number=make_id_number("933100", ymd, seq),
            nationality="DEU",
            issue_count="00",
            birth_date=birth,
            valid_from=valid_from,
            valid_to=valid_to,
            photo=photo,
            fingerprint=prints,
        )
    if card_type is CardType.GAT_RESIDENCE:
        return IdCard(
            card_type=card_type,
            name="陈大文",
            sex=sex,
            id_number=make_id_number("810000", ymd, seq),
            address="浙江省杭州市西湖区文三路100号",
            authority="杭州市公安局西湖分局",
            pass_number=f"H{60000000 + seq:08d}",
            issue_count="01",
            birth_date=birth,
            valid_from=valid_from,
            valid_to=valid_to,
            photo=photo,
            fingerprint=prints,
        )
    return IdCard(
        card_type=CardType.RESIDENT,
        name="张三丰",
        sex=sex,
        nation=f"{digest[5] % 56 + 1:02d}",
        id_number=make_id_number("330106", ymd, seq),
        address="浙江省杭州市西湖区文三路90号1幢101室",
        authority="杭州市公安局西湖分局",
        birth_date=birth,
        valid_from=valid_from,
        valid_to=valid_to,
        extra_addresses=extra_addresses,
        photo=photo,
        fingerprint=prints,
    )
