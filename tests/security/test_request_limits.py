"""Request bodies are refused by size before they are read, and the endpoints without an
operator token are rate-limited per address — against a real ``fleet-server run``
(uvicorn), with raw sockets for a chunked body that never ends."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from govedge_testbed import Mosquitto
from tests.rawhttp import RESET, endless_chunked
from tests.server.helpers import FleetServer


@pytest.fixture(scope="module")
def server(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetServer]:
    tmp = tmp_path_factory.mktemp("limits")
    fleet = FleetServer(
        mqtt_url=broker.url, database_url=f"sqlite:///{tmp / 'fleet.db'}", workdir=tmp,
        GOVEDGE_PKI_DIR=str(tmp / "pki"), GOVEDGE_PII_KEY_DIR=str(tmp / "pii"),
        GOVEDGE_OPEN_BURST="3", GOVEDGE_OPEN_RATE_PER_MIN="1",
    )  # fmt: skip
    fleet.start()
    yield fleet
    assert fleet.stop() == 0, fleet.stderr()


def _refused(server: FleetServer, reason: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    match = re.search(rf'^govedge_http_refused_total{{reason="{reason}"}} (\S+)$', text, re.M)
    assert match is not None, text[-2000:]
    return float(match.group(1))


def test_content_length_over_the_limit_is_refused_unread(server: FleetServer) -> None:
    before = _refused(server, "too_large")
    login = httpx.post(f"{server.url}/ui/login", content=b"username=" + b"a" * 5000)
    assert login.status_code == 413
    users = server.http.post("/api/v1/users", content=b"{" + b" " * (2 * 1024 * 1024) + b"}")
    assert users.status_code == 413
    assert _refused(server, "too_large") == before + 2
    # A catalogue file over the default but under its own limit is read (and judged).
    big = server.http.post(
        "/api/v1/catalogue/import?format=json", content=b"[" + b" " * (2 * 1024 * 1024) + b"]"
    )
    assert big.status_code != 413


@pytest.mark.parametrize(
    ("path", "source"),
    [("/api/v1/enroll", "127.0.0.4"), ("/ui/login", "127.0.0.5"), ("/api/v1/users", "127.0.0.1")],
)
def test_an_endless_chunked_body_is_cut_off(server: FleetServer, path: str, source: str) -> None:
    before = _refused(server, "too_large")
    answer = endless_chunked(server.port, path, source=source)
    assert answer.startswith(b"HTTP/1.1 413 ") or answer == RESET, answer[:200]
    assert _refused(server, "too_large") == before + 1
    assert server.ready()  # the server lives on


def _from(address: str, server: FleetServer) -> httpx.Client:
    """A client whose connections come from ``address`` (any of 127.0.0.0/8)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.url, transport=transport, timeout=10)


def test_unauthenticated_endpoints_are_rate_limited_per_address(server: FleetServer) -> None:
    before = _refused(server, "rate_limited")
    form = {"username": "nobody", "password": "wrong"}
    with _from("127.0.0.2", server) as guesser, _from("127.0.0.3", server) as other:
        answers = [guesser.post("/ui/login", data=form) for _ in range(4)]
        assert [a.status_code for a in answers[:3]] == [200, 200, 200]  # the form again
        assert answers[3].status_code == 429
        assert int(answers[3].headers["retry-after"]) >= 1
        # One bucket per address, shared by the open endpoints.
        enroll = guesser.post("/api/v1/enroll", json={"token": "x", "csr_pem": "y"})
        assert enroll.status_code == 429
        assert other.post("/ui/login", data=form).status_code == 200
    assert _refused(server, "rate_limited") == before + 2
    # Operators with a token are not limited by it.
    assert server.http.get("/api/v1/outlets").status_code == 200
