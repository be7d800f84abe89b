"""The config rollout bench's server part: a real ``fleet-server run`` signs and publishes.

Everything this bench assumes of the server's config store, signer and publisher is in
the ``ASSUMED`` block and in ``ServerConfigApi``; adjust them there if the merged
server differs. The rest (the simulated fleet, the expected hashes) is the server's
contract in docs/config.md and does not depend on how the server is built.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from _common import poll, start_server, stop
from _rollout_sim import (
    CHANGED_REGION,
    SimFleet,
    broker_pid,
    cpu_s,
    expected_hash,
    outlet_ids,
    region_of,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from govedge_testbed import Mosquitto
from govedge_wire.config import key_id_for

# -- ASSUMED of the server (docs/config.md: "The signing key", "The config API") -----------
# The signing key: a path to an unencrypted PEM Ed25519 private key, mode 0600. The server
# signs under ``key_id_for(public key)``, which the simulated outlets hold.
SIGNING_KEY_ENV = "GOVEDGE_CONFIG_SIGNING_KEY"
# GET: 200 with ETag '"n"' (the version), 404 while the scope has none. PUT: the document
# as the body, If-Match the version it replaces ("0" for a new scope), ?comment=.
SCOPE_ROUTE = "/api/v1/config/{scope}"
# GET: a JSON list of the outlets not in sync (never reported ones included); [] when all are.
DRIFT_ROUTE = "/api/v1/config/drift"
# GET: one outlet's config; "reported": {"version", "hash", "at"}.
OUTLET_CONFIG_ROUTE = "/api/v1/outlets/{outlet_id}/config"
# Region and kind of each outlet, which the layering reads.
PROFILES_ROUTE = "/api/v1/outlet-profiles"
# --------------------------------------------------------------------------------------------

GLOBAL_DOC: dict[str, Any] = {"telemetry": {"interval_s": 60.0}, "log_level": "INFO"}
REGION_DOC: dict[str, Any] = {"log_level": "DEBUG"}


class ServerNotReady(RuntimeError):
    """The server lacks a route or setting the bench assumes (not merged yet)."""


class ServerConfigApi:
    """The server's config routes, as assumed above."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)

    def check(self) -> None:
        r = self.http.get(DRIFT_ROUTE)
        if r.status_code in (404, 405):
            raise ServerNotReady(
                f"GET {DRIFT_ROUTE} answered {r.status_code}: the server's config API is "
                "not there (run with --publisher-only until it is merged)"
            )
        # Without a key the server runs but signs and publishes nothing.
        metrics = self.http.get("/metrics").text
        if "govedge_config_signing_key 0" in metrics:
            raise ServerNotReady(f"the server did not load the signing key ({SIGNING_KEY_ENV})")

    def put_profiles(self, ids: list[str]) -> None:
        profiles = [
            {"outlet_id": o, "kind": "township_centre", "region_code": region_of(i)}
            for i, o in enumerate(ids)
        ]
        self.http.put(PROFILES_ROUTE, json=profiles).raise_for_status()

    def put_scope(self, scope: str, document: dict[str, Any], comment: str) -> None:
        path = SCOPE_ROUTE.format(scope=scope)
        current = self.http.get(path)
        if current.status_code == 404:
            etag = '"0"'
        else:
            current.raise_for_status()
            etag = current.headers["ETag"]
        r = self.http.put(
            path, json=document, params={"comment": comment}, headers={"If-Match": etag}
        )
        if r.status_code >= 400:
            raise ServerNotReady(f"PUT {path} answered {r.status_code}: {r.text[:300]}")

    def drifting(self) -> int:
        return len(self.http.get(DRIFT_ROUTE).raise_for_status().json())

    def reported_hash(self, outlet: str) -> str | None:
        r = self.http.get(OUTLET_CONFIG_ROUTE.format(outlet_id=outlet))
        if r.status_code != 200:
            return None
        reported = r.json().get("reported")
        return reported.get("hash") if isinstance(reported, dict) else None


def _rollout(
    api: ServerConfigApi,
    sim: SimFleet,
    pids: dict[str, int],
    *,
    scope: str,
    document: dict[str, Any],
    want: str,
    ids: list[str],
    others: list[str],
    timeout: float,
) -> dict[str, Any]:
    """PUT one scope's document; time until the outlets applied it and the server says so."""
    cpu0 = {name: cpu_s(pid) for name, pid in pids.items()}
    sim0 = sim.cpu_s()
    t0 = time.monotonic()
    api.put_scope(scope, document, comment=f"bench: {scope}")
    put_s = time.monotonic() - t0
    refused0 = sim.ask("totals")["refused"]
    all_applied = False
    in_sync_s: float | None = None
    ask_s = float("nan")  # how long the answering drift GET (and sample) took
    cpu_sync: dict[str, float] = {}
    sample = ids[:: max(1, len(ids) // 5)][:5]
    deadline = t0 + timeout
    while not (all_applied and in_sync_s is not None) and time.monotonic() < deadline:
        applied, refused = sim.ask("progress", want, ids)
        all_applied = applied == len(ids)
        if refused != refused0:  # e.g. unknown_key: the server signs under another key id
            raise ServerNotReady(f"outlets refused the server's configs: {refused}")
        # The server cannot be in sync before every outlet applied: the drift list (which
        # merges every outlet's layers) is only polled from then on, so its cost stays out
        # of the rollout; a sample must also report the new hash.
        if all_applied and in_sync_s is None:
            t_ask = time.monotonic()
            if api.drifting() == 0 and all(api.reported_hash(o) == want for o in sample):
                in_sync_s = time.monotonic() - t0
                ask_s = time.monotonic() - t_ask
            cpu_sync = {name: cpu_s(pid) - cpu0[name] for name, pid in pids.items()}
        time.sleep(0.1)
    times = sim.ask("applied", want, ids)
    return {
        "scope": scope,
        "outlets": len(ids),
        "put_s": put_s,
        "applied": len(times),
        "arrived_max_s": max((a for a, _ in times), default=float("nan")) - t0,
        "applied_max_s": max((b for _, b in times), default=float("nan")) - t0,
        "in_sync_s": in_sync_s,
        "ask_s": ask_s,
        "server_cpu_s": cpu_sync.get("server", float("nan")),
        "broker_cpu_s": cpu_sync.get("broker", float("nan")),
        "sim_cpu_s": sim.cpu_s() - sim0,
        "others_touched": sim.ask("touched", t0, others) if others else 0,
        "totals": sim.ask("totals"),
    }


def run_server_mode(n: int, work: Path, broker: Mosquitto, *, timeout: float) -> dict[str, Any]:
    """1,000 (``n``) outlets; a global change, then one region's change, via the server."""
    key = Ed25519PrivateKey.generate()
    key_path = work / "config-signing.pem"
    key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    key_path.chmod(0o600)
    server = start_server(
        broker.url, work, env={SIGNING_KEY_ENV: str(key_path), "GOVEDGE_LOG_LEVEL": "WARNING"}
    )
    sim: SimFleet | None = None
    try:
        api = ServerConfigApi(server.url)
        api.check()
        ids = outlet_ids(n)
        api.put_profiles(ids)
        sim = SimFleet.start(broker.port, ids, {key_id_for(key.public_key()): key.public_key()})
        poll(
            lambda: server.stats()["accepted"] >= n and server.stats()["queue_depth"] == 0,
            timeout=timeout,
            interval=0.5,
            what="every birth ingested",
        )
        pids = {"server": server.proc.pid, "broker": broker_pid(broker)}
        region_ids = [o for i, o in enumerate(ids) if region_of(i) == CHANGED_REGION]
        others = [o for o in ids if o not in set(region_ids)]
        rounds = [
            _rollout(
                api, sim, pids, scope="global", document=GLOBAL_DOC,
                want=expected_hash([GLOBAL_DOC]), ids=ids, others=[], timeout=timeout,
            ),
            _rollout(
                api, sim, pids, scope=f"region:{CHANGED_REGION}", document=REGION_DOC,
                want=expected_hash([GLOBAL_DOC, REGION_DOC]), ids=region_ids, others=others,
                timeout=timeout,
            ),
        ]  # fmt: skip
        return {"mode": "server", "outlets": n, "connect_s": sim.connect_s, "rounds": rounds}
    finally:
        if sim is not None:
            sim.stop()
        stop(server.proc)
