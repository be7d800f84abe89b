"""Keys held apart from the data: the agent's outbox key and the server's PII keys.

Real processes: ``edge-agent run`` with the key in another directory or passed as a
systemd credential (``$CREDENTIALS_DIRECTORY``, as ``LoadCredential=`` delivers it), and
``fleet-server run`` reading its PII keys from credentials while a fake agent's
submission is stored sealed and delivered upstream.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from govedge_testbed import Mosquitto
from tests.e2e.conftest import Agent, poll
from tests.server.txkit import TxAgent, serving_upstream, submission, transaction_server


def _files_holding(root: Path, secret: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def _run_until_outbox_opens(agent: Agent, log: Path) -> str:
    """Start the agent, wait until its outbox is open (or it exits), stop it; its log."""
    start = len(log.read_text()) if log.exists() else 0
    agent.start()
    assert agent.proc is not None
    poll(
        lambda: (
            agent.proc is not None
            and (agent.proc.poll() is not None or "outbox open at" in log.read_text()[start:])
        ),
        timeout=60,
    )
    agent.stop()
    return log.read_text()[start:]


def test_agent_outbox_key_apart_and_as_credential(
    broker: Mosquitto, outlet_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    key_file = tmp_path / "keys" / "outbox.key"
    config = tmp_path / "agent.toml"
    config.write_text(f"outbox_key_file = {json.dumps(str(key_file))}\n")
    log = tmp_path / "agent.log"
    agent = Agent(outlet_id=outlet_id, data_dir=data_dir, mqtt_url=broker.url, log=log,
                  extra=["--config", str(config)])  # fmt: skip

    # The key is made where the setting says, 0600; the data directory never holds it.
    first = _run_until_outbox_opens(agent, log)
    assert f"outbox key: {key_file} (setting)" in first
    assert "outbox open at" in first
    key = key_file.read_bytes()
    assert len(key) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (data_dir / "outbox.db").exists()
    assert not (data_dir / "outbox.key").exists()
    assert _files_holding(data_dir, key) == []

    # The data directory alone opens nothing: without the key the agent refuses to start.
    agent.extra = []
    alone = _run_until_outbox_opens(agent, log)
    assert agent.proc is not None
    assert agent.proc.returncode == 1
    assert "missing but the outbox holds entries" in alone
    assert not (data_dir / "outbox.key").exists()  # and it made no new key there

    # The same key as a systemd credential (read-only, 0400): honoured without a setting.
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    credential = credentials / "govedge-outbox-key"
    credential.write_bytes(key)
    credential.chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    third = _run_until_outbox_opens(agent, log)
    assert f"outbox key: {credential} (credential)" in third
    assert "outbox open at" in third
    assert _files_holding(data_dir, key) == []


def test_an_outbox_key_in_the_data_dir_moves_to_the_setting(
    broker: Mosquitto, outlet_id: str, tmp_path: Path
) -> None:
    """An agent set up before ``outbox_key_file``, then given it (the provision playbook
    writes it under keys_dir): its key moves there and the same outbox opens."""
    data_dir = tmp_path / "data"
    log = tmp_path / "agent.log"
    agent = Agent(outlet_id=outlet_id, data_dir=data_dir, mqtt_url=broker.url, log=log)
    first = _run_until_outbox_opens(agent, log)
    assert f"outbox key: {data_dir / 'outbox.key'} (data_dir)" in first
    key = (data_dir / "outbox.key").read_bytes()

    key_file = tmp_path / "keys" / "outbox.key"
    config = tmp_path / "agent.toml"
    config.write_text(f"outbox_key_file = {json.dumps(str(key_file))}\n")
    agent.extra = ["--config", str(config)]
    moved = _run_until_outbox_opens(agent, log)
    assert "outbox key moved" in moved
    assert "outbox open at" in moved  # the database's key check accepts the moved key
    assert key_file.read_bytes() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert _files_holding(data_dir, key) == []

    # The playbook's copy (identical) left in the data dir is removed at the next start.
    (data_dir / "outbox.key").write_bytes(key)
    (data_dir / "outbox.key").chmod(0o600)
    again = _run_until_outbox_opens(agent, log)
    assert "outbox open at" in again
    assert _files_holding(data_dir, key) == []

    # Another key in the data dir is never dropped: both stay and the agent says so.
    other = os.urandom(32)
    (data_dir / "outbox.key").write_bytes(other)
    (data_dir / "outbox.key").chmod(0o600)
    differs = _run_until_outbox_opens(agent, log)
    assert "still holds an outbox key" in differs
    assert "outbox open at" in differs
    assert (data_dir / "outbox.key").read_bytes() == other
    assert key_file.read_bytes() == key


def test_server_pii_keys_from_credentials(
    broker: Mosquitto, outlet_id: str, tmp_path: Path
) -> None:
    key_id = "0001-c0ffee00"
    key = os.urandom(32)
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    credential = credentials / f"govedge-pii-keys_{key_id}.key"
    credential.write_bytes(key)
    credential.chmod(0o400)
    data = tmp_path / "data"
    data.mkdir()
    beside = data / "fleet-pii-keys"  # the old place, next to the database
    with (
        serving_upstream() as upstream,
        transaction_server(
            broker.url,
            upstream,
            data,
            ["zhoushan", "hcp"],
            CREDENTIALS_DIRECTORY=str(credentials),
            GOVEDGE_PII_KEY_DIR=str(beside),
        ),
    ):
        agent = TxAgent(broker.url, outlet_id)
        try:
            agent.birth()
            agent.tx("submission", submission())
            # Delivered upstream in plain: the server opened the body with that key.
            poll(lambda: upstream.accepted, timeout=60)
        finally:
            agent.close()
    (delivered,) = upstream.accepted.values()
    assert "张三丰" in json.dumps(delivered["body"], ensure_ascii=False)
    with sqlite3.connect(data / "fleet.db") as db:
        raw = db.execute("SELECT body FROM inbox").fetchone()[0]
    assert key_id in raw  # sealed with the credential's key
    assert not beside.exists()  # no key directory was made beside the database
    assert _files_holding(data, key) == []
