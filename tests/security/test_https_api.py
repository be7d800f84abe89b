"""The fleet API over HTTPS (``run --tls-cert/--tls-key``), and plain HTTP kept to loopback.

Real processes: ``fleet-server https-cert`` issues the certificate from the fleet CA,
``fleet-server run`` serves it, an httpx client that trusts only that CA logs in to the
web UI and calls the API, ``fleetctl --ca-file`` talks to it, and ``edge-agent enroll``
pins the same CA over HTTPS.
"""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from fleet_server.pki import FleetCA
from govedge_testbed import Mosquitto, free_port
from tests.e2e.conftest import (
    BIN,
    E2E_PASSWORD,
    _spawn,
    add_user,
    poll,
    start_server,
    stop_process,
)


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_https_serves_login_api_fleetctl_and_enroll(broker: Mosquitto, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    issued = _run("fleet-server", "https-cert", "--hostname", "127.0.0.1", "--pki-dir", str(pki))
    assert issued.returncode == 0, issued.stderr
    assert (pki / "https.key").stat().st_mode & 0o777 == 0o600
    database = f"sqlite:///{tmp_path / 'fleet.db'}"
    token = add_user(database, "tls-admin", "admin")
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("ab") as out:
        proc = _spawn(
            [str(BIN / "fleet-server"), "run", "--mqtt-url", broker.url,
             "--database-url", database, "--listen", f"127.0.0.1:{port}",
             "--tls-cert", str(pki / "https.crt"), "--tls-key", str(pki / "https.key")],
            out,
            env={"GOVEDGE_PKI_DIR": str(pki)},
        )  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    trust = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    try:
        poll(lambda: f"listening on {url}" in log.read_text(), timeout=60)
        with httpx.Client(base_url=url, verify=trust, timeout=10) as client:
            assert client.get("/readyz").status_code == httpx.codes.OK
            # The web UI login over TLS: the Secure cookie comes back and works.
            login = client.post(
                "/ui/login",
                data={"username": "tls-admin", "password": E2E_PASSWORD},
                headers={"Origin": url},
            )
            assert login.status_code == httpx.codes.SEE_OTHER, login.text
            assert "secure" in login.headers["set-cookie"].lower()
            assert client.get("/api/v1/me").json()["name"] == "tls-admin"
            me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == httpx.codes.OK
        # Plain HTTP to the TLS port gets nowhere; a client without the CA refuses.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/readyz", timeout=5)

        env = {"GOVEDGE_SERVER": url, "GOVEDGE_TOKEN": token, "PATH": str(BIN)}
        whoami = _run("fleetctl", "--ca-file", str(pki / "ca.crt"), "whoami", env=env)
        assert whoami.returncode == 0, whoami.stderr
        assert "tls-admin" in whoami.stdout
        untrusted = _run("fleetctl", "whoami", env=env)
        assert untrusted.returncode == 2
        assert "cannot reach fleet server" in untrusted.stderr

        # An agent enrolls over HTTPS, trusting and pinning the fleet CA it was given.
        created = httpx.post(
            f"{url}/api/v1/enrollments",
            json={"outlet_id": "outlet-https-1", "ttl_s": 600},
            headers={"Authorization": f"Bearer {token}"},
            verify=trust,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        data_dir = tmp_path / "agent"
        enrolled = _run("edge-agent", "enroll", "--server", url, "--token",
                        created.json()["token"], "--data-dir", str(data_dir),
                        "--ca-file", str(pki / "ca.crt"))  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr
        assert (data_dir / "tls" / "ca.pem").read_bytes() == (pki / "ca.crt").read_bytes()
    finally:
        stop_process(proc)


def test_plain_http_only_on_loopback_behind_a_proxy(broker: Mosquitto, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'fleet.db'}"
    port = free_port()
    argv = ["fleet-server", "run", "--mqtt-url", broker.url, "--database-url", database]
    refused = _run(*argv, "--listen", f"0.0.0.0:{port}")
    assert refused.returncode == 2
    assert "refusing to serve plain HTTP on 0.0.0.0" in refused.stderr
    assert "--tls-cert" in refused.stderr
    assert "--allow-plain-http" in refused.stderr
    assert not (tmp_path / "fleet.db").exists()  # refused before touching anything
    # Authentication off is for development on loopback: refused where a network
    # reaches the server directly, even with plain HTTP allowed.
    open_to_all = _run(*argv, "--listen", f"0.0.0.0:{port}", "--allow-plain-http",
                       env={**os.environ, "GOVEDGE_API_AUTH": "off"})  # fmt: skip
    assert open_to_all.returncode == 2
    assert "API authentication off" in open_to_all.stderr
    assert not (tmp_path / "fleet.db").exists()

    # A TLS key that does not match its certificate: one clear line, no traceback.
    ca = FleetCA(tmp_path / "pki")
    first = ca.issue_https_server(hostnames=["a"], out_dir=tmp_path / "one")
    second = ca.issue_https_server(hostnames=["b"], out_dir=tmp_path / "two")
    mismatch = _run(*argv, "--listen", f"127.0.0.1:{port}", "--tls-cert", str(first.cert_file),
                    "--tls-key", str(second.key_file))  # fmt: skip
    assert mismatch.returncode == 2
    assert "Traceback" not in mismatch.stderr
    assert "key does not match" in mismatch.stderr

    # On loopback behind a TLS reverse proxy (docs/security.md): with the Host and
    # X-Forwarded-Proto the proxy sets, the browser's https Origin passes the CSRF check.
    server = start_server(broker.url, database, tmp_path / "server.log")
    try:
        name = f"e2e-admin-{server.url.rsplit(':', 1)[1]}"
        proxied = {"Host": "fleet.example", "Origin": "https://fleet.example"}
        login = {"username": name, "password": E2E_PASSWORD}
        via_proxy = httpx.post(
            f"{server.url}/ui/login",
            data=login,
            headers={**proxied, "X-Forwarded-Proto": "https"},
            timeout=10,
        )
        assert via_proxy.status_code == httpx.codes.SEE_OTHER, via_proxy.text
        assert via_proxy.headers["location"] == "/ui/overview"
        unproxied = httpx.post(f"{server.url}/ui/login", data=login, headers=proxied, timeout=10)
        assert unproxied.status_code == httpx.codes.FORBIDDEN
    finally:
        stop_process(server.proc)
