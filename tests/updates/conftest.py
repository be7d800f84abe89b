"""Update test kit: real wheels of this repository under other versions, signed
manifests, a real HTTP server for artifacts that can cut a download short, and a uv
cache that installs offline.

Building a release: the tracked files (``git ls-files``) are copied, ``pyproject.toml``
gets the new version, and ``uv build --wheel --offline`` makes the wheel (about 1 s).
Installing it offline needs its dependencies in uv's cache as ``uv pip`` reads it (index
pages included): ``uv_cache_warm`` installs the locked pins once into a scratch venv
(the ordinary client, from the project's registry; seconds, mostly from the cache), so
the installer under test then runs with ``--offline`` and the ``update_constraints``
pins, as an outlet with a kept cache would.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from govedge_wire.releases import SignedManifest, sign_manifest
from tests.conftest import missing

ROOT = Path(__file__).resolve().parents[2]
KEY_ID = "ed25519-test-updates"


def uv_bin() -> Path:
    pinned = ROOT / ".tools" / "venv" / "bin" / "uv"
    if not pinned.exists():
        missing("uv is not installed (scripts/bootstrap puts it in .tools/venv)")
    return pinned


def _uv(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(uv_bin()), *args],
        cwd=cwd,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def build_wheel(version: str, out: Path) -> Path:
    """A real wheel of this repository (the working tree's tracked files) as ``version``."""
    src = out / f"src-{version}"
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        path = ROOT / os.fsdecode(name)
        if path.is_file():
            target = src / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    pyproject = src / "pyproject.toml"
    text = pyproject.read_text()
    start = text.index('\nversion = "')
    end = text.index("\n", start + 1)
    pyproject.write_text(text[:start] + f'\nversion = "{version}"' + text[end:])
    dist = out / f"dist-{version}"
    done = _uv("build", "--wheel", "--offline", "--out-dir", str(dist), cwd=src)
    if done.returncode != 0:
        missing(f"uv build offline failed: {done.stderr[-500:]}")
    shutil.rmtree(src)
    (wheel,) = dist.glob("govedge-*.whl")
    return wheel


@dataclass(frozen=True)
class Signer:
    key: Ed25519PrivateKey

    @property
    def keys_json(self) -> dict[str, str]:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {KEY_ID: base64.b64encode(raw).decode()}

    def manifest(self, artifact: Path, version: str, **overrides: object) -> SignedManifest:
        data = artifact.read_bytes()
        fields: dict[str, object] = {
            "version": version,
            "file_name": artifact.name,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "kind": "wheel",
        }
        fields.update(overrides)
        return sign_manifest(
            self.key,
            key_id=KEY_ID,
            created_at=datetime.now(UTC),
            **fields,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer(Ed25519PrivateKey.generate())


@pytest.fixture(scope="session")
def release_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real wheel of this repository as version 9.1.0."""
    return build_wheel("9.1.0", tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def pins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The locked pins of the agent extra (as tests/test_install_extras.py exports them)."""
    out = tmp_path_factory.mktemp("pins") / "agent-pins.txt"
    done = _uv(
        "export", "--frozen", "--offline", "--extra", "agent", "--no-emit-project",
        "--no-dev", "--no-hashes", "-q", "-o", str(out),
    )  # fmt: skip
    if done.returncode != 0:
        missing(f"uv export failed: {done.stderr[-500:]}")
    return out


@pytest.fixture(scope="session")
def uv_cache_warm(pins: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """uv's cache holds what ``uv pip install --offline`` needs for the pins."""
    scratch = tmp_path_factory.mktemp("warm") / "venv"
    made = _uv("venv", "-q", "--python", sys.executable, str(scratch))
    done = _uv("pip", "install", "-q", "--python", str(scratch / "bin" / "python"), "-r", str(pins))
    if made.returncode != 0 or done.returncode != 0:
        missing(f"uv cannot install the locked pins: {(made.stderr + done.stderr)[-500:]}")
    shutil.rmtree(scratch)
    return pins


class ArtifactServer:
    """A real HTTP/1.1 server for one file, with ``Range``/``If-Range``/ETag as the fleet
    server answers them; ``cut_after`` ends the first answer's connection after that many
    bytes (a broken link), ``body`` replaces what is served (a tampered artifact)."""

    def __init__(self, data: bytes, etag: str, *, cut_after: int | None = None) -> None:
        self.data = data
        self.etag = etag
        self.cut_after = cut_after
        self.requests: list[dict[str, str]] = []
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> ArtifactServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        lines = head.split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
        headers["request"] = lines[0]
        self.requests.append(headers)
        start = 0
        status = "200 OK"
        range_ = headers.get("range")
        if range_ and headers.get("if-range", self.etag) == self.etag:
            start = int(range_.removeprefix("bytes=").rstrip("-"))
            if start >= len(self.data):
                writer.write(b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                writer.close()
                await writer.wait_closed()
                return
            status = "206 Partial Content"
        body = self.data[start:]
        answer = (
            f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nETag: {self.etag}\r\n"
            f"Accept-Ranges: bytes\r\nConnection: close\r\n"
        )
        if start:
            answer += f"Content-Range: bytes {start}-{len(self.data) - 1}/{len(self.data)}\r\n"
        writer.write(answer.encode() + b"\r\n")
        if self.cut_after is not None:
            cut, self.cut_after = self.cut_after, None
            writer.write(body[:cut])
            await writer.drain()
            writer.transport.abort()  # the link breaks mid-body
            await writer.wait_closed()
            return
        writer.write(body)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
