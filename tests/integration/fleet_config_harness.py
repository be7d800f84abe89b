"""A simulated agent that trusts a test config-signing key, and configs signed with it."""

from __future__ import annotations

import base64
import json
import os
import selectors
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge_agent.local_api import AppRegistry
from govedge_testbed import Mosquitto
from govedge_wire import ConfigReport, Kind, encode, topic_for
from govedge_wire.config import (
    SignedConfig,
    canonical_json,
    config_hash,
    config_message,
    key_id_for,
    sign_config,
    signed_payload,
)
from tests.agent.harness import Observer


class Signer:
    """A test Ed25519 key and the configs it signs for one outlet."""

    def __init__(self, outlet_id: str) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.key_id = key_id_for(self.key.public_key())
        self.outlet_id = outlet_id

    def keys_file(self, path: Path) -> Path:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        path.write_text(json.dumps({self.key_id: base64.b64encode(raw).decode()}))
        return path

    def sign(self, version: int, config: dict[str, Any], *, outlet_id: str | None = None) -> bytes:
        signed = sign_config(
            self.key,
            key_id=self.key_id,
            outlet_id=outlet_id or self.outlet_id,
            version=version,
            config=config,
        )
        return payload(signed)

    def sign_tampered(self, version: int, config: dict[str, Any], changed: dict[str, Any]) -> bytes:
        """A signed envelope whose config was changed afterwards (hash and signature kept)."""
        signed = sign_config(
            self.key, key_id=self.key_id, outlet_id=self.outlet_id, version=version, config=config
        )
        return payload(signed.model_copy(update={"config": changed}))

    def sign_unchecked(self, version: int, config: dict[str, Any]) -> bytes:
        """A correctly signed envelope around a config the model refuses (``schema``)."""
        fields: dict[str, Any] = {
            "outlet_id": self.outlet_id,
            "version": version,
            "hash": config_hash(config),
            "issued_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "config": config,
            "key_id": self.key_id,
        }
        fields["signature"] = base64.b64encode(self.key.sign(signed_payload(fields))).decode()
        return payload(SignedConfig.model_validate(fields))


def payload(signed: SignedConfig) -> bytes:
    """The ``down/config`` payload carrying ``signed``."""
    return encode(config_message(signed, session=0, seq=0))


def publish_config(observer: Observer, outlet_id: str, data: bytes) -> None:
    """Publish retained on the outlet's ``down/config``, as the fleet server does."""
    observer.publish_raw(topic_for(outlet_id, Kind.DESIRED_CONFIG), data, retain=True)


def reports(observer: Observer) -> list[ConfigReport]:
    return observer.messages(ConfigReport)


class FleetAgent:
    """``edge-agent run --simulate`` trusting ``keys_file``; the local API client."""

    def __init__(self, broker: Mosquitto, outlet_id: str, data_dir: Path, keys_file: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOVEDGE_")}
        env["GOVEDGE_SIMULATE_PCSC"] = "false"  # pcscd's one reader: tests/conftest.py
        env["GOVEDGE_CONFIG_KEYS_FILE"] = str(keys_file)
        self.log_path = data_dir.parent / "agent.log"
        data_dir.mkdir(exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "edge_agent", "run",
                    "--mqtt-url", broker.url,
                    "--outlet-id", outlet_id,
                    "--data-dir", str(data_dir),
                    "--keepalive", "5",
                    "--telemetry-interval", "0.5",
                    "--local-api-port", "0",
                    "--simulate",
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
            )  # fmt: skip
        try:
            url = ""
            self.simulated = 0
            while not url:
                line = self._line(timeout=30)
                if "simulated devices attached" in line:
                    self.simulated = int(line.split(": ", 1)[1].split()[0])
                if "local API on " in line:
                    url = line.split("local API on ", 1)[1]
        except BaseException:
            self.close()
            raise
        _, token = AppRegistry(data_dir).add(f"clerk-{self.proc.pid}", origins=[])
        self.api = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def _line(self, *, timeout: float) -> str:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise AssertionError(f"agent printed nothing in {timeout} s: {self.log()}")
        line = self.proc.stdout.readline().decode().strip()
        if not line:
            raise AssertionError(f"agent exited: {self.log()}")
        return line

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def windows(self) -> dict[str, list[str]]:
        """The queue windows and the business types each serves, as the clerks see them."""
        state = self.api.get("/v1/queue").raise_for_status().json()
        return {w["window"]: list(w["business_types"]) for w in state["windows"]}

    def queue(self) -> dict[str, Any]:
        result: dict[str, Any] = self.api.get("/v1/queue").raise_for_status().json()
        return result

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close_pipes()

    def close(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._close_pipes()
        return self.proc.returncode

    def _close_pipes(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if hasattr(self, "api"):
            self.api.close()


__all__ = ["FleetAgent", "Signer", "canonical_json", "publish_config", "reports"]
