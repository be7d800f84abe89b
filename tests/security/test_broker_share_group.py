"""Several fleet-server workers on one share group, on the generated TLS listener and ACL
(docs/deploy.md, "One Mosquitto"): the ACL's server lines admit the ``$share/…``
subscription and each uplink reaches exactly one worker. An outlet's key holder who
joins the group gets nothing (the ACL), but on Mosquitto 2.0.11 the messages handed to
it are lost to the workers: the group's name must be a secret.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from pathlib import Path

import pytest

from fleet_server.pki import FleetCA
from govedge_wire import Kind, topic_for
from tests.security.conftest import ClientFiles, TlsClient, issue_outlet, server_files

MakeClient = Callable[[ClientFiles], TlsClient]
SHARED = "$share/fleet/govedge/v1/+/up/+"
COUNT = 20


def drain(client: TlsClient, *, wait: float = 1.0) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(client.messages.get(timeout=wait).payload)
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
) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """A worker on ``group``, an outlet's key holder on ``guess``; what each received of
    another outlet's uplink, and what was sent."""
    worker = tls_client(server_files(fleet_ca))
    assert worker.subscribe(f"$share/{group}/govedge/v1/+/up/+") == [1]
    thief = tls_client(issue_outlet(fleet_ca, "outlet-t", tmp_path / "t"))
    thief.subscribe(f"$share/{guess}/govedge/v1/+/up/+")  # Mosquitto 2.0 grants it
    victim = tls_client(issue_outlet(fleet_ca, "outlet-v", tmp_path / "v"))
    sent = [f"v{n}".encode() for n in range(COUNT)]
    for payload in sent:
        assert victim.publish(topic_for("outlet-v", Kind.TELEMETRY), payload) == 0
    return drain(thief, wait=3.0), drain(worker), sent


@pytest.mark.xfail(
    strict=True,
    reason="Mosquitto 2.0.11 counts an outlet that joined the server's share group as a "
    "member: the messages it is handed are refused by the ACL and lost, not given to a "
    "worker. A secret group name is the mitigation (docs/deploy.md).",
)
def test_an_outlet_joining_a_known_share_group_takes_nothing(
    fleet_ca: FleetCA, tls_client: MakeClient, tmp_path: Path
) -> None:
    stolen, delivered, sent = _thief_and_victim(
        fleet_ca, tls_client, tmp_path, group="fleet", guess="fleet"
    )
    assert stolen == []  # holds: the ACL refuses the delivery
    assert sorted(delivered) == sorted(sent)  # fails: about half are lost


def test_with_a_secret_group_name_an_outlet_guessing_takes_nothing(
    fleet_ca: FleetCA, tls_client: MakeClient, tmp_path: Path
) -> None:
    stolen, delivered, sent = _thief_and_victim(
        fleet_ca, tls_client, tmp_path, group="fleet-7f3a9c2e41d8b605", guess="fleet"
    )
    assert stolen == []
    assert sorted(delivered) == sorted(sent)
