"""Fuzzing through the real broker: malformed uplinks of every ingested kind, published on
a real Mosquitto, consumed by a real ``fleet-server run`` process.

Smaller than the in-process run (``test_fuzz_ingest.py``, 10,000 per kind); what it adds
is the whole path: paho's decoding in the server, the ingest queue and batcher, the
rate limiter, the acks going back out. Afterwards the process must be alive, the
probes fine, ``govedge_ingest_rejected`` risen by reason (and never
``internal_error``), every API GET free of 500s, and a well-formed birth and
transaction sent afterwards still ingested (the transaction acked ``accepted``).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from govedge_testbed import Mosquitto
from govedge_wire import Kind, topic_for
from tests.e2e.conftest import Server, poll, start_server, stop_process
from tests.security.fuzzkit import ALL_KINDS, HOSTILE, OUTLET, malformed, template, topic_of
from tests.security.opsviews import Answers
from tests.security.sniffer import Sniffer

# GOVEDGE_BROKER_FUZZ_EXAMPLES changes the count per kind (default 150: 1,200 messages).
EXAMPLES = int(os.environ.get("GOVEDGE_BROKER_FUZZ_EXAMPLES", "150"))
BIRTH_EVERY = 25  # a valid birth now and then keeps the outlet online and its session known
REJECTED = re.compile(r'^govedge_ingest_rejected_total\{reason="([^"]+)"\} ([0-9.e+]+)$', re.M)
RECEIVED = re.compile(r"^govedge_ingest_received_total ([0-9.e+]+)$", re.M)


def _generate(kind: str) -> list[tuple[str, bytes]]:
    """``EXAMPLES`` malformed (topic, payload) pairs of ``kind``, drawn by hypothesis."""
    drawn: list[tuple[str, bytes]] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(malformed(kind))
    def draw(pair: tuple[str, bytes]) -> None:
        drawn.append(pair)

    draw()
    return drawn


def _metrics(server: Server) -> tuple[float, Counter[str]]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    received = RECEIVED.search(text)
    rejected: Counter[str] = Counter()
    for reason, value in REJECTED.findall(text):
        rejected[reason] = int(float(value))
    return (float(received.group(1)) if received else 0.0), rejected


@pytest.fixture
def server(private_broker: Mosquitto, tmp_path: Path) -> Iterator[Server]:
    running = start_server(
        private_broker.url,
        f"sqlite:///{tmp_path / 'fleet.db'}",
        tmp_path / "server.log",
        env={
            # The per-outlet limiter would turn most of the flood into "rate_limited";
            # here every payload should reach the checks.
            "GOVEDGE_INGEST_OUTLET_RATE_PER_S": "100000",
            "GOVEDGE_INGEST_OUTLET_BURST": "100000",
            "GOVEDGE_INGEST_PRESENCE_RATE_PER_S": "100000",
            "GOVEDGE_INGEST_PRESENCE_BURST": "100000",
        },
    )
    yield running
    stop_process(running.proc)


@pytest.mark.timeout(120)
def test_malformed_uplinks_through_the_broker(
    private_broker: Mosquitto, server: Server, tmp_path: Path
) -> None:
    acks = Sniffer(private_broker.port, topic=topic_for(OUTLET, Kind.TRANSACTION_ACK))
    publisher = Sniffer(private_broker.port, topic=f"test/{OUTLET}/nothing")
    try:
        received_before, rejected_before = _metrics(server)
        published = 0

        def send(topic: str, payload: bytes) -> None:
            nonlocal published
            publisher.publish(topic, payload)
            published += 1

        def birth(session: int) -> bytes:
            return json.dumps(template("birth", seq=0) | {"session": session}).encode()

        send(topic_of("birth"), birth(1))
        for kind in ALL_KINDS:
            for n, (topic, payload) in enumerate(_generate(kind)):
                if n % BIRTH_EVERY == 0:
                    send(topic_of("birth"), birth(1))
                send(topic, payload)
        # Hypothesis draws non-object JSON only now and then (one CI run drew none in
        # 1,200): one of each per kind makes the "not_object" check below deterministic.
        for kind in ALL_KINDS:
            for value in (None, 7, "text", [], [{"kind": kind}]):
                send(topic_of(kind), json.dumps(value).encode())
        # Kinds and outlets the server does not serve, on topics it subscribes to.
        for topic in (f"govedge/v1/{OUTLET}/up/nonsense", "govedge/v1/_fleet/up/birth",
                      "govedge/v1/bad%20id/up/event"):  # fmt: skip
            for value in HOSTILE[:5]:
                send(topic, json.dumps(value).encode())

        def consumed() -> bool:
            return _metrics(server)[0] - received_before >= published

        poll(consumed, timeout=60, interval=0.5)
        assert server.proc.poll() is None, "the fleet server died"
        for probe in ("/healthz", "/readyz"):
            assert httpx.get(f"{server.url}{probe}", timeout=10).status_code == httpx.codes.OK

        _, rejected_after = _metrics(server)
        rose = rejected_after - rejected_before
        print(f"published {published}; rejected by reason: {dict(sorted(rose.items()))}")
        assert "internal_error" not in rejected_after, rejected_after
        for reason in ("not_json", "not_object", "invalid"):
            assert rose[reason] > 0, rose
        assert rose["kind_mismatch"] + rose["outlet_mismatch"] > 0, rose
        assert sum(rose.values()) > published // 2, rose  # most of the flood was refused

        answers = Answers()
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as op:
            answers.read_api(op, {"outlet_id": OUTLET, "tx_id": "tx-fuzz-0001"})
        assert not answers.server_errors(), answers.server_errors()
        assert answers.statuses[f"GET /api/v1/outlets/{OUTLET}"] == httpx.codes.OK

        # A well-formed birth (a new session) and transaction afterwards are still ingested.
        send(topic_of("birth"), birth(2))
        poll(lambda: server.state(OUTLET) == "online", timeout=20, interval=0.2)
        good = template("submission", seq=1) | {"session": 2, "tx_id": "tx-after-the-fuzz"}
        good["body"]["materials"] = []  # none sent as chunks before it, so none referenced
        send(topic_of("submission"), json.dumps(good).encode())

        def acked() -> dict[str, object] | None:
            for _topic, payload in acks.snapshot():
                ack = json.loads(payload)
                if ack.get("tx_id") == "tx-after-the-fuzz":
                    return dict(ack)
            return None

        ack = poll(acked, timeout=20, interval=0.2)
        assert ack["status"] == "accepted", json.dumps(ack, ensure_ascii=False)
        stored = httpx.get(
            f"{server.url}/api/v1/outlets/{OUTLET}/transactions/tx-after-the-fuzz",
            headers=server.headers,
            timeout=10,
        )
        assert stored.status_code == httpx.codes.OK, stored.text
        assert server.proc.poll() is None
    finally:
        publisher.close()
        acks.close()
