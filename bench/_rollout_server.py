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

# -- ASSUMED of the server ------------------------------------------------------------------
# The signing key: a path to an unencrypted PEM (PKCS#8) Ed25519 private key. The server
# signs with key id ``key_id_for(public key)``, which the simulated outlets hold.
SIGNING_KEY_ENV = "GOVEDGE_CONFIG_SIGNING_KEY"
# GET: 200 {"version": n, ...} with an ETag, 404 while the scope has no version.
# PUT: body {"document", "comment"}, header If-Match (that ETag, or '"0"' for a new scope).
SCOPE_ROUTE = "/api/v1/config/{scope}"
# GET: the outlets not in sync, as a JSON list (or {"items": [...]}); empty when all are.
DRIFT_ROUTE = "/api/v1/config/drift"
# GET: one outlet's config, its reported hash as "reported_hash" or "reported": {"hash"}.
OUTLET_CONFIG_ROUTE = "/api/v1/outlets/{outlet_id}/config"
# Exists on main: region and kind of each outlet, which the layering reads.
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
            etag = current.headers.get("ETag") or f'"{current.json()["version"]}"'
        r = self.http.put(
            path, json={"document": document, "comment": comment}, headers={"If-Match": etag}
        )
        if r.status_code >= 400:
            raise ServerNotReady(f"PUT {path} answered {r.status_code}: {r.text[:300]}")

    def drifting(self) -> int:
        body = self.http.get(DRIFT_ROUTE).raise_for_status().json()
        rows = body if isinstance(body, list) else body.get("items", body.get("outlets", []))
        return len(rows)

    def reported_hash(self, outlet: str) -> str | None:
        r = self.http.get(OUTLET_CONFIG_ROUTE.format(outlet_id=outlet))
        if r.status_code != 200:
            return None
        body = r.json()
        reported = body.get("reported")
        return body.get("reported_hash") or (
            reported.get("hash") if isinstance(reported, dict) else None
        )


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
    sim.conn.send(("wait_applied", want, ids, timeout))
    applied_ok: bool | None = None
    in_sync_s: float | None = None
    cpu_sync: dict[str, float] = {}
    sample = ids[:: max(1, len(ids) // 5)][:5]
    deadline = t0 + timeout
    while (applied_ok is None or in_sync_s is None) and time.monotonic() < deadline:
        if applied_ok is None and sim.conn.poll():
            applied_ok = sim.conn.recv()
        # Drift empty alone could be "not computed yet": a sample must report the new hash.
        if (
            in_sync_s is None
            and api.drifting() == 0
            and all(api.reported_hash(o) == want for o in sample)
        ):
            in_sync_s = time.monotonic() - t0
            cpu_sync = {name: cpu_s(pid) - cpu0[name] for name, pid in pids.items()}
        time.sleep(0.25)  # the polling costs server CPU too: keep it light
    if applied_ok is None:
        applied_ok = sim.conn.recv()
    times = sim.ask("applied", want, ids)
    return {
        "scope": scope,
        "outlets": len(ids),
        "put_s": put_s,
        "applied": len(times),
        "arrived_max_s": max((a for a, _ in times), default=float("nan")) - t0,
        "applied_max_s": max((b for _, b in times), default=float("nan")) - t0,
        "in_sync_s": in_sync_s,
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
