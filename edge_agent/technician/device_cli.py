"""``edge-agent device list|retire|register|wait|self-test``: a technician replacing a
device.

They talk to the running agent over its technician socket (``socket_api``), since the
agent holds the devices open. Every command prints JSON with ``--json`` (what the
``replace_device`` playbook reads); exit codes: 0 done, 1 the agent cannot be reached or
refused, 3 a wait timed out or a self-test failed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from edge_agent.technician.cli import DATA_DIR_OPTION


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"edge-agent: {message}", err=True)
    sys.exit(code)


def _call(data_dir: Path, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    import httpx  # loaded here: the agent's start does not need it

    from edge_agent.technician.socket_api import SOCKET_FILE

    socket = data_dir / SOCKET_FILE
    if not socket.exists():
        _fail(f"no running agent answers at {socket} (is the service started?)")
    transport = httpx.HTTPTransport(uds=str(socket))
    try:
        with httpx.Client(transport=transport, base_url="http://agent", timeout=60) as client:
            answer = client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        _fail(f"the agent did not answer on {socket}: {exc}")
    payload = answer.json()
    if answer.status_code >= 400:
        _fail(str(payload.get("detail") or payload))
    return payload


@click.group(name="device")
def device_command() -> None:
    """The running agent's devices: list, retire one for good, self-test."""


@device_command.command(name="list")
@DATA_DIR_OPTION
@click.option("--json", "as_json", is_flag=True)
def device_list(data_dir: Path, as_json: bool) -> None:
    """Every device the agent has seen since it started, and the retired ids."""
    answer = _call(data_dir, "GET", "/devices")
    if as_json:
        click.echo(json.dumps(answer))
        return
    for device in answer["devices"]:
        click.echo(f"{device['device_id']:<48} {device['kind']:<24} {device['state']}")
    for device_id in answer["retired"]:
        click.echo(f"{device_id:<48} {'(retired)':<24}")


@device_command.command(name="retire")
@DATA_DIR_OPTION
@click.argument("key")
@click.option(
    "--force", is_flag=True, help="record KEY as a device id even if the agent never saw it"
)
@click.option("--json", "as_json", is_flag=True)
def device_retire(data_dir: Path, key: str, force: bool, as_json: bool) -> None:
    """Stop using the device with serial number or device id KEY, for good."""
    answer = _call(data_dir, "POST", "/devices/retire", {"key": key, "force": force})
    if as_json:
        click.echo(json.dumps(answer))
    elif answer["changed"]:
        click.echo(f"retired {', '.join(answer['retired'])}")
    else:
        click.echo(f"{key} was retired already")


@device_command.command(name="register")
@DATA_DIR_OPTION
@click.option("--profile", required=True, help="a network profile: escpos-network-printer, …")
@click.option("--address", required=True, help="host or host:port on the outlet's LAN")
@click.option("--device-id", required=True, help="the stable id the fleet shows it under")
@click.option("--serial", default=None, help="the serial number on its label")
@click.option("--json", "as_json", is_flag=True)
def device_register(
    data_dir: Path, profile: str, address: str, device_id: str, serial: str | None, as_json: bool
) -> None:
    """Register a network device (a replacement): the agent starts it now and at every
    start. A USB device needs no registration: plugging it in is enough."""
    body = {"profile": profile, "address": address, "device_id": device_id, "serial": serial}
    answer = _call(data_dir, "POST", "/devices/register", body)
    if as_json:
        click.echo(json.dumps(answer))
    elif answer["changed"]:
        click.echo(f"registered {device_id}")
    else:
        click.echo(f"{device_id} was registered already")


@device_command.command(name="wait")
@DATA_DIR_OPTION
@click.option("--kind", required=True, help="the kind of the replacement, e.g. ticket_printer")
@click.option("--device-id", default=None, help="that device only (a registered replacement)")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0, 3600), default=300)
@click.option("--json", "as_json", is_flag=True)
def device_wait(
    data_dir: Path, kind: str, device_id: str | None, timeout_s: float, as_json: bool
) -> None:
    """Wait until a device of KIND (or DEVICE_ID) is ready (a replacement plugged in)."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = _call(data_dir, "GET", "/devices")
        ready = [
            d
            for d in answer["devices"]
            if d["kind"] == kind and d["state"] == "ready" and device_id in (None, d["device_id"])
        ]
        if ready:
            click.echo(json.dumps(ready[0]) if as_json else ready[0]["device_id"])
            return
        if time.monotonic() >= deadline:
            states = {d["device_id"]: d["state"] for d in answer["devices"] if d["kind"] == kind}
            _fail(f"no {kind} ready after {timeout_s:.0f} s (seen: {states or 'none'})", 3)
        time.sleep(1.0)


@device_command.command(name="self-test")
@DATA_DIR_OPTION
@click.argument("device_id")
@click.option("--json", "as_json", is_flag=True)
def device_self_test(data_dir: Path, device_id: str, as_json: bool) -> None:
    """Test the device: a test print, a card reader's status, one camera frame."""
    answer = _call(data_dir, "POST", f"/devices/{device_id}/self-test")
    click.echo(json.dumps(answer) if as_json else _describe(answer))
    if not answer["ok"]:
        sys.exit(3)


def _describe(answer: dict[str, Any]) -> str:
    if answer["ok"]:
        details = ", ".join(f"{k}={v}" for k, v in sorted(answer["result"].items()))
        return f"{answer['device_id']}: self-test passed ({details})"
    return f"{answer['device_id']}: self-test FAILED: {answer['error']}"
