"""The JavaScript client, run by node, retries a dropped submission with the SAME key.

A tiny HTTP server cuts the first connection without answering (the network error a
clerk sees when the agent restarts) and answers the second; both requests must carry
one ``Idempotency-Key``, so the agent would file one case, not two.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from pathlib import Path

from tests.conftest import missing

CLIENT = Path(__file__).parents[2] / "edge_agent" / "local_api" / "client" / "govedge-local.js"


def _serve(listener: socket.socket, keys: list[str]) -> None:
    for attempt in range(2):
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head = data.split(b"\r\n\r\n", 1)[0].decode()
            keys.extend(
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("idempotency-key:")
            )
            if attempt == 0:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                continue  # closed with a reset: no answer at all
            body = json.dumps({"tx_id": keys[-1], "status": "accepted", "materials": 0}).encode()
            conn.sendall(
                b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )


def test_a_retry_after_a_network_error_reuses_the_idempotency_key() -> None:
    node = shutil.which("node")
    if node is None:
        missing("node (Debian package nodejs)")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    keys: list[str] = []
    server = threading.Thread(target=_serve, args=(listener, keys), daemon=True)
    server.start()
    script = (
        f"import {{ GovedgeLocal }} from {json.dumps(CLIENT.as_uri())};\n"
        f"const api = new GovedgeLocal({{ baseUrl: 'http://127.0.0.1:{port}', token: 't' }});\n"
        "const r = await api.submit({ item_code: 'x' });\n"
        "console.log(JSON.stringify(r));\n"
    )
    done = subprocess.run(
        [node, "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    server.join(timeout=10)
    listener.close()
    assert done.returncode == 0, done.stderr
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert json.loads(done.stdout)["tx_id"] == keys[0]
