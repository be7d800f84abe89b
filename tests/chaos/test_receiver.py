"""The chaos upstream tells a request cut by a killed sender from a bad signature.

Cause of the "one bad HMAC signature in four chaos runs": httpx writes a request's
headers and its body with separate socket writes, so a fleet server SIGKILLed between
them (or mid-body) leaves the upstream a short body on a closed connection, and the
HMAC of a cut body never matches. That is no request at all (nobody is left to answer,
the server retries the transaction after its restart), so the receiver counts it as
``truncated``, not as a bad signature, and records nothing. A complete body with a wrong
signature is still a bad signature.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from fleet_server.routing.http_adapter import sign
from tests.chaos.receiver import ChaosUpstream

# A sender that dies the way a SIGKILLed fleet server does: headers and part of the body
# written, then the kernel closes its socket.
KILLED_SENDER = r"""
import os, signal, socket, sys
body = b'{"tx_id":"cut-0001","body":{"note":"' + b"x" * 200 + b'"}}'
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
head = (
    "POST /t/zhoushan HTTP/1.1\r\nHost: upstream\r\nContent-Type: application/json\r\n"
    f"Content-Length: {len(body)}\r\nIdempotency-Key: cut-0001\r\n"
    f"X-Govedge-Signature: {sys.argv[2]}\r\n\r\n"
)
sock.sendall(head.encode())
sock.sendall(body[: int(sys.argv[3])])
os.kill(os.getpid(), signal.SIGKILL)
"""
BODY = b'{"tx_id":"cut-0001","body":{"note":"' + b"x" * 200 + b'"}}'


@pytest.fixture
def upstream() -> Iterator[ChaosUpstream]:
    fake = ChaosUpstream()
    fake.start()
    yield fake
    fake.stop()


@pytest.mark.parametrize("mode", ["ok", "late"])
@pytest.mark.parametrize("sent", [0, 40])
def test_a_body_cut_by_a_killed_sender_is_truncated_not_a_bad_signature(
    upstream: ChaosUpstream, mode: str, sent: int
) -> None:
    upstream.set_mode(mode, hang_s=0.1)
    child = subprocess.run(
        [sys.executable, "-c", KILLED_SENDER, str(upstream.port),
         sign(upstream.secret, BODY), str(sent)],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr
    deadline = time.monotonic() + 10
    while upstream.truncated == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.truncated == 1
    assert upstream.bad_signatures == 0
    assert upstream.accepted == {}
    assert sum(upstream.received.values()) == 0


def test_a_complete_body_with_a_wrong_signature_is_a_bad_signature(
    upstream: ChaosUpstream,
) -> None:
    response = httpx.post(
        upstream.url("zhoushan"),
        content=BODY,
        headers={"Idempotency-Key": "forged-0001", "X-Govedge-Signature": "sha256=" + "0" * 64},
        timeout=10,
    )
    assert response.status_code == httpx.codes.OK
    assert upstream.bad_signatures == 1
    assert upstream.truncated == 0
    good = httpx.post(
        upstream.url("zhoushan"),
        content=BODY,
        headers={
            "Idempotency-Key": "signed-0001",
            "X-Govedge-Signature": sign(upstream.secret, BODY),
        },
        timeout=10,
    )
    assert good.status_code == httpx.codes.OK
    assert upstream.bad_signatures == 1
