"""After a revocation: make the broker reload its CRL, then end the outlet's open sessions.

The reload is a SIGHUP (``broker_pid_file``) or a command (``broker_reload_command``);
sessions end through the dynamic-security plugin's ``disableClient``, or by client-id
takeover on a broker without it. Why both steps: docs/security.md, "Revocation without a
broker restart".
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shlex
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from fleet_server.broker_config import DYNSEC_RESPONSE_TOPIC, DYNSEC_TOPIC
from fleet_server.pki import FleetCA
from fleet_server.settings import Settings
from govedge_wire import agent_client_id

__all__ = [
    "BrokerAction",
    "after_revocation",
    "disconnect_identity",
    "end_session",
    "reload_broker",
]

log = logging.getLogger(__name__)

_OUTPUT_TAIL: Final = 300


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerAction:
    """What the server did at the broker after a revocation."""

    reloaded: bool
    session_ended: bool
    detail: str


def reload_broker(settings: Settings) -> tuple[bool, str]:
    """Signal the broker to reload its CRL; ``(done, what happened)``. Never raises."""
    if settings.broker_pid_file is not None:
        return _signal_pid_file(settings.broker_pid_file)
    if settings.broker_reload_command:
        return _run_command(settings.broker_reload_command, settings.broker_reload_timeout_s)
    return False, "no broker reload configured (GOVEDGE_BROKER_PID_FILE or _RELOAD_COMMAND)"


def _signal_pid_file(path: Path) -> tuple[bool, str]:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError) as exc:
        return False, f"broker pid file {path} unreadable: {exc}"
    if pid <= 1:
        return False, f"broker pid file {path} holds no usable pid"
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        return False, f"could not signal broker pid {pid}: {exc}"
    return True, f"SIGHUP sent to broker pid {pid}"


def _run_command(command: str, timeout_s: float) -> tuple[bool, str]:
    try:
        done = subprocess.run(  # the operator's own configured command
            shlex.split(command),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return False, f"broker reload command failed: {exc}"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-_OUTPUT_TAIL:]
        return False, f"broker reload command exited {done.returncode}: {tail}"
    return True, f"broker reload command succeeded: {command}"


def _server_client(settings: Settings, client_id: str) -> mqtt.Client:
    broker = settings.broker
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
    )
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        files = FleetCA(settings.pki_dir).ensure_server_client()
        client.tls_set(
            ca_certs=str(files.ca_file), certfile=str(files.cert_file), keyfile=str(files.key_file)
        )
    return client


def disconnect_identity(settings: Settings, outlet_id: str) -> tuple[bool, str]:
    """Disconnect every connection of ``outlet_id``'s identity, any client id; never raises.

    Asks the broker's dynamic-security plugin to create (if absent) and disable the
    client whose username is the outlet id; Mosquitto then kicks every connection with
    that username. ``(False, why)`` when the plugin does not answer or refuses.
    """
    answers: queue.Queue[object] = queue.Queue()
    correlation = uuid.uuid4().hex
    client = _server_client(settings, f"{settings.server_id}-revoke-{correlation[:8]}")

    def on_connect(
        c: mqtt.Client, _u: object, _f: mqtt.ConnectFlags, reason: ReasonCode, _p: object
    ) -> None:
        if reason.is_failure:
            answers.put(f"broker refused the control connection: {reason}")
            return
        c.subscribe(DYNSEC_RESPONSE_TOPIC, qos=1)

    def on_subscribe(
        c: mqtt.Client, _u: object, _m: int, codes: list[ReasonCode], _p: object
    ) -> None:
        if any(code.is_failure for code in codes):
            answers.put(f"control response subscription refused: {codes}")
            return
        commands = [
            {"command": "createClient", "username": outlet_id, "correlationData": correlation},
            {"command": "disableClient", "username": outlet_id, "correlationData": correlation},
        ]
        c.publish(DYNSEC_TOPIC, json.dumps({"commands": commands}), qos=1)

    def on_publish(_c: mqtt.Client, _u: object, _m: int, reason: ReasonCode, _p: object) -> None:
        if reason.is_failure:
            answers.put(f"control command refused by the broker: {reason}")

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(message.payload)
            responses = [r for r in body["responses"] if r.get("correlationData") == correlation]
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        if responses:
            answers.put(responses)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_publish = on_publish
    client.on_message = on_message
    timeout = settings.broker_reload_timeout_s
    broker = settings.broker
    try:
        client.connect(broker.host, broker.port, keepalive=max(5, int(timeout)), clean_start=True)
        client.loop_start()
        try:
            answer = answers.get(timeout=timeout)
        except queue.Empty:
            return False, f"no dynamic-security answer within {timeout} s (plugin not loaded?)"
        finally:
            client.disconnect()
    except OSError as exc:
        return False, f"could not reach the broker: {exc}"
    finally:
        client.loop_stop()
    if isinstance(answer, str):
        return False, answer
    assert isinstance(answer, list)
    disabled = [r for r in answer if r.get("command") == "disableClient"]
    if not disabled or disabled[0].get("error"):
        error = disabled[0].get("error") if disabled else "no disableClient answer"
        return False, f"dynamic security refused disableClient: {error}"
    return True, f"identity {outlet_id} disabled at the broker: every connection of it closed"


def end_session(settings: Settings, outlet_id: str) -> tuple[bool, str]:
    """Close the outlet's open MQTT connection by taking its client id over; never raises.

    Connects as the server's own identity with a clean start and no session expiry, so
    nothing is left behind at the broker, and disconnects at once.
    """
    broker = settings.broker
    connected: queue.Queue[ReasonCode] = queue.Queue()
    client = _server_client(settings, agent_client_id(outlet_id))

    def on_connect(
        _c: mqtt.Client,
        _u: object,
        _f: mqtt.ConnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        connected.put(reason)

    client.on_connect = on_connect
    timeout = settings.broker_reload_timeout_s
    try:
        client.connect(broker.host, broker.port, keepalive=max(5, int(timeout)), clean_start=True)
        client.loop_start()
        try:
            reason = connected.get(timeout=timeout)
        except queue.Empty:
            return False, f"no CONNACK within {timeout} s"
        if reason.is_failure:
            return False, f"broker refused the takeover connection: {reason}"
        rc = client.disconnect()
        # The CONNACK already means the broker closed the old connection; a client that
        # reconnects at once takes the id back and closes ours first (NO_CONN), which is
        # the revoked agent trying again: the CRL refuses it after a reload.
        if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            return False, f"disconnect failed: {mqtt.error_string(rc)}"
        return True, f"session {agent_client_id(outlet_id)} taken over and closed"
    except OSError as exc:
        return False, f"could not reach the broker: {exc}"
    finally:
        client.loop_stop()


def after_revocation(settings: Settings, outlet_id: str) -> BrokerAction:
    """Reload the broker's CRL and, once reloaded, end the outlet's open sessions.

    Every connection of the identity through the dynamic-security plugin; failing that,
    the agent's own client id by takeover (the detail says which, and why).
    """
    reloaded, how = reload_broker(settings)
    if not reloaded:
        log.warning("revoked %s; broker not reloaded: %s", outlet_id, how)
        return BrokerAction(reloaded=False, session_ended=False, detail=how)
    ended, what = disconnect_identity(settings, outlet_id)
    if not ended:
        log.warning("revoked %s: %s; falling back to client-id takeover", outlet_id, what)
        ended, taken = end_session(settings, outlet_id)
        what = f"{what}; takeover of the agent's client id only: {taken}"
    if ended:
        log.info("revoked %s: %s; %s", outlet_id, how, what)
    else:
        log.warning("revoked %s: %s; open session not ended: %s", outlet_id, how, what)
    return BrokerAction(reloaded=True, session_ended=ended, detail=f"{how}; {what}")
