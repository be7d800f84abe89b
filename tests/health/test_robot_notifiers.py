"""Alert notifications to DingTalk and WeCom robots: real local receivers that check the
messages as the robots' documentation says (tests/health/robot_receivers.py), the real
notifier with its retries, and the real server configured through its settings."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet_server.alerts.notify import WebhookNotifier
from fleet_server.alerts.robots import DingTalkRobot, WeComRobot
from govedge_testbed import Mosquitto
from tests.health.robot_receivers import RobotReceiver
from tests.server.helpers import FakeAgent, FleetServer, poll

TOKEN = "robot-token-5f1c9e0b"
SECRET = "SECa1b2c3d4e5f60718293a4b5c6d7e8f9"
WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
# What a careless rule might one day put into an alert's detail: never in a chat group.
ID_NUMBER = "11010519491231002X"
PAYLOAD: dict[str, Any] = {
    "event": "opened", "id": 42, "rule": "rectification_overdue", "outlet_id": "town-7",
    "device_id": None, "severity": "warning", "state": "open",
    "summary": "outlet town-7: 2 差评 rectifications overdue", "value": 2.0,
    "detail": {"citizen": "张三", "id_number": ID_NUMBER, "mobile": "13800138000"},
    "opened_at": "2026-12-09T03:00:00+00:00", "updated_at": "2026-12-09T03:00:00+00:00",
    "resolved_at": None, "acked_at": None, "acked_by": None, "silenced_until": None,
}  # fmt: skip


@pytest.fixture
def dingtalk() -> Iterator[RobotReceiver]:
    receiver = RobotReceiver("dingtalk", token=TOKEN, secret=SECRET)
    yield receiver
    receiver.close()


@pytest.fixture
def wecom() -> Iterator[RobotReceiver]:
    receiver = RobotReceiver("wecom", token=WECOM_KEY)
    yield receiver
    receiver.close()


def _notifier(*robots: Any, retries: int = 5) -> WebhookNotifier:
    notifier = WebhookNotifier([], robots=list(robots), retries=retries, backoff_s=0.05)
    notifier.start()
    return notifier


def test_dingtalk_gets_a_signed_markdown_message_without_the_detail(
    dingtalk: RobotReceiver,
) -> None:
    notifier = _notifier(DingTalkRobot(dingtalk.url, SECRET))
    try:
        notifier.notify(PAYLOAD)
        poll(lambda: dingtalk.received, what="DingTalk took the message")
    finally:
        notifier.stop()
    assert dingtalk.refused == []  # the receiver verified the signature
    ((message),) = dingtalk.received
    assert message["msgtype"] == "markdown"
    title, text = message["markdown"]["title"], message["markdown"]["text"]
    assert "rectification_overdue" in title
    assert "warning" in title
    for shown in ("town-7", "2 差评 rectifications overdue", "42", "2026-12-09T03:00:00"):
        assert shown in text
    for hidden in (ID_NUMBER, "张三", "13800138000"):
        assert hidden not in json.dumps(message, ensure_ascii=False)
    assert notifier.sent == 1


def test_dingtalk_refuses_a_wrong_secret_and_the_notifier_gives_up_quietly(
    dingtalk: RobotReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    # The server's own lines; the entry point keeps httpx's request lines out and
    # redacts URLs in every line (the last test reads a real server's log for that).
    caplog.set_level(logging.DEBUG, logger="fleet_server")
    wrong = "SECwrong0000000000000000000000000"
    notifier = _notifier(DingTalkRobot(dingtalk.url, wrong), retries=2)
    try:
        notifier.notify(PAYLOAD)
        poll(lambda: notifier.failed == 1, what="dropped after its retries")
    finally:
        notifier.stop()
    assert dingtalk.refused == [310000] * 3
    assert (notifier.retried, notifier.sent, dingtalk.received) == (2, 0, [])
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("fleet_"))
    assert "alert webhook http://127.0.0.1:" in logged
    assert "refused in the answer" in logged
    signs = {q["sign"][0] for q in dingtalk.queries}
    for secret in (TOKEN, wrong, *signs):
        assert secret not in logged


def test_an_unsigned_dingtalk_robot_gets_no_signature(dingtalk: RobotReceiver) -> None:
    unsigned = RobotReceiver("dingtalk", token=TOKEN)
    notifier = _notifier(DingTalkRobot(unsigned.url))
    try:
        notifier.notify(PAYLOAD)
        poll(lambda: unsigned.received, what="message")
    finally:
        notifier.stop()
        unsigned.close()
    assert "sign" not in unsigned.queries[0]
    assert "timestamp" not in unsigned.queries[0]


def test_wecom_gets_markdown_after_its_server_recovers(wecom: RobotReceiver) -> None:
    wecom.fail_next = 2
    notifier = _notifier(WeComRobot(wecom.url))
    try:
        notifier.notify(PAYLOAD)
        poll(lambda: wecom.received, what="WeCom took the message")
    finally:
        notifier.stop()
    assert (wecom.attempts, notifier.retried, notifier.sent) == (3, 2, 1)
    ((message),) = wecom.received
    assert message["msgtype"] == "markdown"
    content = message["markdown"]["content"]
    assert "town-7" in content
    assert "rectification_overdue" in content
    assert ID_NUMBER not in content
    assert len(content.encode()) <= 4096


def test_a_wrong_wecom_key_is_a_failure_not_a_success(wecom: RobotReceiver) -> None:
    wrong = wecom.url.replace(WECOM_KEY, "not-the-key")
    notifier = _notifier(WeComRobot(wrong), retries=1)
    try:
        notifier.notify(PAYLOAD)
        poll(lambda: notifier.failed == 1, what="dropped")
    finally:
        notifier.stop()
    assert (wecom.refused, notifier.sent) == ([93000, 93000], 0)


def test_the_server_notifies_both_robots_from_its_settings(
    broker: Mosquitto, tmp_path: Path, outlet_id: str,
    dingtalk: RobotReceiver, wecom: RobotReceiver,
) -> None:  # fmt: skip
    server = FleetServer(
        mqtt_url=broker.url, database_url=f"sqlite:///{tmp_path / 'fleet.db'}", workdir=tmp_path,
        GOVEDGE_API_AUTH="off", GOVEDGE_PKI_DIR=str(tmp_path / "pki"), GOVEDGE_LOG_LEVEL="DEBUG",
        GOVEDGE_ALERT_EVAL_INTERVAL_S="0.2", GOVEDGE_ALERT_WEBHOOK_BACKOFF_S="0.1",
        GOVEDGE_ALERT_DINGTALK=json.dumps([{"url": dingtalk.url, "secret": SECRET}]),
        GOVEDGE_ALERT_WECOM=json.dumps([wecom.url]),
    )  # fmt: skip
    server.start()
    agent = FakeAgent(broker.url, outlet_id, session=3)
    try:
        wecom.fail_next = 1
        agent.birth()
        server.wait_state(outlet_id, "online")
        agent.telemetry(disk_used_percent=97.5)
        for robot in (dingtalk, wecom):
            poll(lambda r=robot: r.received, what=f"{robot.kind} alerted")  # type: ignore[misc]
        assert dingtalk.refused == []
        assert wecom.refused == []
        assert outlet_id in dingtalk.received[0]["markdown"]["text"]
        assert "disk_almost_full" in wecom.received[0]["markdown"]["content"]
        agent.telemetry(disk_used_percent=40.0)
        poll(lambda: len(dingtalk.received) == 2, what="the resolution too")
        assert "resolved" in dingtalk.received[1]["markdown"]["text"]
        metrics = server.http.get("/metrics").text
        assert re.search(r'govedge_alert_webhooks_total\{outcome="retried"\} [1-9]', metrics)
    finally:
        agent.close()
        assert server.stop() == 0, server.stderr()
    logged = server.stderr()
    for secret in (TOKEN, SECRET, WECOM_KEY):
        assert secret not in logged
