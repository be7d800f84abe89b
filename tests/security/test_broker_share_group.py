"""Several fleet-server workers on one share group, on the generated TLS listener and ACL
(docs/deploy.md, "One Mosquitto"): the ACL's server lines admit the ``$share/…``
subscription and each uplink reaches exactly one worker. An outlet's key holder may not
join the group: the generated config's share guard plugin refuses the SUBSCRIBE (on
Mosquitto 2.0.11 a member the ACL refuses deliveries to would lose the messages handed
to it; docs/security.md, "Shared subscriptions").
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fleet_server.pki import FleetCA
from fleet_server.pki.ca import SERVER_CLIENT_CN
from fleet_server.share_guard import SHARE_GUARD_FILE
from govedge_wire import Kind, topic_for
from tests.security.conftest import ClientFiles, TlsClient, issue_outlet, server_files

MakeClient = Callable[[ClientFiles], TlsClient]
SHARED = "$share/fleet/govedge/v1/+/up/+"
COUNT = 20
NOT_AUTHORIZED = 135  # MQTT 5 SUBACK reason code


def drain(client: TlsClient, *, wait: float = 1.0) -> list[bytes]:
    got: list[bytes] = []
    while True:
        try:
            got.append(bytes(client.messages.get(timeout=wait).payload))
        except queue.Empty:
            return got


def test_workers_share_the_uplink_on_the_tls_listener(
    fleet_ca: FleetCA, tls_client: MakeClient, tmp_path: Path
) -> None:
    workers = [tls_client(server_files(fleet_ca)) for _ in range(2)]
    for worker in workers:
        assert worker.subscribe(SHARED) == [1]
    outlet = tls_client(issue_outlet(fleet_ca, "outlet-a", tmp_path / "a"))
    sent = [f"t{n}".encode() for n in range(COUNT)]
    for payload in sent:
        assert outlet.publish(topic_for("outlet-a", Kind.TELEMETRY), payload) == 0
    received = [drain(worker, wait=3.0) for worker in workers]
    # Every message to exactly one worker, and the broker spread them over both.
    assert sorted(received[0] + received[1]) == sorted(sent)
    assert received[0]
    assert received[1]


def _thief_and_victim(
    fleet_ca: FleetCA, tls_client: MakeClient, tmp_path: Path, *, group: str, guess: str
) -> tuple[list[int], list[bytes], list[bytes], list[bytes]]:
    """A worker on ``group``, an outlet's key holder trying to join ``guess``: the
    thief's SUBSCRIBE answer, what each received of another outlet's uplink, and what
    was sent."""
    worker = tls_client(server_files(fleet_ca))
    assert worker.subscribe(f"$share/{group}/govedge/v1/+/up/+") == [1]
    thief = tls_client(issue_outlet(fleet_ca, "outlet-t", tmp_path / "t"))
    answer = thief.subscribe(f"$share/{guess}/govedge/v1/+/up/+")
    victim = tls_client(issue_outlet(fleet_ca, "outlet-v", tmp_path / "v"))
    sent = [f"v{n}".encode() for n in range(COUNT)]
    for payload in sent:
        assert victim.publish(topic_for("outlet-v", Kind.TELEMETRY), payload) == 0
    return answer, drain(thief, wait=3.0), drain(worker), sent


@pytest.mark.parametrize("group", ["fleet", "fleet-7f3a9c2e41d8b605"])
def test_an_outlet_may_not_join_the_workers_share_group(
    fleet_ca: FleetCA, tls_client: MakeClient, tmp_path: Path, group: str
) -> None:
    """Known or secret, the group's name does not matter: the broker refuses the
    outlet's SUBSCRIBE, so the workers get every message."""
    answer, stolen, delivered, sent = _thief_and_victim(
        fleet_ca, tls_client, tmp_path, group=group, guess=group
    )
    assert answer == [NOT_AUTHORIZED]
    assert stolen == []
    assert sorted(delivered) == sorted(sent)


def test_the_generated_config_loads_the_share_guard(secure_broker: object, tmp_path: Path) -> None:
    """What `fleet-server broker-config` writes for production carries the plugin line
    and the one identity allowed to share (the server's certificate CN)."""
    conf = (tmp_path / "broker" / "mosquitto.conf").read_text()
    assert f"plugin {tmp_path / 'broker' / SHARE_GUARD_FILE}" in conf
    assert f"plugin_opt_share_user {SERVER_CLIENT_CN}" in conf


def test_without_a_compiler_broker_config_warns_and_says_what_is_missing(
    tmp_path: Path,
) -> None:
    """A broker host without gcc: the config is still written (the broker starts), and
    the operator is told the share group is open and what to install."""
    fleet_server = Path(sys.executable).parent / "fleet-server"
    written = subprocess.run(
        [str(fleet_server), "broker-config", "--pki-dir", str(tmp_path / "pki"),
         "--out", str(tmp_path / "broker")],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PATH": str(tmp_path / "no-compilers-here")},
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    assert "share guard not built (no C compiler (install gcc))" in written.stderr
    assert "GOVEDGE_MQTT_SHARE_GROUP secret" in written.stderr
    conf = (tmp_path / "broker" / "mosquitto.conf").read_text()
    assert SHARE_GUARD_FILE not in conf
    assert not (tmp_path / "broker" / SHARE_GUARD_FILE).exists()
