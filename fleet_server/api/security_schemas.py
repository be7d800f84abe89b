"""Request and response shapes of the security endpoints (enrollment, users, audit)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from fleet_server.security import Role
from govedge_wire import OUTLET_ID_PATTERN

BROKER_RELOAD_STEP = (
    "reload the MQTT broker so it rereads the CRL (systemctl reload mosquitto, or SIGHUP; "
    "Mosquitto 2.0 reloads the CRL on SIGHUP), then end the outlet's open connection "
    "(restart the broker, or configure GOVEDGE_BROKER_PID_FILE / "
    "GOVEDGE_BROKER_RELOAD_COMMAND so the server does both)"
)
BROKER_DONE_STEP = "none: the broker reloaded the CRL and the outlet's session was ended"
SESSION_STEP = (
    "the broker reloaded the CRL, but the outlet's open connection could not be ended; "
    "restart the broker to cut it off"
)


class EnrollmentCreate(BaseModel):
    """Ask for a one-time enrollment token for one outlet."""

    outlet_id: str = Field(pattern=rf"^{OUTLET_ID_PATTERN}$")
    ttl_s: int = Field(default=86_400, ge=60, le=30 * 86_400)


class EnrollmentPublic(BaseModel):
    """The token, shown in this answer only."""

    outlet_id: str
    token: str
    expires_at: datetime


class EnrollRequest(BaseModel):
    """An agent redeeming its token: the token and a PEM CSR for its new key."""

    token: str = Field(max_length=128)
    csr_pem: str = Field(max_length=16_384)


class RenewRequest(BaseModel):
    """An agent renewing: its current certificate, a new CSR, and a base64 signature
    over the CSR's DER made with the current key."""

    certificate_pem: str = Field(max_length=16_384)
    csr_pem: str = Field(max_length=16_384)
    signature_b64: str = Field(max_length=2_048)


class CertificateIssued(BaseModel):
    """A certificate for the agent, with the CA it chains to."""

    outlet_id: str
    certificate_pem: str
    ca_pem: str
    serial: str
    not_after: datetime
    # The config-signing public keys to hold, {key_id: base64 of the raw 32-byte key}
    # (docs/config.md, "Keys and rotation"); empty while the server has none.
    config_keys: dict[str, str] = Field(default_factory=dict)


class CertificatePublic(BaseModel):
    """One certificate issued to an outlet (no key material)."""

    serial: str
    fingerprint_sha256: str
    issued_at: datetime
    not_after: datetime
    revoked_at: datetime | None


class RevocationPublic(BaseModel):
    """What a revocation did, and what is left for the operator to do."""

    outlet_id: str
    revoked: list[str]
    # The server's own step at the broker (docs/security.md, "Revocation"): SIGHUP or the
    # configured command reloads the CRL; a session takeover ends the open connection.
    broker_reloaded: bool = False
    session_ended: bool = False
    broker_detail: str = ""
    next_step: str = BROKER_RELOAD_STEP


class UserCreate(BaseModel):
    """A new operator account."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
    role: Role
    # Region-code prefixes the account is limited to; empty: the whole fleet.
    regions: list[Annotated[str, Field(pattern=r"^[0-9]{2,12}$")]] = Field(
        default_factory=list, max_length=64
    )


class ScopeIn(BaseModel):
    """A user's new scope: region-code prefixes, or ``[]`` for the whole fleet."""

    regions: list[Annotated[str, Field(pattern=r"^[0-9]{2,12}$")]] = Field(max_length=64)


class UserPublic(BaseModel):
    """An operator account (never its tokens)."""

    name: str
    role: Role
    disabled: bool
    created_at: datetime
    regions: list[str]


class TokenPublic(BaseModel):
    """An API token, shown in this answer only."""

    user: str
    role: Role
    token: str
    expires_at: datetime


class WhoAmI(BaseModel):
    """The caller as the server sees it."""

    name: str
    role: Role
    # The region-code prefixes the caller is limited to; empty: the whole fleet.
    regions: list[str] = Field(default_factory=list)


class AuditPublic(BaseModel):
    """One audit entry."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
