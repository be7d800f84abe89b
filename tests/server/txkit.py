"""Transaction test kit: targets files, catalogue rows, bodies, and a tx-sending agent."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge_agent.outbox.codec import chunk_body, chunk_tx_id
from fleet_server.transactions.identity import upstream_idempotency_key
from govedge_testbed import Mosquitto
from govedge_testbed.upstream import Upstream, catalogue_rows, write_targets
from govedge_wire import Transaction, TransactionAck, TransactionResult, decode, now_ms
from tests.server.helpers import FakeAgent, FleetServer, Subscriber

# The upstream targets a fleet server delivering submissions and 好差评 routes to.
SUBMISSION_AND_RATING_TARGETS = ["zhoushan", "hcp"]

# A valid GB 11643 number (the check digit agrees), of nobody.
ID_NUMBER = "330106199001011248"


@contextmanager
def serving_upstream() -> Iterator[Upstream]:
    """A started ``Upstream``, stopped at the end."""
    fake = Upstream()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@contextmanager
def transaction_server(
    mqtt_url: str, upstream: Upstream, workdir: Path, targets: list[str], **env: str
) -> Iterator[FleetServer]:
    """A ``fleet-server`` process routing to ``targets`` of ``upstream`` (the test
    catalogue's rows for those targets imported), API auth off; must exit 0."""
    targets_file = write_targets(workdir / "targets.json", upstream, targets)
    fleet = FleetServer(
        mqtt_url=mqtt_url,
        database_url=f"sqlite:///{workdir / 'fleet.db'}",
        workdir=workdir,
        GOVEDGE_API_AUTH="off",  # security is tested in its own modules
        GOVEDGE_UPSTREAM_TARGETS_FILE=str(targets_file),
        GOVEDGE_DELIVERY_POLL_INTERVAL_S="0.1",
        **env,
    )
    fleet.start()
    try:
        rows = [row for row in catalogue_rows() if row["target"] in targets]
        response = fleet.http.post(
            "/api/v1/catalogue/import",
            content=json.dumps(rows),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 200, response.text
        yield fleet
    finally:
        assert fleet.stop() == 0, fleet.stderr()


def submission(item_code: str = "000101", region: str = "330902", **extra: Any) -> dict[str, Any]:
    return {
        "item_code": item_code,
        "region_code": region,
        "applicant": {"name": "张三丰", "id_number": ID_NUMBER},
        "window": "W3",
        "clerk": "clerk-7",
    } | extra


def material_chunks(
    data: bytes, material_id: str, *, chunk_bytes: int = 1000
) -> list[tuple[str, dict[str, Any]]]:
    """``(tx_id, body)`` of each ``material.chunk`` of ``data``, encoded by the outlet's
    own codec (``edge_agent.outbox.codec``)."""
    count = -(-len(data) // chunk_bytes)
    whole = hashlib.sha256(data).hexdigest()
    return [
        (
            chunk_tx_id(material_id, index),
            chunk_body(
                data[index * chunk_bytes : (index + 1) * chunk_bytes], material_id=material_id,
                index=index, count=count, size=len(data), sha256=whole,
            ),
        )
        for index in range(count)
    ]  # fmt: skip


def evaluation(level_code: int, *, channel: str = "4", window: str = "W3") -> dict[str, Any]:
    return {
        "level_code": level_code,
        "channel": channel,
        "window": window,
        "evaluated_ts": now_ms(),
        "tags": ["态度好"],
        "case_number": "C-1",
    }


class TxAgent(FakeAgent):
    """A fake agent that also sends transactions and reads its downlink."""

    def __init__(self, mqtt_url: str, outlet_id: str, *, session: int = 1) -> None:
        super().__init__(mqtt_url, outlet_id, session=session)
        self.down = Subscriber(mqtt_url, f"govedge/v1/{outlet_id}/down/+")
        self.seen: list[Any] = []

    def tx(
        self,
        tx_kind: str,
        body: dict[str, Any],
        *,
        tx_id: str | None = None,
        batch_ack: bool = False,
    ) -> str:
        tx_id = tx_id or uuid.uuid4().hex
        self.send(
            Transaction(
                outlet_id=self.outlet_id, session=self.session, seq=self._next(),
                tx_id=tx_id, tx_kind=tx_kind, created_ts=now_ms(), body=body,
                batch_ack=batch_ack,
            )
        )  # fmt: skip
        return tx_id

    def key(self, tx_id: str) -> str:
        """The ``Idempotency-Key`` upstream sees for this outlet's ``tx_id``."""
        return upstream_idempotency_key(self.outlet_id, tx_id)

    def path(self, tx_id: str) -> str:
        """The fleet API path of this outlet's transaction ``tx_id``."""
        return f"/api/v1/outlets/{self.outlet_id}/transactions/{tx_id}"

    def next_down(self, kind: type[Any], *, tx_id: str, timeout: float = 15.0) -> Any:
        import queue
        import time

        for earlier in self.seen:
            if isinstance(earlier, kind) and getattr(earlier, "tx_id", None) == tx_id:
                self.seen.remove(earlier)
                return earlier
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind.__name__} for {tx_id}")
            try:
                message: mqtt.MQTTMessage = self.down.get(timeout=remaining)
            except queue.Empty:
                continue
            decoded = decode(message.topic, bytes(message.payload))
            if isinstance(decoded, kind) and getattr(decoded, "tx_id", None) == tx_id:
                return decoded
            self.seen.append(decoded)

    def ack(self, tx_id: str, *, timeout: float = 15.0) -> TransactionAck:
        result: TransactionAck = self.next_down(TransactionAck, tx_id=tx_id, timeout=timeout)
        return result

    def result(self, tx_id: str, *, timeout: float = 20.0) -> TransactionResult:
        found: TransactionResult = self.next_down(TransactionResult, tx_id=tx_id, timeout=timeout)
        return found

    def close(self) -> None:
        self.down.close()
        super().close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """The recording upstream, for tests that import this fixture."""
    with serving_upstream() as fake:
        yield fake


@pytest.fixture
def delivering_fleet(
    broker: Mosquitto, upstream: Upstream, tmp_path: Path
) -> Iterator[FleetServer]:
    """A fleet server on the session broker delivering submissions (zhoushan) and
    evaluations (hcp) to ``upstream``."""
    (tmp_path / "server").mkdir()
    with transaction_server(
        broker.url, upstream, tmp_path / "server", SUBMISSION_AND_RATING_TARGETS
    ) as fleet:
        yield fleet
