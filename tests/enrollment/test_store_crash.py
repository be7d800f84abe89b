"""A crash while the outlet's key and certificate are replaced never leaves a mismatched pair.

The writer runs in a child process that dies (``os._exit``, no cleanup) at each file
operation of ``TlsStore.save`` in turn; the next read must give a key that matches its
certificate, old or new, and the TLS context must load.
"""

from __future__ import annotations

import multiprocessing
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_agent.enrollment.store import TlsStore, new_key

pytestmark = pytest.mark.timeout(120)


def _certificate(key: ec.EllipticCurvePrivateKey, serial: int) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "outlet-crash")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _public(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _save_and_die_at(data_dir: str, key_pem: bytes, cert_pem: str, die_at: int) -> None:
    """Child: save the new pair, dying at the ``die_at``-th rename/replace."""
    calls = 0
    real_replace = os.replace

    def replace(src: object, dst: object) -> None:
        nonlocal calls
        calls += 1
        if calls == die_at:
            os._exit(17)
        real_replace(src, dst)  # type: ignore[arg-type]

    os.replace = replace  # type: ignore[assignment]
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    TlsStore(Path(data_dir) / "tls").save(
        key=key, certificate_pem=cert_pem, ca_pem=None, server_url="https://x", outlet_id="o"
    )
    os._exit(0)


@pytest.mark.parametrize("die_at", range(1, 8))
def test_crash_at_any_step_of_a_renewal_leaves_a_matching_pair(tmp_path: Path, die_at: int) -> None:
    store = TlsStore(tmp_path / "tls")
    old_key = new_key()
    old_cert = _certificate(old_key, 1)
    (tmp_path / "tls").mkdir(mode=0o700)
    (tmp_path / "tls" / "ca.pem").write_text(old_cert)
    store.save(
        key=old_key, certificate_pem=old_cert, ca_pem=None, server_url="https://x", outlet_id="o"
    )

    new = new_key()
    new_cert = _certificate(new, 2)
    new_pem = new.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    child = multiprocessing.get_context("fork").Process(
        target=_save_and_die_at, args=(str(tmp_path), new_pem, new_cert, die_at)
    )
    child.start()
    child.join(60)
    assert child.exitcode in (0, 17)

    reread = TlsStore(tmp_path / "tls")
    key, cert = reread.private_key(), reread.certificate()
    assert _public(key) == cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ), f"key and certificate differ after a crash at step {die_at}"
    assert cert.serial_number in (1, 2)
    assert not reread.pending_dir.exists()
    reread.ssl_context()  # loads: the pair is one


def test_a_crash_after_the_pair_was_written_completes_the_renewal(tmp_path: Path) -> None:
    """Dying between the key's and the certificate's move rolls forward to the new pair."""
    store = TlsStore(tmp_path / "tls")
    old_key = new_key()
    old_cert = _certificate(old_key, 1)
    (tmp_path / "tls").mkdir(mode=0o700)
    (tmp_path / "tls" / "ca.pem").write_text(old_cert)
    store.save(
        key=old_key, certificate_pem=old_cert, ca_pem=None, server_url="https://x", outlet_id="o"
    )
    new = new_key()
    new_pem = new.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Replaces in save(): meta, pending key, pending cert, mark, then key into place (5),
    # certificate into place (6): die at 6, after the key moved.
    child = multiprocessing.get_context("fork").Process(
        target=_save_and_die_at, args=(str(tmp_path), new_pem, _certificate(new, 2), 6)
    )
    child.start()
    child.join(60)
    assert child.exitcode == 17
    assert TlsStore(tmp_path / "tls").certificate().serial_number == 2
    assert _public(TlsStore(tmp_path / "tls").private_key()) == _public(new)
