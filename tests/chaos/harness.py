"""Parts of the chaos tests: clerk-app load against real agents, and the fleet around them.

Every process is the real one (``fleet-server run``, ``edge-agent run``, ``mosquitto``);
the upstream is a real HTTP server (``receiver.ChaosUpstream``). The clerk load follows
the local API's contract (docs/local-api.md): one ``Idempotency-Key`` per case, and a
request whose fate is unknown (timeout, reset, 503) is sent again **with the same key**
until it gets a definite answer. Only a 202 is a promise to the clerk; a 507 (outbox
full) or an unreachable agent is a refusal, and a refused case must never reach upstream.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from edge_agent.devices.evaluation_pad.simulator import EvaluationPadSimulator
from tests.e2e.conftest import BIN, Agent, Server, poll, start_server

LOCAL_API = re.compile(r"local API on http://127\.0\.0\.1:(\d+)")

# Catalogue: two regions' targets and an item whose upstream always answers 422.
ID_NUMBER = "33010619900101123X"  # check digit valid (the local API verifies it)
REJECT_ITEM = "REJ-1"
ITEMS = [("ZS-1", "330902"), ("HZ-1", "330106")]
PAD_PROFILE = "haochaping-pad"  # the shipped profile of the 好差评 pad (network device)


def catalogue() -> list[dict[str, Any]]:
    common = {
        "base_code": "000101", "name": "居民身份证换领", "level": 4,
        "handling_type": "promised", "promised_days": 5, "department": "公安局",
        "outlet_kinds": ["township_centre"], "handling_mode": "direct",
    }  # fmt: skip
    return [
        common | {"code": "ZS-1", "region_codes": ["3309"], "target": "zhoushan"},
        common | {"code": "HZ-1", "region_codes": ["3301"], "target": "hangzhou"},
        common | {"code": REJECT_ITEM, "base_code": "000901", "region_codes": ["33"],
                  "target": "rejecting"},
    ]  # fmt: skip


def material_bytes(key: str) -> bytes:
    """The scan a clerk attaches to case ``key``: its own bytes, 1 to 16 KiB by key, and
    one in ten 190 KiB, over the outbox's 180 KiB chunk, so it travels in two chunks."""
    seed = hashlib.sha256(key.encode()).digest()
    size = 190 * 1024 if seed[2] % 10 == 0 else 1024 + int.from_bytes(seed[:2]) % (15 * 1024)
    return (seed * (size // len(seed) + 1))[:size]


def submission(
    item_code: str, region: str, *, note: str | None = None, scan: bytes | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "item_code": item_code,
        "region_code": region,
        "applicant": {"name": "张三丰", "id_number": ID_NUMBER},
        "window": "W3",
        "clerk": "clerk-7",
    }
    if note is not None:
        body["note"] = note
    if scan is not None:
        body["materials"] = [
            {"name": "身份证复印件", "data_base64": base64.b64encode(scan).decode()}
        ]
    return body


@dataclass
class Outlet:
    """A real agent plus what the clerk app needs: its token and its local API port."""

    agent: Agent
    token: str = ""
    port: int | None = None
    quota: int | None = None

    @property
    def outlet_id(self) -> str:
        return self.agent.outlet_id

    def register_app(self) -> None:
        result = subprocess.run(
            [str(BIN / "edge-agent"), "apps", "add", "chaos-clerk",
             "--data-dir", str(self.agent.data_dir)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        self.token = result.stdout.strip().splitlines()[-1]
        assert self.token.startswith("gva_")

    def start(self) -> None:
        offset = self.agent.log.stat().st_size if self.agent.log.exists() else 0
        self.port = None
        self.agent.start()

        def announced() -> int | None:
            proc = self.agent.proc
            assert proc is not None
            if proc.poll() is not None:
                raise AssertionError(
                    f"agent {self.outlet_id} exited {proc.returncode}: "
                    f"{self.agent.log.read_text(errors='replace')[-3000:]}"
                )
            with self.agent.log.open("rb") as log:
                log.seek(offset)
                found = LOCAL_API.search(log.read().decode(errors="replace"))
            return int(found.group(1)) if found else None

        self.port = poll(announced, timeout=60, interval=0.1)

    def kill(self) -> None:
        """SIGKILL, as a power cut would."""
        self.port = None
        self.agent.signal(signal.SIGKILL)
        self.agent.wait(timeout=10)


@dataclass
class Ledger:
    """What the clerks were told, per key; shared by the sender threads."""

    accepted: dict[str, bool] = field(default_factory=dict)  # key -> upstream rejects it
    refused: set[str] = field(default_factory=set)
    answers: Counter[str] = field(default_factory=Counter)
    by_outlet: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    evaluations: set[str] = field(default_factory=set)  # tx_ids of rated, accepted ones
    refused_cases: set[str] = field(default_factory=set)  # evaluations answered 507
    materials: dict[str, str] = field(default_factory=dict)  # key -> sha256 of its scan
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        """Accepted so far; raises at once if a clerk thread failed."""
        with self.lock:
            if self.errors:
                raise AssertionError(f"a clerk failed: {self.errors[0]}")
            return len(self.accepted)

    def outlet_count(self, outlet_id: str) -> int:
        with self.lock:
            return self.by_outlet[outlet_id]

    def refused_count(self) -> int:
        with self.lock:
            return len(self.refused)


class Clerk(threading.Thread):
    """One clerk app filing cases at one outlet as fast as the agent takes them."""

    def __init__(
        self, outlet: Outlet, ledger: Ledger, *, name: str, stop: threading.Event,
        reject_every: int = 40, note: str | None = None, material_every: int = 20,
    ) -> None:  # fmt: skip
        super().__init__(name=name, daemon=True)
        self.outlet, self.ledger, self.stop_event = outlet, ledger, stop
        self.reject_every, self.note, self.material_every = reject_every, note, material_every
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(10.0, connect=2.0)) as client:
                n = 0
                while not self.stop_event.is_set():
                    n += 1
                    key = f"{self.name}-{n:07d}"
                    rejects = n % self.reject_every == 0
                    item, region = (REJECT_ITEM, "330902") if rejects else ITEMS[n % len(ITEMS)]
                    # Every few cases carry a scan: upstream must get its exact bytes once.
                    scan = material_bytes(key) if n % self.material_every == 0 else None
                    body = submission(item, region, note=self.note, scan=scan)
                    self._file(client, key, body, rejects, scan)
        except BaseException as exc:  # reported by the test
            self.error = exc
            with self.ledger.lock:
                self.ledger.errors.append(f"{self.name}: {exc!r}")

    def _file(
        self, client: httpx.Client, key: str, body: dict[str, Any], rejects: bool,
        scan: bytes | None,
    ) -> None:  # fmt: skip
        """Send until a definite answer; an unknown outcome is retried with the same key."""
        uncertain = False
        while True:
            port = self.outlet.port
            if port is None:  # the agent is down: the clerk app waits and tries again
                time.sleep(0.05)
                continue
            try:
                response = client.post(
                    f"http://127.0.0.1:{port}/v1/submissions",
                    json=body,
                    headers={
                        "Authorization": f"Bearer {self.outlet.token}",
                        "Idempotency-Key": key,
                    },
                )
            except httpx.ConnectError:
                self._note("connect_error")  # nothing was sent: certainly not stored
                time.sleep(0.05)
                continue
            except httpx.HTTPError as exc:
                uncertain = True  # sent, fate unknown (agent killed mid-request)
                self._note(f"uncertain:{exc.__class__.__name__}")
                time.sleep(0.05)
                continue
            status = response.status_code
            self._note(str(status))
            if status == httpx.codes.ACCEPTED:
                answer = response.json()
                assert answer["tx_id"] == key, response.text
                assert answer["materials"] == (1 if scan is not None else 0), response.text
                with self.ledger.lock:
                    self.ledger.accepted[key] = rejects
                    if scan is not None:
                        self.ledger.materials[key] = hashlib.sha256(scan).hexdigest()
                    self.ledger.by_outlet[self.outlet.outlet_id] += 1
                return
            if status == httpx.codes.INSUFFICIENT_STORAGE and not uncertain:
                with self.ledger.lock:
                    self.ledger.refused.add(key)
                time.sleep(0.02)
                return
            if status in {503, 507, 409}:  # storage trouble / in progress / full after a crash
                uncertain = uncertain or status != httpx.codes.INSUFFICIENT_STORAGE
                time.sleep(0.1)
                continue
            raise AssertionError(f"{key}: unexpected {status} {response.text[:300]}")

    def _note(self, what: str) -> None:
        with self.ledger.lock:
            self.ledger.answers[what] += 1


class Citizens(threading.Thread):
    """Real evaluation pad simulators on loopback TCP, and a citizen rating on each.

    One asyncio loop in this thread runs every ``EvaluationPadSimulator``; the agents
    drive them through their real pad driver (a ``[[devices]]`` entry in their config
    file, see ``config_for``). A citizen rates each request as it shows, cycling through
    the five levels, so bad reviews are part of the load.
    """

    def __init__(self, count: int) -> None:
        super().__init__(name="chaos-citizens", daemon=True)
        self.count = count
        self.addresses: list[str] = []
        self.rated = 0
        self.held: set[int] = set()  # pads whose citizen waits instead of rating
        self._pads: list[EvaluationPadSimulator] = []
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by the test through wait_ready / error
            self.error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            pads = [
                await stack.enter_async_context(
                    EvaluationPadSimulator(transport="tcp", serial=f"CHAOS{n:04d}")
                )
                for n in range(self.count)
            ]
            self.addresses = [pad.address for pad in pads]
            self._pads = pads
            self._ready.set()
            async with asyncio.TaskGroup() as tg:
                for index, pad in enumerate(pads):
                    tg.create_task(self._citizen(index, pad))

    async def _citizen(self, index: int, pad: EvaluationPadSimulator) -> None:
        assert self._stopping is not None
        stars = 0
        while not self._stopping.is_set():
            try:
                await pad.wait_for_request(within=0.5)
            except TimeoutError:
                continue
            if index in self.held:  # the request stays on the pad, unrated
                await asyncio.sleep(0.02)
                continue
            stars = stars % 5 + 1
            pad.press(stars, tags=["态度好"] if stars >= 4 else ["等候时间长"])
            self.rated += 1

    def showing(self, index: int) -> bool:
        """Whether pad ``index`` shows a request (read from another thread: a snapshot)."""
        return index < len(self._pads) and self._pads[index].showing is not None

    def wait_ready(self) -> list[str]:
        assert self._ready.wait(timeout=30), "pad simulators did not start"
        if self.error is not None:
            raise AssertionError(f"pad simulators failed: {self.error!r}")
        return self.addresses

    def config_for(self, index: int, path: Path) -> Path:
        """An agent config file with pad ``index`` as its network device."""
        path.write_text(
            "[[devices]]\n"
            f'profile = "{PAD_PROFILE}"\n'
            f'address = "{self.addresses[index]}"\n'
            f'device_id = "chaos-pad-{index}"\n'
        )
        return path

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(timeout=10)


class Evaluator(threading.Thread):
    """One clerk app asking citizens to rate (好差评) at one outlet, one request at a time.

    ``POST /v1/evaluations`` blocks until the citizen rated on the pad; ``rated`` with a
    ``tx_id`` is the promise (recorded durably before the answer). A 507 means the outbox
    refused it: that case must never reach upstream. Each case has its own
    ``Idempotency-Key`` (= the ``tx_id``): a request cut by a SIGKILLed agent (no answer
    at all) is sent again with the same key until it is answered — even after the test
    said stop, since the rating may already be recorded — and counted as
    ``evaluation:retried``. A retry answers the recorded rating or, if none was
    recorded, asks the citizen again; either way one evaluation per key.
    """

    def __init__(self, outlet: Outlet, ledger: Ledger, *, name: str, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.outlet, self.ledger, self.stop_event = outlet, ledger, stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(60.0, connect=2.0)) as client:
                n = 0
                while not self.stop_event.is_set():
                    n += 1
                    self._evaluate(client, f"{self.name}-{n:07d}")
        except BaseException as exc:  # reported by the test
            self.error = exc
            with self.ledger.lock:
                self.ledger.errors.append(f"{self.name}: {exc!r}")

    def _evaluate(self, client: httpx.Client, case: str) -> None:
        key = f"eval-{case}"
        sent = False  # once sent, the rating may be recorded: retry until answered
        while sent or not self.stop_event.is_set():
            port = self.outlet.port
            if port is None:  # the agent is being restarted
                time.sleep(0.05)
                continue
            try:
                response = client.post(
                    f"http://127.0.0.1:{port}/v1/evaluations",
                    json={"window": "W3", "case_number": case, "staff_id": "S007",
                          "item_code": ITEMS[0][0], "timeout_s": 30},
                    headers={"Authorization": f"Bearer {self.outlet.token}",
                             "Idempotency-Key": key},
                )  # fmt: skip
            except httpx.ConnectError:  # nothing reached the agent
                time.sleep(0.05)
                continue
            except httpx.TransportError:  # sent, and no answer: the agent died meanwhile
                sent = True
                with self.ledger.lock:
                    self.ledger.answers["evaluation:retried"] += 1
                time.sleep(0.05)
                continue
            status = response.status_code
            with self.ledger.lock:
                self.ledger.answers[f"evaluation:{status}"] += 1
            body = response.json()
            if status == httpx.codes.OK and body["status"] == "rated":
                assert body["tx_id"] == key, body
                with self.ledger.lock:
                    self.ledger.accepted[body["tx_id"]] = False
                    self.ledger.evaluations.add(body["tx_id"])
                    self.ledger.by_outlet[self.outlet.outlet_id] += 1
                return
            if status == httpx.codes.INSUFFICIENT_STORAGE:
                with self.ledger.lock:
                    self.ledger.refused_cases.add(case)
                time.sleep(0.05)
                return
            if status == httpx.codes.SERVICE_UNAVAILABLE:  # pad not (yet) ready: nothing shown
                time.sleep(0.1)
                continue
            if status == httpx.codes.CONFLICT and body.get("error") == "pad_busy":
                time.sleep(0.1)  # a restarted agent's pad still showed the dead one's request
                continue
            raise AssertionError(f"evaluation {case}: unexpected {status} {response.text[:300]}")


@dataclass
class Fleet:
    """The fleet server, restartable on the same database (a new HTTP port each time)."""

    mqtt_url: str
    database_url: str
    log: Path
    env: dict[str, str]
    server: Server | None = None

    def start(self) -> Server:
        # A restart keeps the admin: making one is a CLI run that costs seconds under
        # load, and the clerks keep filing meanwhile.
        token = self.server.token if self.server is not None else None
        self.server = start_server(
            self.mqtt_url, self.database_url, self.log, env=self.env, token=token
        )
        return self.server

    def kill(self) -> None:
        assert self.server is not None
        self.server.proc.kill()
        self.server.proc.wait(timeout=10)

    def get(self, path: str) -> Any:
        assert self.server is not None
        response = httpx.get(f"{self.server.url}{path}", headers=self.server.headers, timeout=10)
        response.raise_for_status()
        return response.json()

    def post_json(self, path: str, data: Any) -> Any:
        assert self.server is not None
        response = httpx.post(
            f"{self.server.url}{path}", content=json.dumps(data), timeout=30,
            headers={**self.server.headers, "Content-Type": "application/json"},
        )  # fmt: skip
        assert response.status_code == httpx.codes.OK, response.text
        return response.json()

    def tx_accepted(self) -> int:
        return int(self.get("/api/v1/ingest/stats")["noted"].get("tx_accepted", 0))
