"""Releases through the API: upload, manifest, ranged download, refusals, bad mark, roles,
and agents downloading with their certificate — on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fleet_server.security import Role
from govedge_wire.releases import ManifestRefused, verify_manifest
from tests.enrolling import enroll_outlet
from tests.server.releases.kit import (
    ReleaseApi,
    bundle_bytes,
    outlet_headers,
    release_api,
    wheel_bytes,
    wheel_name,
    zip_bundle_bytes,
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReleaseApi]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    with release_api(tmp_path, database_url=url) as running:
        yield running


def _version(api: ReleaseApi, base: str) -> str:
    """A version no earlier test on a shared PostgreSQL database used."""
    return f"{base}.post{abs(hash(api.releases_dir)) % 10**9}"


def _refused(api: ReleaseApi, reason: str) -> float:
    text = api.client.get("/metrics").text
    found = re.search(rf'^govedge_release_refused_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_wheel_is_stored_signed_and_served_with_ranges(api: ReleaseApi) -> None:
    version = _version(api, "1.4.0")
    data = wheel_bytes(version)
    answer = api.upload(data, version, wheel_name(version))
    assert answer.status_code == 201, answer.text
    release = answer.json()
    assert (release["size"], release["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert release["kind"] == "wheel"
    assert release["created_by"].startswith("r-operator")
    # The manifest verifies with the server's public key, and not once a field is changed.
    manifest = api.client.get(
        f"/api/v1/releases/{version}/manifest", headers=api.as_role(Role.VIEWER)
    ).json()
    assert verify_manifest(manifest, api.keys.public).sha256 == release["sha256"]
    with pytest.raises(ManifestRefused):
        verify_manifest({**manifest, "size": len(data) + 1}, api.keys.public)
    listed = api.client.get("/api/v1/releases", headers=api.as_role(Role.VIEWER)).json()
    assert version in [row["version"] for row in listed]
    # A download over a bad link: the first half, then the rest with Range.
    path, viewer = f"/api/v1/releases/{version}/artifact", api.as_role(Role.VIEWER)
    whole = api.client.get(path, headers=viewer)
    assert whole.status_code == 200
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["etag"] == f'"{release["sha256"]}"'
    half = len(data) // 2
    first = api.client.get(path, headers={**viewer, "Range": f"bytes=0-{half - 1}"})
    rest = api.client.get(path, headers={**viewer, "Range": f"bytes={half}-"})
    assert (first.status_code, rest.status_code) == (206, 206)
    assert rest.headers["content-range"] == f"bytes {half}-{len(data) - 1}/{len(data)}"
    assert hashlib.sha256(first.content + rest.content).hexdigest() == release["sha256"]
    # If-Range with another ETag (the file changed under the client): the whole file.
    changed = api.client.get(path, headers={**viewer, "Range": f"bytes={half}-", "If-Range": '"x"'})
    assert changed.status_code == 200
    assert changed.content == data
    beyond = api.client.get(path, headers={**viewer, "Range": f"bytes={len(data) + 10}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"
    # Stored whole under its version, nothing left in the incoming directory.
    assert api.stored_files() == [f"{version}/{wheel_name(version)}"]


def test_the_same_version_is_immutable(api: ReleaseApi) -> None:
    version = _version(api, "2.0.0")
    data = wheel_bytes(version)
    assert api.upload(data, version, wheel_name(version)).status_code == 201
    again = api.upload(data, version, wheel_name(version))
    assert again.status_code == 200
    assert again.json()["sha256"] == hashlib.sha256(data).hexdigest()
    other = wheel_bytes(version) + b"\0"  # another build claiming the same version
    conflict = api.upload(other, version, wheel_name(version))
    assert conflict.status_code == 409
    assert "immutable" in conflict.json()["detail"]
    assert api.stored_files() == [f"{version}/{wheel_name(version)}"]
    shown = api.client.get(f"/api/v1/releases/{version}", headers=api.as_role(Role.VIEWER)).json()
    assert shown["sha256"] == hashlib.sha256(data).hexdigest()
    # "X.0" is the same PEP 440 version as "X": found by either spelling, and taken.
    short = version.replace("2.0.0", "2.0", 1)
    assert short != version
    by_short = api.client.get(f"/api/v1/releases/{short}", headers=api.as_role(Role.VIEWER))
    assert by_short.json()["version"] == version
    assert api.upload(wheel_bytes(short), short, wheel_name(short)).status_code == 409


def test_garbage_is_refused_counted_and_nothing_stored(api: ReleaseApi) -> None:
    version = _version(api, "3.0.0")
    cases = [
        (b"not a zip at all", wheel_name(version), "not_a_wheel"),
        (wheel_bytes(version, name="othertool"), wheel_name(version), "wrong_package"),
        (wheel_bytes(version, metadata_version="9.9"), wheel_name(version), "wrong_package"),
        (wheel_bytes(version), wheel_name("3.0.1"), "wrong_package"),
        (wheel_bytes(version), "govedge.exe", "bad_name"),
        (bundle_bytes({"readme.md": b"x"}), "bundle.tar.gz", "bad_bundle"),
        (bundle_bytes({"a.whl": b"x"}), "bundle.tar.gz", "bad_bundle"),
        (b"\x1f\x8b garbage", "bundle.tar.gz", "bad_bundle"),
        (
            bundle_bytes(
                {wheel_name(version): wheel_bytes(version)}, links={"x.whl": "/etc/passwd"}
            ),
            "bundle.tar.gz",
            "bad_bundle",
        ),
        (bundle_bytes({"../" + wheel_name(version): wheel_bytes(version)}), "b.tgz", "bad_bundle"),
        (zip_bundle_bytes({wheel_name("3.0.1"): wheel_bytes("3.0.1")}), "b.zip", "wrong_package"),
    ]
    for data, name, reason in cases:
        before = _refused(api, reason)
        answer = api.upload(data, version, name)
        assert answer.status_code == 422, (name, reason, answer.text)
        assert answer.json()["detail"], answer.text
        assert _refused(api, reason) == before + 1, reason
    assert api.upload(wheel_bytes(version), "not-pep440", wheel_name(version)).status_code == 422
    assert api.stored_files() == []
    assert (
        api.client.get(f"/api/v1/releases/{version}", headers=api.as_role(Role.VIEWER)).status_code
        == 404
    )


def test_a_bundle_with_its_dependency_wheels_is_stored(api: ReleaseApi) -> None:
    version = _version(api, "4.1.0")
    data = bundle_bytes({
        f"wheels/{wheel_name(version)}": wheel_bytes(version),
        "wheels/pydantic-2.9.0-py3-none-any.whl": wheel_bytes("2.9.0", name="pydantic"),
        "requirements.txt": b"govedge==" + version.encode() + b"\n",
    })  # fmt: skip
    answer = api.upload(data, version, f"govedge-{version}-bundle.tar.gz")
    assert answer.status_code == 201, answer.text
    assert answer.json()["kind"] == "bundle"
    two = bundle_bytes(
        {
            wheel_name(version): wheel_bytes(version),
            "x/" + wheel_name(version): wheel_bytes(version),
        }
    )
    assert api.upload(two, _version(api, "4.2.0"), "two.tar.gz").status_code == 422


def test_mark_bad_records_who_when_why(api: ReleaseApi) -> None:
    version = _version(api, "5.0.0")
    assert api.upload(wheel_bytes(version), version, wheel_name(version)).status_code == 201
    path = f"/api/v1/releases/{version}/bad"
    assert (
        api.client.post(path, json={"reason": "x"}, headers=api.as_role(Role.VIEWER)).status_code
        == 403
    )
    bad = api.client.post(
        path, json={"reason": "printer driver crash"}, headers=api.as_role(Role.OPERATOR)
    )
    assert bad.status_code == 200, bad.text
    row = bad.json()
    assert row["bad"] is True
    assert row["bad_reason"] == "printer driver crash"
    assert row["bad_by"].startswith("r-operator")
    assert row["bad_at"]
    audit = api.client.get("/api/v1/audit?action=release.*", headers=api.as_role(Role.ADMIN)).json()
    assert {"release.add", "release.bad"} <= {entry["action"] for entry in audit}
    missing = api.client.post(
        "/api/v1/releases/99.0/bad", json={"reason": "x"}, headers=api.as_role(Role.OPERATOR)
    )
    assert missing.status_code == 404


def test_viewers_read_but_cannot_add(api: ReleaseApi) -> None:
    version = _version(api, "6.0.0")
    assert (
        api.upload(wheel_bytes(version), version, wheel_name(version), role=Role.VIEWER).status_code
        == 403
    )
    assert api.client.get(f"/api/v1/releases/{version}/artifact").status_code == 401
    assert api.stored_files() == []


def _enrolled_outlet(api: ReleaseApi, outlet_id: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
    key, issued = enroll_outlet(api.client.post, outlet_id, admin=api.as_role(Role.ADMIN))
    return key, str(issued["certificate_pem"])


def test_an_outlet_downloads_with_its_certificate(api: ReleaseApi) -> None:
    version = _version(api, "7.0.0")
    data = wheel_bytes(version)
    assert api.upload(data, version, wheel_name(version)).status_code == 201
    outlet = f"o-rel-{abs(hash(api.releases_dir)) % 10**6}"
    key, certificate = _enrolled_outlet(api, outlet)
    path = f"/api/v1/releases/{version}/artifact"
    got = api.client.get(path, headers=outlet_headers(key, certificate, "GET", path))
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(data).hexdigest()
    manifest_path = f"/api/v1/releases/{version}/manifest"
    manifest = api.client.get(
        manifest_path, headers=outlet_headers(key, certificate, "GET", manifest_path)
    )
    assert verify_manifest(manifest.json(), api.keys.public).version == version
    # A proof for another path, an old one, or by another key: 401.
    other_path = outlet_headers(key, certificate, "GET", manifest_path)
    assert api.client.get(path, headers=other_path).status_code == 401
    stale = outlet_headers(key, certificate, "GET", path, at=1_000_000_000)
    assert api.client.get(path, headers=stale).status_code == 401
    thief = outlet_headers(ec.generate_private_key(ec.SECP256R1()), certificate, "GET", path)
    assert api.client.get(path, headers=thief).status_code == 401
    # Revoked: the certificate no longer downloads.
    assert (
        api.client.post(
            f"/api/v1/outlets/{outlet}/revoke", headers=api.as_role(Role.ADMIN)
        ).status_code
        == 200
    )
    assert (
        api.client.get(path, headers=outlet_headers(key, certificate, "GET", path)).status_code
        == 401
    )


def test_a_zip_bundle_is_stored(api: ReleaseApi) -> None:
    version = _version(api, "4.3.0")
    data = zip_bundle_bytes({wheel_name(version): wheel_bytes(version)})
    answer = api.upload(data, version, f"govedge-{version}.zip")
    assert answer.status_code == 201, answer.text
    assert answer.json()["kind"] == "bundle"


def test_an_upload_over_the_limit_is_cut_off_and_nothing_stored(tmp_path: Path) -> None:
    limit = 1024 * 1024
    with release_api(tmp_path, release_max_bytes=limit) as api:
        version = "8.0.0"
        big = wheel_bytes(version) + b"\0" * limit
        # With Content-Length: refused before the body is read.
        assert api.upload(big, version, wheel_name(version)).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            for start in range(0, len(big), 64 * 1024):
                yield big[start : start + 64 * 1024]

        streamed = api.client.post(
            "/api/v1/releases",
            params={"version": version, "file_name": wheel_name(version)},
            content=chunks(),
            headers={**api.as_role(Role.OPERATOR), "Content-Type": "application/octet-stream"},
        )
        assert streamed.status_code == 413
        assert api.stored_files() == []
        assert api.client.get("/api/v1/releases", headers=api.as_role(Role.VIEWER)).json() == []


def test_uploads_left_by_a_crash_are_swept(api: ReleaseApi) -> None:
    incoming = api.releases_dir / ".incoming"
    incoming.mkdir(parents=True)
    old, fresh = incoming / "upload-old", incoming / "upload-running"
    old.write_bytes(b"half an upload")
    fresh.write_bytes(b"an upload in progress elsewhere")
    two_days_ago = time.time() - 2 * 86_400
    os.utime(old, (two_days_ago, two_days_ago))
    version = _version(api, "9.1.0")
    assert api.upload(wheel_bytes(version), version, wheel_name(version)).status_code == 201
    assert not old.exists()
    assert fresh.exists()
