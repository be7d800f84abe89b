"""``FleetCA``: the fleet's own CA in a 0700 directory, created on first use.

It holds the CA, the CRL (and the paths of its published copies), the broker's server
certificate and the fleet server's own MQTT identity; layout and CRL publishing:
docs/security.md, "Outlet identity".
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleet_server.pki.errors import PkiError

CA_KEY_FILE: Final = "ca.key"
CA_CERT_FILE: Final = "ca.crt"
CRL_FILE: Final = "crl.pem"
CRL_COPIES_FILE: Final = "crl-copies"
BROKER_NAME: Final = "broker"
# Outlet ids never start with "_", so no outlet can ever be issued this name.
SERVER_CLIENT_CN: Final = "_fleet-server"
CA_DAYS: Final = 3650
BROKER_DAYS: Final = 397
SERVER_CLIENT_DAYS: Final = 397
# OpenSSL refuses every client once the CRL's nextUpdate passes; the server rewrites
# the CRL at every start and revocation, so a year leaves ample margin.
CRL_DAYS: Final = 365
_BACKDATE: Final = timedelta(minutes=5)


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedCertificate:
    """A certificate just signed, with the facts the registry keeps."""

    pem: str
    serial_hex: str
    fingerprint_sha256: str
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttClientFiles:
    """Paths for an MQTT TLS client: the CA to trust, our certificate and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "govedge fleet"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _issued(cert: x509.Certificate) -> IssuedCertificate:
    return IssuedCertificate(
        pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        serial_hex=f"{cert.serial_number:x}",
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


class FleetCA:
    """The CA key and certificate loaded from ``directory`` (created there if absent)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        with self._locked():
            self._key, self.certificate = self._load_or_create()

    @property
    def cert_path(self) -> Path:
        """The CA certificate file (what agents and the broker trust)."""
        return self.directory / CA_CERT_FILE

    @property
    def crl_path(self) -> Path:
        """The CRL file the broker reads."""
        return self.directory / CRL_FILE

    @property
    def crl_copies(self) -> list[Path]:
        """Where ``write_crl`` also publishes the CRL (``publish_crl``), in order."""
        try:
            text = (self.directory / CRL_COPIES_FILE).read_text()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise PkiError(f"cannot read {CRL_COPIES_FILE}: {exc.strerror}") from None
        return [Path(line) for line in text.splitlines() if line.strip()]

    def publish_crl(self, path: Path) -> Path:
        """Keep a copy of the CRL at ``path`` from now on (written now, and at each
        ``write_crl``); for a broker that cannot read this 0700 directory."""
        path = path.resolve()
        with self._locked():
            copies = self.crl_copies
            if path not in copies:
                _write_public(
                    self.directory / CRL_COPIES_FILE,
                    "".join(f"{p}\n" for p in [*copies, path]).encode(),
                )
        if not self.crl_path.exists():
            self.write_crl([])
        else:
            self._copy_crl(self.crl_path.read_bytes(), path)
        return path

    def _copy_crl(self, data: bytes, path: Path) -> None:
        try:
            _write_public(path, data)
        except OSError as exc:
            raise PkiError(f"cannot publish the CRL to {path}: {exc.strerror}") from None

    @property
    def pem(self) -> str:
        """The CA certificate as PEM text."""
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            handle = (self.directory / ".lock").open("a")
        except OSError as exc:
            raise PkiError(f"cannot use PKI directory {self.directory}: {exc.strerror}") from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _load_or_create(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key_path, cert_path = self.directory / CA_KEY_FILE, self.directory / CA_CERT_FILE
        if key_path.exists() and cert_path.exists():
            try:
                key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
                cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            except (OSError, ValueError) as exc:
                raise PkiError(f"cannot load the fleet CA from {self.directory}: {exc}") from None
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise PkiError("the fleet CA key is not an EC key")
            return key, cert
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        name = _name("govedge fleet CA")
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write_private(key_path, _key_pem(key))
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return key, cert

    def _builder(
        self, public_key: ec.EllipticCurvePublicKey | object, *, common_name: str, days: int
    ) -> x509.CertificateBuilder:
        now = datetime.now(UTC)
        ca_key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key())
        return (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(ca_key_id, critical=False)
        )

    def issue_client(
        self, csr: x509.CertificateSigningRequest, *, common_name: str, days: int
    ) -> IssuedCertificate:
        """Sign a client certificate for ``csr``'s key; subject is ``common_name`` only.

        Whatever subject or extensions the CSR asks for are ignored.
        """
        builder = self._builder(csr.public_key(), common_name=common_name, days=days)
        cert = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        ).sign(self._key, hashes.SHA256())
        return _issued(cert)

    def verify_issued(self, cert: x509.Certificate, *, at: datetime) -> None:
        """Raise ``PkiError`` unless ``cert`` was signed by this CA and is valid at ``at``."""
        try:
            cert.verify_directly_issued_by(self.certificate)
        except (ValueError, TypeError) as exc:
            raise PkiError("certificate was not issued by the fleet CA") from exc
        except Exception as exc:  # InvalidSignature has no common base with the above
            raise PkiError("certificate signature does not verify") from exc
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            raise PkiError("certificate is expired or not yet valid")

    def ensure_broker_cert(self, *, hostnames: Sequence[str]) -> MqttClientFiles:
        """Write ``broker.key``/``broker.crt`` for ``hostnames`` (DNS names or IPs)."""
        key, cert = self._tls_server_cert(hostnames, days=BROKER_DAYS)
        return self._write_pair(BROKER_NAME, key, cert)

    def _tls_server_cert(
        self, hostnames: Sequence[str], *, days: int
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A new key and a TLS-server-only certificate naming ``hostnames`` (DNS or IP)."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hostnames:
            try:
                names.append(x509.IPAddress(ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        cert = (
            self._builder(key.public_key(), common_name=hostnames[0], days=days)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return key, cert

    def ensure_server_client(self, *, min_days_left: int = 30) -> MqttClientFiles:
        """The fleet server's MQTT client identity, (re)issued when missing or expiring."""
        cert_path = self.directory / f"{SERVER_CLIENT_CN}.crt"
        with self._locked():
            if cert_path.exists():
                cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
                left = cert.not_valid_after_utc - datetime.now(UTC)
                if left > timedelta(days=min_days_left):
                    return self._files(SERVER_CLIENT_CN)
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (
                self._builder(
                    key.public_key(), common_name=SERVER_CLIENT_CN, days=SERVER_CLIENT_DAYS
                )
                .add_extension(
                    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
                )
                .sign(self._key, hashes.SHA256())
            )
            return self._write_pair(SERVER_CLIENT_CN, key, cert)

    def _files(self, stem: str) -> MqttClientFiles:
        return MqttClientFiles(
            ca_file=self.cert_path,
            cert_file=self.directory / f"{stem}.crt",
            key_file=self.directory / f"{stem}.key",
        )

    def _write_pair(
        self, stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
    ) -> MqttClientFiles:
        files = self._files(stem)
        _write_private(files.key_file, _key_pem(key))
        _write_public(files.cert_file, cert.public_bytes(serialization.Encoding.PEM))
        return files

    def write_crl(
        self, revoked: Iterable[tuple[int, datetime]], *, path: Path | None = None
    ) -> Path:
        """Write the CRL listing ``(serial, revoked_at)`` pairs; returns the file written.

        Without ``path``: ``crl.pem`` here and every published copy (``publish_crl``);
        a copy that cannot be written raises ``PkiError`` (a broker would go on
        accepting what was just revoked).
        """
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now - _BACKDATE)
            .next_update(now + timedelta(days=CRL_DAYS))
        )
        for serial, revoked_at in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(revoked_at)
                .build()
            )
        crl = builder.sign(self._key, hashes.SHA256())
        data = crl.public_bytes(serialization.Encoding.PEM)
        if path is not None:
            _write_public(path, data)
            return path
        _write_public(self.crl_path, data)
        for copy in self.crl_copies:
            self._copy_crl(data, copy)
        return self.crl_path

    def issue_https_server(
        self, *, hostnames: Sequence[str], out_dir: Path, days: int = BROKER_DAYS
    ) -> MqttClientFiles:
        """Write ``https.key``/``https.crt`` for the fleet API under ``out_dir``.

        The certificate names ``hostnames`` (DNS names or IPs) and is for TLS servers
        only, so the broker never accepts it as a client; agents that enrolled with this
        CA trust it, and so does ``fleetctl --ca-file CA``.
        """
        key, cert = self._tls_server_cert(hostnames, days=days)
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        files = MqttClientFiles(
            ca_file=self.cert_path, cert_file=out_dir / "https.crt", key_file=out_dir / "https.key"
        )
        _write_private(files.key_file, _key_pem(key))
        _write_public(files.cert_file, cert.public_bytes(serialization.Encoding.PEM))
        return files
