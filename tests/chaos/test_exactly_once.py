"""The promise, proved under chaos (issue 4, "Proof"): accepted means upstream exactly once.

Real processes throughout: a private Mosquitto, the fleet server on a SQLite file with
a targets file and a catalogue, several ``edge-agent run`` with their own data dirs, a
real HTTP upstream (``receiver.ChaosUpstream``), and clerk threads filing cases through
each agent's local API (``harness.Clerk``). At every outlet a clerk also asks for
好差评 evaluations (``harness.Evaluator``, one ``Idempotency-Key`` per case, resent
unchanged when a killed agent left it unanswered), rated by a citizen on a real pad
simulator the agent drives through its pad driver (``harness.Citizens``); they go to
the evaluation target and are held to the same promise. Every twentieth submission
carries a scan (a material of 1 to 16 KiB, one in ten of 190 KiB so that it travels in
two chunks; base64 in the request); upstream must receive
its exact bytes, once, with the case. While they file, the test

1. makes upstream answer 5xx, then hang after processing (the answer comes after the
   client's timeout, so the retry meets a known key: 409), then recovers it;
2. SIGKILLs the broker; while it is down, agents keep accepting into their outboxes,
   one with a small quota answers 507, and one agent is SIGKILLed with its outbox full
   of unsent cases and an evaluation waiting on its pad (its citizen holds off until
   then), and restarted on the same data dir; then the broker comes back on the same
   port;
3. SIGKILLs the fleet server while it ingests and restarts it on the same database;
4. takes upstream down (socket closed) for a while;

and at the end waits until nothing is pending and upstream stops changing. Then:
every accepted key (submission or evaluation) is at upstream exactly once, nothing
refused is, the inbox holds exactly the accepted cases, the dead-letter queue holds
exactly the ones upstream rejects (4xx), and no request reached upstream with a bad
signature (a body cut by the SIGKILLed server counts as ``truncated``, see
``test_receiver.py``). Outcome-deterministic: every phase waits on a condition with a deadline.

It runs twice: on SQLite with at least 10 000 cases (the phases at 1000, 1600, 2200,
3000 accepted and the steps after), and on PostgreSQL (the production database, whose
transactions and locks differ) with the phases at 0.3 of those counts and one clerk per
agent instead of two, to keep the suite's time in bounds. The broker outage's own steps
(300 cases at the victim, the first 507) do not scale, and the clerks keep filing while
the fleet server restarts, so both runs end with several thousand cases. Measured on
2 shared cores: SQLite 143 s before scans were added, 129 s with them (a noisy
machine; 11 471 cases); PostgreSQL 117 s (7644 cases, 216 with a scan). The drain after
the last case is the long part and grows with the backlog: SQLite 13 675 cases settled
in 125 s (about 100 deliveries/s while the agents' telemetry flows), PostgreSQL 5746
in 57 s; hence a deadline on progress (``STALL_S``) rather than a fixed one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from govedge_testbed import Mosquitto
from govedge_testbed.upstream import write_targets
from tests.chaos.harness import (
    Citizens,
    Clerk,
    Evaluator,
    Fleet,
    Ledger,
    Outlet,
    catalogue,
    material_bytes,
)
from tests.chaos.receiver import ChaosUpstream
from tests.e2e.conftest import Agent, poll

TOTAL = 10_000  # on SQLite; PostgreSQL runs SCALE[...] of it
SCALE = {"sqlite": 1.0, "postgresql": 0.3}
CLERKS = {"sqlite": 2, "postgresql": 1}  # submission clerks per agent
AGENTS = 3
SMALL_QUOTA = 1024 * 1024  # the minimum; fills during the broker outage
TARGETS = ["zhoushan", "hangzhou", "rejecting", "hcp"]
STALL_S = 45.0  # nothing delivered, stored or answered for this long: stuck
SETTLE_S = 330.0  # the whole drain after the last case was filed


@pytest.fixture
def upstream() -> Iterator[ChaosUpstream]:
    fake = ChaosUpstream()
    fake.start()
    for name in TARGETS:
        fake.target(name)
    fake.target("rejecting").mode = "reject"
    yield fake
    fake.stop()


def _phase(name: str, started: float, ledger: Ledger) -> None:
    print(f"[{time.monotonic() - started:6.1f}s] {name}: accepted {ledger.count()}", flush=True)


def _until(check: Callable[[], object], *, timeout: float, what: str) -> None:
    try:
        poll(check, timeout=timeout, interval=0.05)
    except pytest.fail.Exception as exc:
        raise AssertionError(f"chaos phase stuck: {what}") from exc


@pytest.fixture(params=sorted(SCALE))
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(kind, URL): a SQLite file, or a fresh database in the session's PostgreSQL."""
    if request.param == "postgresql":
        return "postgresql", str(request.getfixturevalue("postgres_url"))
    return "sqlite", f"sqlite:///{tmp_path / 'fleet.db'}"


@pytest.mark.timeout(600)
def test_every_accepted_case_reaches_upstream_exactly_once(
    private_broker: Mosquitto, upstream: ChaosUpstream, tmp_path: Path,
    database: tuple[str, str],
) -> None:  # fmt: skip
    started = time.monotonic()
    kind, database_url = database
    scale = SCALE[kind]
    total = int(TOTAL * scale)
    targets = write_targets(
        tmp_path / "targets.json", upstream, TARGETS,
        **{name: {"max_attempts": 1000, "backoff_max_s": 1.0, "breaker_cooldown_s": 0.5}
           for name in TARGETS},
    )  # fmt: skip
    fleet = Fleet(
        mqtt_url=private_broker.url,
        database_url=database_url,
        log=tmp_path / "server.log",
        env={
            "GOVEDGE_UPSTREAM_TARGETS_FILE": str(targets),
            "GOVEDGE_DELIVERY_POLL_INTERVAL_S": "0.1",
            "GOVEDGE_DELIVERY_LEASE_S": "3",  # above the 0.5 s target timeout
            "GOVEDGE_LOG_LEVEL": "WARNING",
            # The fleet-health ingest limiter (20 msg/s per outlet by default) drops what
            # exceeds it, transactions included; these agents send far faster on purpose.
            "GOVEDGE_INGEST_OUTLET_RATE_PER_S": "100000",
            "GOVEDGE_INGEST_OUTLET_BURST": "100000",
        },
    )
    fleet.start()
    fleet.post_json("/api/v1/catalogue/import", catalogue())

    citizens = Citizens(AGENTS)  # a pad at every outlet, the victim (outlet 0) included
    citizens.start()
    citizens.wait_ready()
    outlets: list[Outlet] = []
    for n in range(AGENTS):
        quota = SMALL_QUOTA if n == AGENTS - 1 else None
        pad = ["--config", str(citizens.config_for(n, tmp_path / f"agent-{n}.toml"))]
        agent = Agent(
            outlet_id=f"chaos-{n}",
            data_dir=tmp_path / "agents" / f"chaos-{n}",
            mqtt_url=private_broker.url,
            log=tmp_path / f"agent-{n}.log",
            extra=[
                "--outbox-rate", "1000", "--reconnect-base", "0.2", "--reconnect-cap", "1",
                "--telemetry-interval", "5", "--log-level", "INFO",
                *(["--outbox-quota", str(quota)] if quota else []),
                *pad,
            ],
        )  # fmt: skip
        outlet = Outlet(agent=agent, quota=quota)
        outlet.register_app()
        outlet.start()
        outlets.append(outlet)

    ledger = Ledger()
    stop = threading.Event()
    clerks = [
        Clerk(outlet, ledger, name=f"{outlet.outlet_id}-k{k}", stop=stop,
              note="备注" * 400 if outlet.quota else None)  # big entries fill the quota
        for outlet in outlets
        for k in range(CLERKS[kind])
    ]  # fmt: skip
    evaluators = [
        Evaluator(outlet, ledger, name=f"{outlet.outlet_id}-e", stop=stop) for outlet in outlets
    ]
    workers: list[Clerk | Evaluator] = [*clerks, *evaluators]
    try:
        for clerk in workers:
            clerk.start()
        _run_chaos(private_broker, upstream, fleet, outlets, ledger, citizens, started, scale)
        _until(lambda: ledger.count() >= total, timeout=180, what=f"{total} accepted")
        stop.set()
        for clerk in workers:
            clerk.join(timeout=60)
            assert clerk.error is None, f"{clerk.name}: {clerk.error!r}"
            assert not clerk.is_alive(), f"{clerk.name} still filing"
        _phase("all filed", started, ledger)
        _settle(fleet, upstream, ledger)
        _phase("settled", started, ledger)
        _check(fleet, upstream, ledger, started, total)
    finally:
        stop.set()
        for outlet in outlets:
            outlet.agent.stop()
        citizens.stop()
        if fleet.server is not None:
            from tests.e2e.conftest import stop_process

            stop_process(fleet.server.proc)


def _run_chaos(
    broker: Mosquitto,
    upstream: ChaosUpstream,
    fleet: Fleet,
    outlets: list[Outlet],
    ledger: Ledger,
    citizens: Citizens,
    started: float,
    scale: float,
) -> None:
    def at(count: int) -> None:
        _until(lambda: ledger.count() >= count, timeout=120, what=f"{count} accepted")

    def n(count: int) -> int:
        return int(count * scale)

    # 1. Upstream answers 5xx, then processes but answers too late, then recovers.
    at(n(1000))
    _phase("upstream 5xx", started, ledger)
    upstream.set_mode("error")
    at(n(1600))
    _phase("upstream late (processed, answer after the timeout)", started, ledger)
    upstream.set_mode("late", hang_s=1.0)
    at(n(2200))
    upstream.set_mode("ok")
    _phase("upstream ok", started, ledger)

    # 2. Broker SIGKILLed; outboxes fill; one agent SIGKILLed with unsent cases; back.
    at(n(3000))
    broker.kill()
    _phase("broker killed", started, ledger)
    victim, small = outlets[0], outlets[-1]
    before = ledger.outlet_count(victim.outlet_id)
    _until(
        lambda: ledger.outlet_count(victim.outlet_id) >= before + 300,
        timeout=60, what="the victim accepting with the broker down",
    )  # fmt: skip
    _until(lambda: ledger.refused_count() > 0, timeout=90, what="a 507 from the small outbox")
    citizens.held.add(0)  # the victim's citizen stops rating: an evaluation waits on its pad
    _until(lambda: citizens.showing(0), timeout=30, what="an evaluation waiting at the victim")
    _phase(f"{small.outlet_id} refused (507); killing {victim.outlet_id}", started, ledger)
    victim.kill()  # cuts that evaluation's HTTP request: the clerk app resends its key
    citizens.held.discard(0)  # rates the dead agent's request: nobody takes that report
    victim.start()
    _phase(f"{victim.outlet_id} restarted on its data dir", started, ledger)
    broker.start()
    _phase("broker back", started, ledger)

    # 3. Fleet server SIGKILLed while it ingests, restarted on the same database.
    at(ledger.count() + n(1000))
    seen = fleet.tx_accepted()
    _until(lambda: fleet.tx_accepted() > seen, timeout=60, what="the server ingesting")
    fleet.kill()
    _phase("fleet server killed mid-ingest", started, ledger)
    at(ledger.count() + n(300))
    fleet.start()
    _phase("fleet server back", started, ledger)

    # 4. Upstream down (socket closed), then back.
    at(ledger.count() + n(800))
    upstream.stop()
    _phase("upstream down", started, ledger)
    at(ledger.count() + n(600))
    upstream.start()
    _phase("upstream back", started, ledger)


def _settle(fleet: Fleet, upstream: ChaosUpstream, ledger: Ledger) -> None:
    """Wait until the inbox holds every accepted case, none is pending, upstream is quiet.

    The backlog left by the chaos varies with the machine's load (the clerks keep filing
    while the server restarts), so the deadline is on progress: stuck means nothing
    changed for STALL_S; a drain slower than SETTLE_S in all fails too.
    """
    expected = len(ledger.accepted)
    last: dict[str, object] = {"snap": None, "since": time.monotonic()}

    def settled() -> bool:
        by_state = fleet.get("/api/v1/transactions/status")["by_state"]
        stored = sum(by_state.values())
        snap = (upstream.snapshot(), stored, by_state.get("pending", 0))
        now = time.monotonic()
        if snap != last["snap"]:
            last["snap"], last["since"] = snap, now
            return False
        quiet = now - float(last["since"])  # type: ignore[arg-type]
        done = stored >= expected and by_state.get("pending", 0) == 0
        if not done and quiet >= STALL_S:
            raise AssertionError(
                f"stuck for {STALL_S} s: {snap}, expected {expected}\n{_stuck_report(fleet)}"
            )
        return done and quiet >= 2.0

    try:
        poll(settled, timeout=SETTLE_S, interval=0.25)
    except pytest.fail.Exception as exc:
        raise AssertionError(
            f"not settled in {SETTLE_S} s: {last['snap']}, expected {expected}\n"
            f"{_stuck_report(fleet)}"
        ) from exc


def _stuck_report(fleet: Fleet) -> str:
    """What a failed settle needs to be understood from CI output alone: the worker's
    breakers and counters, a sample of the rows still pending, the server log's tail."""
    status = fleet.get("/api/v1/transactions/status")
    pending = fleet.get("/api/v1/transactions?state=pending&limit=20")
    rows = [
        (row["tx_kind"], row.get("target"), row["attempts"], row["next_due_at"],
         row["last_error"])
        for row in pending
    ]  # fmt: skip
    log = fleet.log.read_text(errors="replace").splitlines()[-40:]
    return "\n".join(
        [f"breakers {status['breakers']}", f"counters {status['counters']}",
         "pending sample (kind, target, attempts, next due, last error):",
         *map(str, rows), "server log tail:", *log]
    )  # fmt: skip


def _check(
    fleet: Fleet, upstream: ChaosUpstream, ledger: Ledger, started: float, total: int
) -> None:
    accepted = ledger.accepted
    should_reject = {key for key, rejects in accepted.items() if rejects}
    should_deliver = set(accepted) - should_reject
    # Upstream knows each case by {outlet_id}:{tx_id} (docs/transactions.md); the
    # clerks' keys (= tx_ids) are compared through the document each key carried.
    assert all(
        key == f"{doc['body']['outlet_id']}:{doc['body']['tx_id']}"
        for key, doc in upstream.accepted.items()
    )
    docs = {doc["body"]["tx_id"]: doc for doc in upstream.accepted.values()}
    at_upstream = set(docs)
    dead = fleet.get("/api/v1/dead-letters?limit=5000&include_replayed=true")
    by_state = fleet.get("/api/v1/transactions/status")["by_state"]
    resent = sum(n - 1 for n in upstream.answered_ok.values() if n > 1)
    print(
        f"\nchaos summary: {len(accepted)} accepted ({len(should_reject)} to be rejected), "
        f"{len(ledger.refused)} refused with 507; clerk answers {dict(ledger.answers)}; "
        f"upstream holds {len(at_upstream)} keys from {sum(upstream.received.values())} "
        f"requests ({resent} answered again as known keys; {upstream.truncated} cut short "
        f"by a killed sender); {len(ledger.evaluations)} evaluations rated, "
        f"{len(ledger.refused_cases)} refused with 507; inbox {by_state}; "
        f"dead letters {len(dead)}; {len(ledger.materials)} cases with a scan; "
        f"wall time {time.monotonic() - started:.1f} s",
        flush=True,
    )
    assert len(accepted) >= total
    assert ledger.refused, "no 507 seen: the outbox quota was never tested"
    missing = should_deliver - at_upstream
    extra = at_upstream - should_deliver
    assert not missing, f"{len(missing)} accepted never reached upstream: {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} cases at upstream were never accepted: {sorted(extra)[:5]}"
    assert not (at_upstream & ledger.refused)
    doubled = [key for key, n in upstream.accepted_count.items() if n != 1]
    assert not doubled, f"recorded more than once upstream: {doubled[:5]}"
    # A body cut by the SIGKILLed server is ``truncated``, not a bad signature (receiver).
    assert upstream.bad_signatures == 0
    _check_materials(upstream, ledger, should_deliver)
    evaluations_upstream = {key for key, doc in docs.items()
                            if doc["body"]["tx_kind"] == "evaluation"}  # fmt: skip
    assert ledger.evaluations, "no evaluation was rated: the 好差评 path was not tested"
    assert ledger.answers["evaluation:retried"] > 0, "no evaluation was cut by the kill"
    victim_evaluations = {key for key in ledger.evaluations if key.startswith("eval-chaos-0-")}
    assert victim_evaluations, "no evaluation rated at the SIGKILLed outlet"
    assert evaluations_upstream == ledger.evaluations
    hcp = {key.partition(":")[2] for key in upstream.by_target.get("hcp", [])}
    assert hcp == ledger.evaluations
    rated_cases = {docs[key]["body"]["body"].get("case_number")
                   for key in evaluations_upstream}  # fmt: skip
    refused_cases = rated_cases & ledger.refused_cases
    assert not refused_cases, f"evaluations refused with 507 reached upstream: {refused_cases}"
    dead_ids = [row["tx_id"] for row in dead]
    assert len(dead_ids) == len(set(dead_ids)), "a transaction dead-lettered twice"
    assert set(dead_ids) == should_reject, (
        f"dead letters differ: missing {sorted(should_reject - set(dead_ids))[:5]}, "
        f"unexpected {sorted(set(dead_ids) - should_reject)[:5]}"
    )
    assert {row["reason"] for row in dead} == {"rejected"}
    assert by_state == {"delivered": len(should_deliver), "dead": len(should_reject)}


def _check_materials(upstream: ChaosUpstream, ledger: Ledger, delivered: set[str]) -> None:
    """Each delivered case with a scan came upstream once with exactly its bytes."""
    with_scan = {key: sha for key, sha in ledger.materials.items() if key in delivered}
    assert with_scan, "no case with a scan was delivered: the material path was not tested"
    chunked = [key for key in with_scan if len(material_bytes(key)) > 180 * 1024]
    assert chunked, "no scan of two chunks was delivered"
    assert upstream.bad_materials == 0, "a material part disagreed with its signed document"
    by_tx = {key.partition(":")[2]: files for key, files in upstream.files.items()}
    for key, sha in with_scan.items():
        files = by_tx.get(key)
        assert files is not None, f"{key}: no material reached upstream"
        assert len(files) == 1, f"{key}: {len(files)} material parts"
        assert files[0]["sha256"] == sha, f"{key}: wrong material bytes upstream"
        assert files[0]["data"] == material_bytes(key), f"{key}: wrong material bytes upstream"
    carried = {key for key in delivered - set(with_scan) if by_tx.get(key)}
    assert not carried, f"cases without a scan arrived with materials: {sorted(carried)[:5]}"
