"""``GET`` on the running agent's technician socket, for the technician's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def ask_agent(data_dir: Path, path: str, *, timeout_s: float) -> Any:
    """``GET path`` on ``data_dir``'s technician socket, its JSON answer; ``RuntimeError``
    when there is no socket, an ``httpx.HTTPError`` when the agent does not answer well."""
    import httpx  # loaded here: the agent's start does not need it

    from edge_agent.technician.socket_api import SOCKET_FILE  # Starlette: not at import

    sock = data_dir / SOCKET_FILE
    if not sock.exists():
        raise RuntimeError(f"no running agent: {sock} does not exist")
    transport = httpx.HTTPTransport(uds=str(sock))
    with httpx.Client(transport=transport, base_url="http://agent", timeout=timeout_s) as client:
        answer = client.get(path)
    answer.raise_for_status()
    return answer.json()
