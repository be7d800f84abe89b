"""Enrollment, renewal, revocation, users and audit through the API (in process)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import text

from fleet_server.cli import main as fleet_server_cli
from fleet_server.security import Role
from fleet_server.security.enrollment import create_enrollment
from fleet_server.security.users import create_user
from govedge_testbed import Mosquitto
from tests.security.api_harness import Api, running_api


@pytest.fixture
def api(tmp_path: Path, broker: Mosquitto) -> Iterator[Api]:
    with running_api(tmp_path, mqtt_url=broker.url) as running:
        yield running


def _csr(cn: str = "whatever") -> tuple[ec.EllipticCurvePrivateKey, x509.CertificateSigningRequest]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    return key, csr


def _pem(csr: x509.CertificateSigningRequest) -> str:
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _token(api: Api, outlet_id: str, *, role: Role = Role.TECHNICIAN) -> str:
    response = api.client.post(
        "/api/v1/enrollments",
        json={"outlet_id": outlet_id, "ttl_s": 600},
        headers=api.as_role(role),
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def test_enroll_once_with_cn_from_the_token(api: Api) -> None:
    token = _token(api, "outlet-e1")
    _, csr = _csr(cn="someone-else")
    first = api.client.post("/api/v1/enroll", json={"token": token, "csr_pem": _pem(csr)})
    assert first.status_code == 200, first.text
    cert = x509.load_pem_x509_certificate(first.json()["certificate_pem"].encode())
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "outlet-e1"
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc) <= timedelta(days=91)
    again = api.client.post("/api/v1/enroll", json={"token": token, "csr_pem": _pem(csr)})
    assert again.status_code == 403
    # The outlet is registered and its certificate listed.
    certs = api.client.get(
        "/api/v1/outlets/outlet-e1/certificates", headers=api.as_role(Role.VIEWER)
    )
    assert [c["serial"] for c in certs.json()] == [first.json()["serial"]]


def test_expired_and_unknown_tokens_are_refused(api: Api) -> None:
    with api.session() as session:
        expired = create_enrollment(
            session, outlet_id="outlet-x", ttl=timedelta(seconds=-1), actor="test"
        )
    _, csr = _csr()
    for token in (expired.token, "gve_unknown", "not-even-a-token"):
        response = api.client.post("/api/v1/enroll", json={"token": token, "csr_pem": _pem(csr)})
        assert response.status_code == 403, token


def test_operator_cannot_create_enrollment_tokens(api: Api) -> None:
    response = api.client.post(
        "/api/v1/enrollments", json={"outlet_id": "o"}, headers=api.as_role(Role.OPERATOR)
    )
    assert response.status_code == 403


def test_renew_with_proof_then_revoke(api: Api) -> None:
    key, csr = _csr()
    enrolled = api.client.post(
        "/api/v1/enroll", json={"token": _token(api, "outlet-r1"), "csr_pem": _pem(csr)}
    ).json()
    new_key, new_csr = _csr("outlet-r1")
    der = new_csr.public_bytes(serialization.Encoding.DER)
    proof = base64.b64encode(key.sign(der, ec.ECDSA(hashes.SHA256()))).decode()
    body = {"certificate_pem": enrolled["certificate_pem"], "csr_pem": _pem(new_csr)}
    wrong = base64.b64encode(new_key.sign(der, ec.ECDSA(hashes.SHA256()))).decode()
    assert (
        api.client.post("/api/v1/enroll/renew", json={**body, "signature_b64": wrong}).status_code
        == 403
    )
    renewed = api.client.post("/api/v1/enroll/renew", json={**body, "signature_b64": proof})
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["serial"] != enrolled["serial"]

    revoked = api.client.post(
        "/api/v1/outlets/outlet-r1/revoke", headers=api.as_role(Role.TECHNICIAN)
    )
    assert sorted(revoked.json()["revoked"]) == sorted(
        [enrolled["serial"], renewed.json()["serial"]]
    )
    crl_path = Path(api.client.app.state.security.settings.pki_dir) / "crl.pem"  # type: ignore[attr-defined]
    crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    assert {f"{r.serial_number:x}" for r in crl} == set(revoked.json()["revoked"])
    # A revoked certificate cannot renew itself.
    assert (
        api.client.post("/api/v1/enroll/renew", json={**body, "signature_b64": proof}).status_code
        == 403
    )


def test_audit_records_changes_and_cannot_be_edited(api: Api) -> None:
    admin = api.as_role(Role.ADMIN)
    _token(api, "outlet-a1")
    created = api.client.post(
        "/api/v1/users", json={"name": "carol", "role": "viewer"}, headers=admin
    )
    assert created.status_code == 201
    api.client.post("/api/v1/users/carol/disable", headers=admin)
    entries = api.client.get("/api/v1/audit", headers=admin).json()
    actions = [(e["actor"], e["action"], e["target"]) for e in entries]
    assert ("u-admin", "user.disable", "user:carol") in actions
    assert ("u-admin", "user.create", "user:carol") in actions
    assert ("u-technician", "enrollment.token_create", "outlet:outlet-a1") in actions
    assert all("token" not in str(e["after"]).replace("token_expires_at", "") for e in entries)
    only_users = api.client.get("/api/v1/audit?action=user.*", headers=admin).json()
    assert {e["action"] for e in only_users} == {"user.create", "user.disable"}
    for method in ("PUT", "PATCH", "DELETE"):
        assert api.client.request(method, "/api/v1/audit", headers=admin).status_code == 405
    first = entries[-1]["id"]
    assert api.client.delete(f"/api/v1/audit/{first}", headers=admin).status_code in (404, 405)
    # The disabled user's token no longer works.
    assert (
        api.client.get(
            "/api/v1/me", headers={"Authorization": f"Bearer {created.json()['token']}"}
        ).status_code
        == 401
    )


def test_expired_api_token_is_refused(api: Api) -> None:
    with api.session() as session:
        old = create_user(
            session, name="dave", role=Role.ADMIN, ttl=timedelta(seconds=-1), actor="test"
        )
    response = api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {old.token}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_users_cli_add_list_disable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    added = runner.invoke(
        fleet_server_cli, ["users", "add", "erin", "--role", "operator", "--database-url", url]
    )
    assert added.exit_code == 0, added.output
    token = next(line for line in added.output.splitlines() if line.startswith("gvt_"))
    assert len(token) > 40
    dup = runner.invoke(
        fleet_server_cli, ["users", "add", "erin", "--role", "viewer", "--database-url", url]
    )
    assert dup.exit_code == 1
    listed = runner.invoke(fleet_server_cli, ["users", "list", "--database-url", url])
    assert "erin" in listed.output
    assert "operator" in listed.output
    assert token not in listed.output
    disabled = runner.invoke(fleet_server_cli, ["users", "disable", "erin", "--database-url", url])
    assert disabled.exit_code == 0
    assert (
        "DISABLED"
        in runner.invoke(fleet_server_cli, ["users", "list", "--database-url", url]).output
    )


@pytest.mark.postgres
def test_audit_is_append_only_on_postgres(postgres_url: str) -> None:
    from fleet_server.db import make_engine, make_sessionmaker
    from fleet_server.migrate import upgrade

    engine = make_engine(postgres_url)
    try:
        upgrade(engine)
        with make_sessionmaker(engine)() as session:
            create_user(session, name="frank", role=Role.VIEWER, ttl=timedelta(hours=1), actor="t")
        for statement in (
            "UPDATE audit_log SET actor = 'x'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ):
            with engine.connect() as connection, pytest.raises(Exception, match="append-only"):
                connection.execute(text(statement))
    finally:
        engine.dispose()
