"""Wire shapes of reading a card: ``/v1/id-card/read`` and ``/v1/social-security/read``.

The card data lives only in these response bodies, never in a log line or an event.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from edge_agent.local_api.models.common import DeviceId, StrictIn, examples

__all__ = [
    "CardReadCreate",
    "IdCardPublic",
    "SocialSecurityCardPublic",
    "SocialSecurityReadCreate",
]


class CardReadCreate(StrictIn):
    """Which reader (default: the first ready one) and what to read."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [{}, {"fingerprint": True}]}
    )

    device_id: DeviceId | None = None
    fingerprint: bool | None = None
    extra_address: bool | None = None


class IdCardPublic(BaseModel):
    """The full card: only ever in this response body, never logged or in an event."""

    model_config = examples(
        {
            "device_id": "sam-serial-bridge.sn-10c4ea60-0001",
            "card_type": "resident",
            "name": "张三",
            "sex": "1",
            "sex_label": "男",
            "nation": "01",
            "nation_label": "汉",
            "birth_date": "1990-01-01",
            "address": "浙江省杭州市西湖区某某路1号",
            "id_number": "33010619900101123X",
            "authority": "杭州市公安局西湖分局",
            "valid_from": "2015-01-01",
            "valid_to": None,
            "long_term": True,
            "extra_addresses": ["浙江省杭州市滨江区某某路2号", "浙江省杭州市上城区某某街3号"],
            "extra_address": "浙江省杭州市滨江区某某路2号\uff1b浙江省杭州市上城区某某街3号",
            "photo_wlt_base64": "V0xUAAAA…",
            "fingerprint_base64": None,
        }
    )

    device_id: str
    card_type: str
    name: str
    sex: str
    sex_label: str
    nation: str | None
    nation_label: str | None
    birth_date: str
    address: str | None
    id_number: str
    authority: str | None
    valid_from: str
    valid_to: str | None = Field(description="null = 长期 (long-term)")
    long_term: bool
    english_name: str | None
    nationality: str | None
    pass_number: str | None
    issue_count: str | None
    extra_addresses: list[str] = Field(
        description="追加住址 (command 30 03), one entry per address the card holds, in the "
        "card's slot order; empty when not read or the card has none"
    )
    extra_address: str | None = Field(
        description="the same addresses joined with U+FF1B (full-width semicolon), for "
        "older clients; null when there are none. Use extra_addresses"
    )
    photo_wlt_base64: str = Field(
        description="the card's 1024-byte WLT photo; decode it with the licensed vendor library"
    )
    fingerprint_base64: str | None


class SocialSecurityReadCreate(StrictIn):
    """Which reader (default: the first ready one) and how long to wait for a card."""

    device_id: DeviceId | None = None
    wait_s: Annotated[float, Field(gt=0, le=60)] | None = None


class SocialSecurityCardPublic(BaseModel):
    """The social-security card's holder data; only in this response body."""

    model_config = examples(
        {
            "device_id": "ssc-pcsc-reader.byid-virtual",
            "card_number": "A12345678",
            "region": "330100",
            "card_id_code": "330100D15600000500A1B2C3D4E5F6",
            "name": "张三",
            "id_number": "33010619900101123X",
        }
    )

    device_id: str
    card_number: str
    region: str
    card_id_code: str
    name: str
    id_number: str
