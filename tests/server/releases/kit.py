"""Release test kit: minimal real wheels and bundles, and the app with a signing key."""

from __future__ import annotations

import base64
import io
import tarfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from fleet_server.app import create_app
from fleet_server.config.keys import ConfigKeys, load_config_keys
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.migrate import upgrade
from fleet_server.security import Role
from fleet_server.security.users import create_user
from fleet_server.settings import Settings
from govedge_wire.releases import (
    CERTIFICATE_HEADER,
    SIGNATURE_HEADER,
    TIME_HEADER,
    download_proof_payload,
)
from tests.security.api_harness import Api, TestClient
from tests.server.config.kit import signing_key


def wheel_bytes(
    version: str, *, name: str = "govedge", metadata_version: str | None = None
) -> bytes:
    """A wheel as pip builds it: package files, METADATA, WHEEL and RECORD."""
    dist = f"{name}-{version}.dist-info"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as wheel:
        wheel.writestr(f"{name}/__init__.py", "VERSION = " + repr(version) + "\n" + "#" * 4000)
        wheel.writestr(
            f"{dist}/METADATA",
            f"Metadata-Version: 2.3\nName: {name}\nVersion: {metadata_version or version}\n",
        )
        wheel.writestr(
            f"{dist}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{dist}/RECORD", "")
    return out.getvalue()


def wheel_name(version: str, name: str = "govedge") -> str:
    return f"{name}-{version}-py3-none-any.whl"


def bundle_bytes(members: dict[str, bytes], *, links: dict[str, str] | None = None) -> bytes:
    """A .tar.gz holding ``members`` (name → bytes) and symbolic ``links`` (name → target)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as bundle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            bundle.addfile(info)
    return out.getvalue()


def zip_bundle_bytes(members: dict[str, bytes]) -> bytes:
    """A .zip holding ``members``."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return out.getvalue()


@dataclass
class ReleaseApi(Api):
    """The app with a signing key and a releases directory."""

    releases_dir: Path
    keys: ConfigKeys
    pki_dir: Path

    def upload(
        self, data: bytes, version: str, file_name: str, role: Role = Role.OPERATOR
    ) -> object:
        return self.client.post(
            "/api/v1/releases",
            params={"version": version, "file_name": file_name},
            content=data,
            headers={**self.as_role(role), "Content-Type": "application/octet-stream"},
        )

    def stored_files(self) -> list[str]:
        """Every file under the releases directory (temporary ones included)."""
        return sorted(
            str(p.relative_to(self.releases_dir))
            for p in self.releases_dir.rglob("*")
            if p.is_file()
        )


@contextmanager
def release_api(
    tmp_path: Path, *, database_url: str | None = None, **extra: object
) -> Iterator[ReleaseApi]:
    url = database_url or f"sqlite:///{tmp_path / 'fleet.db'}"
    engine = make_engine(url)
    upgrade(engine)
    tokens: dict[Role, str] = {}
    stamp = f"{time.monotonic_ns()}"  # a PostgreSQL database is shared by the session
    with make_sessionmaker(engine)() as session:
        for role in Role:
            new = create_user(
                session,
                name=f"r-{role.value}-{stamp}",
                role=role,
                ttl=timedelta(hours=1),
                actor="test",
            )
            tokens[role] = new.token
    settings = Settings(
        database_url=url,
        mqtt_url="mqtt://127.0.0.1:1",
        pki_dir=tmp_path / "pki",
        pii_key_dir=tmp_path / "pii",
        releases_dir=tmp_path / "releases",
        config_signing_key=signing_key(tmp_path),
        **extra,  # type: ignore[arg-type]
    )
    app = create_app(settings, engine=engine)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield ReleaseApi(
                client=client, engine=engine, tokens=tokens, releases_dir=tmp_path / "releases",
                keys=load_config_keys(settings), pki_dir=tmp_path / "pki",
            )  # fmt: skip
    finally:
        engine.dispose()


def outlet_headers(
    key: ec.EllipticCurvePrivateKey,
    certificate_pem: str,
    method: str,
    path: str,
    at: int | None = None,
) -> dict[str, str]:
    """The headers an agent sends to download with its certificate."""
    when = int(time.time()) if at is None else at
    signature = key.sign(download_proof_payload(method, path, when), ec.ECDSA(hashes.SHA256()))
    return {
        CERTIFICATE_HEADER: base64.b64encode(certificate_pem.encode()).decode(),
        TIME_HEADER: str(when),
        SIGNATURE_HEADER: base64.b64encode(signature).decode(),
    }
