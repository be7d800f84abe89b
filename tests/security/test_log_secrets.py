"""Webhook URLs carry tokens (DingTalk ``access_token``, WeCom ``key``): a real
``fleet-server run`` at DEBUG whose webhooks fail (an HTTP 500 and a refused connection)
logs the failures, naming the host, and never the token."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.logjson import JsonFormatter
from fleet_server.models import Agent, Outlet
from fleet_server.redact import redact_text
from govedge_testbed import Mosquitto, free_port
from tests.health.receiver import WebhookReceiver
from tests.server.helpers import FleetServer, poll

SECRET = "dt-0123456789abcdef0123456789abcdef"
URL = "https://oapi.dingtalk.com/robot/send"


def test_redact_text_keeps_host_and_path_drops_query_and_user() -> None:
    line = f"POST https://u:pw@oapi.dingtalk.com/robot/send?access_token={SECRET} failed"
    assert redact_text(line) == "POST https://***@oapi.dingtalk.com/robot/send?*** failed"


def test_json_log_lines_are_redacted() -> None:
    record = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        "HTTP Request: POST %s",
        (f"{URL}?access_token={SECRET}",),
        None,
    )
    assert SECRET not in JsonFormatter().format(record)


def test_failing_webhooks_never_log_their_token(broker: Mosquitto, tmp_path: Path) -> None:
    hook = WebhookReceiver()
    hook.fail_next = 1_000_000
    refused = f"http://127.0.0.1:{free_port()}/cgi-bin/webhook/send?key={SECRET}"
    database_url = f"sqlite:///{tmp_path / 'fleet.db'}"
    server = FleetServer(
        mqtt_url=broker.url, database_url=database_url, workdir=tmp_path,
        GOVEDGE_PKI_DIR=str(tmp_path / "pki"), GOVEDGE_PII_KEY_DIR=str(tmp_path / "pii"),
        GOVEDGE_LOG_LEVEL="DEBUG",
        GOVEDGE_ALERT_EVAL_INTERVAL_S="0.2",
        GOVEDGE_ALERT_WEBHOOKS=json.dumps([f"{hook.url}?access_token={SECRET}", refused]),
        GOVEDGE_ALERT_WEBHOOK_RETRIES="1", GOVEDGE_ALERT_WEBHOOK_BACKOFF_S="0.05",
    )  # fmt: skip
    engine = make_engine(database_url)
    try:
        server.start()
        since = datetime.now(UTC) - timedelta(hours=1)
        with make_sessionmaker(engine).begin() as session:  # offline for an hour: an alert
            session.add(Outlet(id="o-hook", display_name=None, created_at=since))
            session.add(
                Agent(outlet_id="o-hook", state="offline", state_since=since, session=1,
                      last_seq=0, last_seen=since, devices=[])
            )  # fmt: skip
        poll(
            lambda: server.stderr().count("alert webhook http://127.0.0.1:") >= 2,
            what="both webhook failures logged",
        )
        assert hook.attempts >= 2
    finally:
        assert server.stop() == 0, server.stderr()
        engine.dispose()
        hook.close()
    log = server.stderr_path.read_text(errors="replace")
    assert SECRET not in log
    assert "HTTP 500" in log
    assert "ConnectError" in log
