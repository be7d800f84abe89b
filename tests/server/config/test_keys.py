"""The config-signing key: files, credentials, the CLI, the enrollment answer, a real server."""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fleet_server.cli import main as fleet_server_cli
from fleet_server.config.keys import (
    ConfigKeyError,
    generate_key_file,
    load_config_keys,
    public_pem,
    read_private_key,
)
from fleet_server.security import Role
from fleet_server.settings import Settings
from govedge_testbed import Mosquitto
from govedge_wire.config import key_id_for
from tests.security.api_harness import running_api
from tests.server.config.kit import ConfigWatcher, add_outlet, set_scope, verified
from tests.server.helpers import FleetServer, poll


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "signing.pem"
    generate_key_file(path)
    return path


def _extra_public(tmp_path: Path) -> tuple[Path, str]:
    other = tmp_path / "next.pem"
    next_id = generate_key_file(other)
    public = tmp_path / "public.pem"
    public.write_text(public_pem(read_private_key(other).public_key()))
    return public, next_id


def test_generate_writes_0600_and_refuses_to_overwrite(key: Path) -> None:
    assert key.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigKeyError, match="exists"):
        generate_key_file(key)


def test_a_key_readable_by_others_is_refused(key: Path) -> None:
    key.chmod(0o640)
    with pytest.raises(ConfigKeyError, match="chmod 600"):
        load_config_keys(Settings(config_signing_key=key))


def test_not_an_ed25519_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    path.chmod(0o600)
    with pytest.raises(ConfigKeyError, match="not an unencrypted PEM key"):
        load_config_keys(Settings(config_signing_key=path))


def test_the_systemd_credential_and_extra_public_keys(
    key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "govedge-config-signing-key").write_bytes(key.read_bytes())
    (credentials / "govedge-config-signing-key").chmod(0o600)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    public, next_id = _extra_public(tmp_path)
    keys = load_config_keys(Settings(config_public_keys_file=public))
    assert keys.source == credentials / "govedge-config-signing-key"
    assert keys.key_id == key_id_for(read_private_key(key).public_key())
    assert list(keys.public) == [keys.key_id, next_id]
    raw = base64.b64decode(keys.public_b64()[next_id])
    assert len(raw) == 32


def test_cli_generate_and_show(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "cli.pem"
    made = runner.invoke(fleet_server_cli, ["config-key", "generate", str(path)])
    assert made.exit_code == 0, made.output
    key_id = made.output.split("key id ")[1].split()[0]
    assert "BEGIN PUBLIC KEY" in made.output
    public, next_id = _extra_public(tmp_path)
    shown = runner.invoke(
        fleet_server_cli, ["config-key", "show", "--key", str(path), "--public-keys", str(public)]
    )
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].startswith(f"{key_id}  signing")
    assert lines[1] == f"{next_id}  public only"
    again = runner.invoke(fleet_server_cli, ["config-key", "generate", str(path)])
    assert again.exit_code == 1


def test_enrollment_and_renewal_answers_carry_config_keys(
    key: Path, tmp_path: Path, broker: Mosquitto
) -> None:
    from tests.security.test_enrollment_api import _csr, _pem

    public, next_id = _extra_public(tmp_path)
    signing_id = key_id_for(read_private_key(key).public_key())
    with running_api(
        tmp_path, mqtt_url=broker.url, config_signing_key=key, config_public_keys_file=public
    ) as api:
        token = api.client.post(
            "/api/v1/enrollments",
            json={"outlet_id": "outlet-ck1", "ttl_s": 600},
            headers=api.as_role(Role.TECHNICIAN),
        ).json()["token"]
        old_key, csr = _csr()
        answer = api.client.post("/api/v1/enroll", json={"token": token, "csr_pem": _pem(csr)})
        assert answer.status_code == 200, answer.text
        keys = answer.json()["config_keys"]
        assert set(keys) == {signing_id, next_id}
        raw = base64.b64decode(keys[signing_id])
        assert key_id_for(Ed25519PublicKey.from_public_bytes(raw)) == signing_id
        expected = read_private_key(key).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert raw == expected

        # Renewal (proof: the current key signs the new CSR) carries them too.
        _, new_csr = _csr("outlet-ck1")
        der = new_csr.public_bytes(Encoding.DER)
        proof = base64.b64encode(old_key.sign(der, ec.ECDSA(hashes.SHA256()))).decode()
        renewed = api.client.post(
            "/api/v1/enroll/renew",
            json={
                "certificate_pem": answer.json()["certificate_pem"],
                "csr_pem": _pem(new_csr),
                "signature_b64": proof,
            },
        )
        assert renewed.status_code == 200, renewed.text
        assert renewed.json()["config_keys"] == keys


@pytest.fixture
def seeded_db(tmp_path: Path) -> tuple[str, str]:
    from fleet_server.db import make_engine, make_sessionmaker
    from fleet_server.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    outlet = f"srv-{uuid.uuid4().hex[:8]}"
    engine = make_engine(url)
    upgrade(engine)
    with make_sessionmaker(engine).begin() as session:
        add_outlet(session, outlet, region="3301")
        set_scope(session, "region:33", {"log_level": "WARNING"})
    engine.dispose()
    return url, outlet


def test_a_real_server_publishes_at_start_and_says_so_in_metrics(
    key: Path, seeded_db: tuple[str, str], broker: Mosquitto, tmp_path: Path
) -> None:
    url, outlet = seeded_db
    server = FleetServer(
        mqtt_url=broker.url, database_url=url, workdir=tmp_path,
        GOVEDGE_CONFIG_SIGNING_KEY=str(key),
    )  # fmt: skip
    server.start()
    try:
        watcher = ConfigWatcher(broker.url, [outlet])
        try:
            ((topic, payload, _),) = watcher.take(1)
            keys = dict(load_config_keys(Settings(config_signing_key=key)).public)
            _, version, config = verified(topic, payload, keys)
            assert (version, config.log_level) == (1, "WARNING")
        finally:
            watcher.close()
        metrics = poll(
            lambda: (
                (text := server.http.get("/metrics").text)
                and "govedge_config_published_total 1.0" in text
                and text
            ),
            what="published in /metrics",
        )
        assert "govedge_config_signing_key 1.0" in metrics
        assert "govedge_config_outlets_drifting 1.0" in metrics
    finally:
        assert server.stop() == 0, server.stderr()


def test_without_a_key_the_server_runs_warns_and_publishes_nothing(
    seeded_db: tuple[str, str], broker: Mosquitto, tmp_path: Path
) -> None:
    url, _ = seeded_db
    env = {k: v for k, v in os.environ.items() if k != "GOVEDGE_CONFIG_SIGNING_KEY"}
    server = FleetServer(mqtt_url=broker.url, database_url=url, workdir=tmp_path)
    server.env = env
    server.start()
    try:
        assert "govedge_config_signing_key 0.0" in server.http.get("/metrics").text
        assert "no config signing key" in server.stderr()
    finally:
        assert server.stop() == 0, server.stderr()


def test_run_refuses_a_key_readable_by_others(
    key: Path, seeded_db: tuple[str, str], broker: Mosquitto, tmp_path: Path
) -> None:
    import subprocess
    import sys

    key.chmod(0o644)
    url, _ = seeded_db
    done = subprocess.run(
        [sys.executable, "-m", "fleet_server", "run", "--mqtt-url", broker.url,
         "--database-url", url, "--listen", "127.0.0.1:0"],
        env={**os.environ, "GOVEDGE_CONFIG_SIGNING_KEY": str(key)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "readable by group or others" in done.stderr


def test_config_changed_wakes_the_reconciler_of_a_running_app(
    key: Path, tmp_path: Path, broker: Mosquitto
) -> None:
    outlet = f"wake-{uuid.uuid4().hex[:8]}"
    with running_api(tmp_path, mqtt_url=broker.url, config_signing_key=key) as api:
        stats = api.client.app.state.metrics.sources.config  # type: ignore[attr-defined]
        poll(lambda: stats.snapshot().passes >= 1, what="the first pass, at start")
        with api.session() as session, session.begin():
            add_outlet(session, outlet, region="3301")
            set_scope(session, "global", {"log_level": "ERROR"})
        # The API's store calls this after its commit; the interval (60 s) is far off.
        api.client.app.state.fleet.config_changed()  # type: ignore[attr-defined]
        watcher = ConfigWatcher(broker.url, [outlet])
        try:
            ((topic, payload, _),) = watcher.take(1)
            keys = dict(load_config_keys(Settings(config_signing_key=key)).public)
            _, version, config = verified(topic, payload, keys)
            assert (version, config.log_level) == (1, "ERROR")
        finally:
            watcher.close()
