"""What the operator checks after the install, run inside the deploy test's clean root.

Run as ``python -m tests.service.deploy_checks CHECK`` (this checkout's environment,
seen through the clean root's lower layer) as root in the clean root, so names resolve
through its ``/etc/hosts`` and the ports are its own. Prints one JSON object; the test
asserts on it. Nothing here is a stand-in: real HTTPS to the worker, the real
``edge-agent enroll``, real MQTT-over-TLS connections to the installed Mosquitto.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from govedge_wire import agent_client_id

API = "https://fleet.example:8443"
PLAIN_WORKER = "http://127.0.0.1:8082"
# The ingest workers' probes (step 7: govedge-fleet-ingest@9101 and @9102).
INGEST_WORKERS = ("http://127.0.0.1:9101", "http://127.0.0.1:9102")
FLEET_CA = Path("/var/lib/govedge/fleet-pki/ca.crt")
FIRST_ADMIN = Path("/var/lib/govedge/first-admin.txt")
EDGE_AGENT = Path(sys.executable).parent / "edge-agent"
OUTLET = "outlet-deploy-1"


def _trust() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(FLEET_CA))


def ready(timeout_s: float = 180) -> dict[str, Any]:
    """Wait until every worker answers ``/readyz``: the two API workers (the TLS one
    through its name) and the two ingest workers on their loopback probe ports."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            codes = [httpx.get(f"{API}/readyz", verify=_trust(), timeout=5).status_code]
            codes += [
                httpx.get(f"{worker}/readyz", timeout=5).status_code
                for worker in (PLAIN_WORKER, *INGEST_WORKERS)
            ]
            if all(code == httpx.codes.OK for code in codes):
                return {"ready": True}
            last = " ".join(map(str, codes))
        except (httpx.HTTPError, OSError) as exc:
            last = repr(exc)
        time.sleep(1)
    return {"ready": False, "last": last}


def versions() -> dict[str, Any]:
    """The version each API worker's /openapi.json names (the installed server's)."""
    documents = [
        httpx.get(f"{API}/openapi.json", verify=_trust(), timeout=10),
        httpx.get(f"{PLAIN_WORKER}/openapi.json", timeout=10),
    ]
    return {"versions": sorted({doc.json()["info"]["version"] for doc in documents})}


def _first_admin() -> dict[str, str]:
    lines = FIRST_ADMIN.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def login() -> dict[str, Any]:
    """The first admin's password at the login form, its token at the API, over TLS."""
    admin = _first_admin()
    with httpx.Client(base_url=API, verify=_trust(), timeout=10) as client:
        form = client.post(
            "/ui/login",
            data={"username": admin["user"], "password": admin["password"]},
            headers={"Origin": API},
        )
        by_cookie = client.get("/api/v1/me")
    by_token = httpx.get(
        f"{API}/api/v1/me",
        headers={"Authorization": f"Bearer {admin['api_token']}"},
        verify=_trust(),
        timeout=10,
    )
    wrong = httpx.post(
        f"{API}/ui/login",
        data={"username": admin["user"], "password": "not the password"},
        headers={"Origin": API},
        verify=_trust(),
        timeout=10,
    )
    return {
        "form_status": form.status_code,
        "cookie_me": _name(by_cookie),
        "token_me": _name(by_token),
        "wrong_password_status": wrong.status_code,
    }


def _name(me: httpx.Response) -> object:
    """The user name ``/api/v1/me`` answered, or its status when it refused."""
    return me.json().get("name") if me.is_success else me.status_code


def enroll(data_dir: Path) -> dict[str, Any]:
    """An enrollment token from the API, ``edge-agent enroll`` with it over HTTPS, then
    the outlet's new certificate accepted by the installed broker."""
    admin = _first_admin()
    created = httpx.post(
        f"{API}/api/v1/enrollments",
        json={"outlet_id": OUTLET, "ttl_s": 600},
        headers={"Authorization": f"Bearer {admin['api_token']}"},
        verify=_trust(),
        timeout=10,
    )
    if created.status_code != httpx.codes.CREATED:
        return {"enrollment": created.status_code, "detail": created.text}
    done = subprocess.run(
        [str(EDGE_AGENT), "enroll", "--server", API, "--token", created.json()["token"],
         "--data-dir", str(data_dir), "--ca-file", str(FLEET_CA)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    result: dict[str, Any] = {"enroll_rc": done.returncode, "enroll_stderr": done.stderr[-2000:]}
    if done.returncode == 0:
        result["broker_connack"] = _connect_as_outlet(data_dir / "tls")
    return result


def _connect_as_outlet(tls: Path) -> str:
    """The broker's CONNACK reason, or how the connection ended before one."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=agent_client_id(OUTLET))
    client.tls_set(
        ca_certs=str(tls / "ca.pem"), certfile=str(tls / "cert.pem"), keyfile=str(tls / "key.pem")
    )
    answers: list[str] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(str(reason))
    try:
        client.connect("broker.example", 8883)
        deadline = time.monotonic() + 30
        while not answers and time.monotonic() < deadline:
            code = client.loop(timeout=0.5)
            if code != mqtt.MQTT_ERR_SUCCESS:
                return f"connection ended: {mqtt.error_string(code)}"
    except (OSError, ssl.SSLError) as exc:
        return f"connection ended: {exc}"
    finally:
        client.disconnect()
    return answers[0] if answers else "no answer"


def revoke(data_dir: Path) -> dict[str, Any]:
    """Revoke the enrolled outlet at the API; then its certificate again at the broker."""
    admin = _first_admin()
    answer = httpx.post(
        f"{API}/api/v1/outlets/{OUTLET}/revoke",
        headers={"Authorization": f"Bearer {admin['api_token']}"},
        verify=_trust(),
        timeout=60,
    )
    result: dict[str, Any] = {"revoke_status": answer.status_code, **answer.json()}
    result["broker_connack_after"] = _connect_as_outlet(data_dir / "tls")
    return result


def main() -> None:
    check = sys.argv[1]
    if check == "ready":
        out = ready()
    elif check == "login":
        out = login()
    elif check == "versions":
        out = versions()
    elif check == "enroll":
        out = enroll(Path(sys.argv[2]))
    elif check == "revoke":
        out = revoke(Path(sys.argv[2]))
    else:
        raise SystemExit(f"unknown check {check}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
