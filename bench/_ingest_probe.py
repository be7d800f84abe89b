"""What the ingest benchmarks hold the server against: a bare paho subscriber that only
counts, in its own process, and the server's count of outlets online."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def bare_subscriber(port: int, counter: Any, ready: Any) -> None:
    """A paho client that only counts messages (the same library the server ingests with)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare-counter", protocol=mqtt.MQTTv5)
    n = [0]

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        n[0] += 1
        if n[0] & 255 == 0:
            counter.value = n[0]

    def on_connect(cl: Any, *_a: Any) -> None:
        cl.subscribe("govedge/v1/+/up/+", qos=1)

    c.on_message = on_message
    c.on_connect = on_connect
    c.on_subscribe = lambda *_a: ready.set()
    c.connect("127.0.0.1", port, keepalive=60)
    while True:
        c.loop(0.1)
        counter.value = n[0]


def count_online(server: Any) -> int:
    """Outlets the server counts online (-1 when it does not answer)."""
    try:
        url = f"{server.url}/api/v1/outlets?state=online&limit=1"
        return int(httpx.get(url, timeout=30).json()["total"])
    except (httpx.HTTPError, ValueError):
        return -1


def start_bare(port: int) -> tuple[Any, Any]:
    """The bare subscriber in its own process, subscribed: (process, its shared count)."""
    ctx = mp.get_context("fork")
    count = ctx.Value("q", 0, lock=False)
    ready = ctx.Event()
    proc = ctx.Process(target=bare_subscriber, args=(port, count, ready), daemon=True)
    proc.start()
    ready.wait(10)
    return proc, count
