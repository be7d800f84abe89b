"""``/v1/id-card/read`` and ``/v1/social-security/read``: the full card to the caller.

The card data is personal data: it is returned in this response body and nowhere else.
Nothing here logs it; the drivers' ``card.read`` events carry masked values only.
"""

from __future__ import annotations

import base64
from typing import Annotated, Final

from edge_agent.devices.id_card_reader import IdCardReader
from edge_agent.devices.social_security_card_reader import SocialSecurityReader
from edge_agent.local_api.deps import LocalDep
from edge_agent.local_api.errors import error_responses
from edge_agent.local_api.models import (
    CardReadCreate,
    IdCardPublic,
    SocialSecurityCardPublic,
    SocialSecurityReadCreate,
)
from edge_agent.local_api.routing import APIRouter, Body

router = APIRouter(tags=["cards"])

_ID_HINT: Final = "plug the ID-card reader in (it is ready within seconds) or pick another one"
_SSC_HINT: Final = "plug the social-security card reader in; technicians: check pcscd"


@router.post(
    "/id-card/read",
    response_model=IdCardPublic,
    responses=error_responses(404, 409, 502, 503, 504),
)
async def read_id_card(
    local: LocalDep, body: Annotated[CardReadCreate | None, Body()] = None
) -> IdCardPublic:
    """Read the ID card on the reader (default: the first ready ID-card reader).

    Errors the clerk fixes: 409 ``no_card`` (place the card), ``read_failed`` (keep it
    still); 503 ``no_device`` / ``device_unavailable`` (reader unplugged).
    """
    request = body or CardReadCreate()
    reader = local.find_driver(
        IdCardReader, device_id=request.device_id, what="ID-card reader", hint=_ID_HINT
    )
    card = await reader.read_card(
        fingerprint=request.fingerprint, extra_address=request.extra_address
    )
    return IdCardPublic(
        device_id=reader.device_id,
        card_type=card.card_type.value,
        name=card.name,
        sex=card.sex,
        sex_label=card.sex_label,
        nation=card.nation,
        nation_label=card.nation_label,
        birth_date=card.birth_date.isoformat(),
        address=card.address,
        id_number=card.id_number,
        authority=card.authority,
        valid_from=card.valid_from.isoformat(),
        valid_to=card.valid_to.isoformat() if card.valid_to else None,
        long_term=card.long_term,
        english_name=card.english_name,
        nationality=card.nationality,
        pass_number=card.pass_number,
        issue_count=card.issue_count,
        extra_addresses=list(card.extra_addresses),
        extra_address=card.extra_address,
        photo_wlt_base64=base64.b64encode(card.photo).decode("ascii"),
        fingerprint_base64=base64.b64encode(card.fingerprint).decode("ascii")
        if card.fingerprint
        else None,
    )


@router.post(
    "/social-security/read",
    response_model=SocialSecurityCardPublic,
    responses=error_responses(404, 409, 502, 503, 504),
)
async def read_social_security_card(
    local: LocalDep, body: Annotated[SocialSecurityReadCreate | None, Body()] = None
) -> SocialSecurityCardPublic:
    """Wait up to ``wait_s`` for a social-security card, then read it.

    409 ``no_card`` (insert it, chip first), ``not_social_security_card`` (wrong card).
    """
    request = body or SocialSecurityReadCreate()
    reader = local.find_driver(
        SocialSecurityReader,
        device_id=request.device_id,
        what="social-security card reader",
        hint=_SSC_HINT,
    )
    card = await reader.read_card(wait=request.wait_s or local.options.social_security_wait_s)
    return SocialSecurityCardPublic(
        device_id=reader.device_id,
        card_number=card.card_number,
        region=card.region,
        card_id_code=card.card_id_code,
        name=card.name,
        id_number=card.id_number,
    )
