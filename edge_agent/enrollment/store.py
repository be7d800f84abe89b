"""The outlet's identity files in its keys dir, written atomically.

The keys dir is the ``keys_dir`` setting (default ``DATA_DIR/tls``; on a provisioned
PC ``/var/lib/govedge-keys``, apart from the data dir that technicians copy and
decommissioning archives).

``key.pem`` (EC P-256, 0600, never leaves the PC), ``cert.pem`` (CN = outlet id),
``ca.pem`` (the fleet CA, pinned at enrollment: trusted for the broker and the server,
and the only issuer a renewed certificate may have; a renewal never rewrites it) and
``enrollment.json`` (the server URL for renewal and the outlet id). A new key and
certificate are written complete into ``pending/`` before either replaces the old
pair; every read first rolls a complete pending pair forward (or drops an incomplete
one), so a crash at any point leaves a matching pair.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_agent.enrollment.errors import EnrollmentError, NotEnrolled

# The keys dir inside DATA_DIR when ``keys_dir`` is not set (and before it existed).
TLS_DIR: Final = "tls"
KEY_FILE: Final = "key.pem"
CERT_FILE: Final = "cert.pem"
CA_FILE: Final = "ca.pem"
META_FILE: Final = "enrollment.json"
PENDING_DIR: Final = "pending"
# Written last into pending/: the pair beside it is whole and may be moved into place.
COMPLETE_MARK: Final = "complete"


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """What the stored certificate says."""

    outlet_id: str
    server_url: str
    not_before: datetime
    not_after: datetime


def _atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM of ``key`` (unencrypted: the file is 0600 in a 0700 directory)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def default_keys_dir(data_dir: Path) -> Path:
    """Where the keys live when ``keys_dir`` is not set."""
    return data_dir / TLS_DIR


class TlsStore:
    """Reads and writes the identity files of one keys dir."""

    def __init__(self, keys_dir: Path) -> None:
        self.dir = keys_dir
        self.key_path = self.dir / KEY_FILE
        self.cert_path = self.dir / CERT_FILE
        self.ca_path = self.dir / CA_FILE
        self.meta_path = self.dir / META_FILE
        self.pending_dir = self.dir / PENDING_DIR

    def _recover(self) -> None:
        """Finish or drop a key/certificate swap that a crash interrupted."""
        if not self.pending_dir.exists():
            return
        try:
            if (self.pending_dir / COMPLETE_MARK).exists():
                # Key first, certificate second, as save() does; a file already moved
                # by the interrupted run is simply absent here.
                for name, target in ((KEY_FILE, self.key_path), (CERT_FILE, self.cert_path)):
                    source = self.pending_dir / name
                    if source.exists():
                        os.replace(source, target)
                fsync_dir(self.dir)
            shutil.rmtree(self.pending_dir)
        except OSError as exc:
            raise EnrollmentError(
                f"cannot finish the certificate swap in {self.dir}: {exc}"
            ) from None

    def exists(self) -> bool:
        """Tell whether a certificate, key and CA are all present."""
        self._recover()
        return all(p.exists() for p in (self.key_path, self.cert_path, self.ca_path))

    def save(
        self,
        *,
        key: ec.EllipticCurvePrivateKey,
        certificate_pem: str,
        ca_pem: str | None,
        server_url: str,
        outlet_id: str,
    ) -> None:
        """Store a newly issued identity; ``ca_pem`` (the pin) at enrollment only."""
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)
            if ca_pem is not None:
                _atomic_write(self.ca_path, ca_pem.encode("ascii"), mode=0o644)
            meta = {"server_url": server_url, "outlet_id": outlet_id}
            _atomic_write(self.meta_path, json.dumps(meta).encode(), mode=0o600)
            if self.pending_dir.exists():
                shutil.rmtree(self.pending_dir)
            self.pending_dir.mkdir(mode=0o700)
            _atomic_write(self.pending_dir / KEY_FILE, key_pem(key), mode=0o600)
            _atomic_write(self.pending_dir / CERT_FILE, certificate_pem.encode("ascii"), mode=0o644)
            _atomic_write(self.pending_dir / COMPLETE_MARK, b"", mode=0o600)
            fsync_dir(self.pending_dir)
        except OSError as exc:
            raise EnrollmentError(f"cannot store the certificate in {self.dir}: {exc}") from None
        self._recover()

    def certificate(self) -> x509.Certificate:
        """The stored certificate."""
        self._recover()
        try:
            return x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        except FileNotFoundError:
            raise NotEnrolled(
                f"no certificate in {self.dir}: run `edge-agent enroll` first"
            ) from None
        except (OSError, ValueError) as exc:
            raise EnrollmentError(f"cannot read {self.cert_path}: {exc}") from None

    def pinned_ca(self) -> x509.Certificate:
        """The fleet CA pinned at enrollment."""
        try:
            return x509.load_pem_x509_certificate(self.ca_path.read_bytes())
        except FileNotFoundError:
            raise NotEnrolled(f"no fleet CA in {self.dir}: run `edge-agent enroll` first") from None
        except (OSError, ValueError) as exc:
            raise EnrollmentError(f"cannot read {self.ca_path}: {exc}") from None

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        """The stored private key."""
        self._recover()
        try:
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise EnrollmentError(f"cannot read {self.key_path}: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise EnrollmentError(f"{self.key_path} is not an EC key")
        return key

    def identity(self) -> Identity:
        """Outlet id, server URL and validity of the stored certificate."""
        cert = self.certificate()
        try:
            meta = json.loads(self.meta_path.read_text())
            server_url = str(meta["server_url"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EnrollmentError(f"cannot read {self.meta_path}: {exc}") from None
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        outlet_id = str(names[0].value) if names else ""
        return Identity(
            outlet_id=outlet_id,
            server_url=server_url,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS client context: trust only the fleet CA, present our certificate."""
        if not self.exists():
            raise NotEnrolled(f"no certificate in {self.dir}: run `edge-agent enroll` first")
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_path))
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(str(self.cert_path), str(self.key_path))
        except (OSError, ssl.SSLError) as exc:
            raise EnrollmentError(f"cannot load the TLS identity from {self.dir}: {exc}") from None
        return context
