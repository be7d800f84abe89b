"""The reconciler: sign and publish every outlet whose effective config changed.

One pass reads the whole fleet in bulk (scope documents, profiles, ``outlet_configs``),
computes each outlet's effective config, and for those whose normalised hash differs
from ``desired_hash``: holds it (closed-hours changes, ``holds``), or bumps the outlet's
version, signs it, and stores desired, envelope and ``issued_at`` with ``published_at``
NULL — all outlets in one commit. Then it publishes every envelope not yet published
(retained, QoS 1) and sets ``published_at`` after the broker's PUBACK, so a crash
between commit and publish is repaired by the next pass. Passes run in one thread: at
start (catch-up), when woken (``wake``, after a scope changed) and every ``interval_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.config.effective import Effective, effective_all
from fleet_server.config.holds import (
    LayerVersion,
    current_layer_versions,
    hold_for,
    hours_for,
    waiting_scopes,
)
from fleet_server.config.keys import ConfigKeys
from fleet_server.config.normalise import Normalised, Normaliser, Refused
from fleet_server.config.outlet_rows import (
    OutletRow,
    Raced,
    load_rows,
    mark_published,
    unpublished,
    write_held,
    write_signed,
)
from fleet_server.config.stats import ConfigStats
from fleet_server.health.tables import OutletProfile
from govedge_wire.config import MAX_ENVELOPE_BYTES, SignedConfig, sign_config

logger = logging.getLogger(__name__)


class Delivery(Protocol):
    """paho's ``MQTTMessageInfo``: what a publish returns."""

    def wait_for_publish(self, timeout: float | None = None) -> None:
        """Block until the broker acknowledged, or ``timeout``."""

    def is_published(self) -> bool:
        """True once acknowledged."""


class ConfigPublishing(Protocol):
    """The ingest's publisher (``fleet_server.ingest.publisher.Publisher``)."""

    def publish_config(self, signed: SignedConfig) -> Delivery | None:
        """Publish retained on the outlet's ``down/config``; None while disconnected."""


@dataclass(slots=True)
class PassResult:
    """What one pass did, by outlet id."""

    signed: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Plan:
    signed: list[dict[str, Any]] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)
    result: PassResult = field(default_factory=PassResult)


class Reconciler:
    """Signs and publishes effective configs; ``run_pass`` is the unit tests drive."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        keys: ConfigKeys,
        publisher: ConfigPublishing,
        stats: ConfigStats,
        interval_s: float = 60.0,
        default_zone: str = "Asia/Shanghai",
        publish_timeout_s: float = 10.0,
        retry_s: float = 2.0,
        on_signed: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._keys = keys
        self._publisher = publisher
        self._stats = stats
        self._interval_s = interval_s
        self._zone = default_zone
        self._publish_timeout_s = publish_timeout_s
        # Told after a pass stored new desired configs (the per-outlet 好差评 rules reload).
        self._on_signed = on_signed
        # Envelopes left unpublished (broker not yet connected at start, or away), or a
        # pass lost a race: the next pass comes after retry_s rather than an interval.
        self._retry_s = retry_s
        self._left_unpublished = False
        self._normaliser = Normaliser()
        # Outlet → the refusal last logged, so an unchanged bad config is logged once.
        self._refusals: dict[str, str] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one pass at a time (thread, tests, API)
        # Held while reading envelopes and handing them to paho, here and in the report
        # desk's republish, so envelopes go out in the order they were read.
        self.publish_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="config-reconciler", daemon=True)
        stats.signing_key = keys.can_sign

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Start passing (the first pass at once); without a key, warn and do nothing."""
        if not self._keys.can_sign:
            logger.warning(
                "no config signing key (GOVEDGE_CONFIG_SIGNING_KEY or the systemd credential "
                "govedge-config-signing-key): outlets' configs are neither signed nor "
                "published; make one with `fleet-server config-key generate PATH`"
            )
            return
        logger.info("config reconciler signing with key %s", self._keys.key_id)
        self._thread.start()

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop after the pass in progress."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def wake(self) -> None:
        """A scope changed: pass now (``AppState.config_changed``)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.run_pass()
            except Exception:  # the thread must outlive any bug or database outage
                self._stats.count("pass_errors")
                logger.exception("config pass failed; trying again at the next")
            self._wake.wait(
                min(self._retry_s, self._interval_s) if self._left_unpublished else self._interval_s
            )

    # -- one pass --------------------------------------------------------------

    def run_pass(self, *, now: datetime | None = None) -> PassResult:
        """Sign what changed, store it in one commit, publish what is unpublished."""
        if not self._keys.can_sign:
            return PassResult()
        now = now or datetime.now(UTC)
        with self._lock:
            started = time.perf_counter()
            try:
                with self._sessions.begin() as session:
                    effective = effective_all(session)
                    versions = current_layer_versions(session)
                    hours: dict[str, Any] = dict(
                        session.execute(
                            select(OutletProfile.outlet_id, OutletProfile.opening_hours)
                        ).all()
                    )
                    rows = load_rows(session)
                    plan = self._plan(effective, rows, versions, hours, now=now)
                    write_signed(session, plan.signed)
                    write_held(session, plan.held)
            except (Raced, IntegrityError) as exc:  # another process or the report desk
                # inserted or changed a row meanwhile
                self._stats.count("pass_errors")
                logger.warning(
                    "config pass rolled back (%s); the next starts over", type(exc).__name__
                )
                self._left_unpublished = True  # soon: retry_s, not a whole interval
                return PassResult()
            result = plan.result
            if result.signed and self._on_signed is not None:
                self._on_signed()
            result.published = self._publish_pending()
            self._stats.count("passes")
            self._stats.count("signed", len(result.signed))
            self._gauges(rows, plan)
            if result.signed or result.held or result.published:
                logger.info(
                    "config pass: %d signed, %d held, %d published in %.2f s",
                    len(result.signed), len(result.held), len(result.published),
                    time.perf_counter() - started,
                )  # fmt: skip
            return result

    def _plan(
        self,
        effective: Mapping[str, Effective],
        rows: Mapping[str, OutletRow],
        versions: Mapping[str, LayerVersion],
        profile_hours: Mapping[str, Any],
        *,
        now: datetime,
    ) -> _Plan:
        plan = _Plan()
        for outlet_id, eff in effective.items():
            row = rows.get(outlet_id)
            normalised = self._normaliser.normalise(eff.config)
            if isinstance(normalised, Refused):
                self._refuse(outlet_id, normalised, plan)
                continue
            self._refusals.pop(outlet_id, None)
            desired_hash = row.desired_hash if row is not None else None
            if (
                row is not None
                and normalised.hash == desired_hash
                and row.signed_key_id not in (None, self._keys.key_id)
            ):
                # A rotated signing key: the same config, signed anew (docs/config.md).
                self._sign(outlet_id, row, normalised, now=now, plan=plan)
                continue
            if normalised.hash == desired_hash or (desired_hash is None and not normalised.body):
                # Unchanged (or empty and never had one): a held change was taken back.
                if row is not None and row.held is not None:
                    plan.held.append(_held_row(row, None))
                continue
            scopes = waiting_scopes(
                eff.layers, versions, since=row.issued_at if row is not None else None
            )
            if scopes:
                hours = hours_for(normalised.body, profile_hours.get(outlet_id))
                hold = hold_for(hours, now=now, default_zone=self._zone, scopes=scopes)
                if hold is not None:
                    held = {
                        "config": normalised.body,
                        "hash": normalised.hash,
                        "reason": hold.reason,
                        "not_before": hold.not_before.isoformat() if hold.not_before else None,
                        "scopes": scopes,
                    }
                    if row is None or row.held != held:
                        plan.held.append(_held_row(row, held, outlet_id=outlet_id))
                    plan.result.held.append(outlet_id)
                    continue
            self._sign(outlet_id, row, normalised, now=now, plan=plan)
        return plan

    def _sign(
        self,
        outlet_id: str,
        row: OutletRow | None,
        normalised: Normalised,
        *,
        now: datetime,
        plan: _Plan,
    ) -> None:
        private_key, key_id = self._keys.private_key, self._keys.key_id
        assert private_key is not None, "run_pass returns early without a key"
        assert key_id is not None, "a loaded key has an id"
        # Above anything the agent has seen, or a restored database's configs would be
        # refused as replays.
        version = (
            max(row.desired_version, row.reported_version or 0, row.refused_version or 0)
            if row is not None
            else 0
        ) + 1
        try:
            signed = sign_config(
                private_key,
                key_id=key_id,
                outlet_id=outlet_id,
                version=version,
                config=normalised.body,
                issued_at=now,
            )
        except (ValidationError, ValueError) as exc:
            self._refuse(outlet_id, Refused("invalid", str(exc).splitlines()[0]), plan)
            return
        size = len(signed.to_bytes())
        if size > MAX_ENVELOPE_BYTES:
            self._refuse(outlet_id, Refused("oversize", f"envelope of {size} bytes"), plan)
            return
        reported = row.reported_hash if row is not None else None
        in_sync = reported == normalised.hash
        # Out of sync from now until the agent reports this hash (it may already run it).
        in_sync_since = drifting_since = None
        if in_sync:
            in_sync_since = (row.in_sync_since if row is not None else None) or now
        else:
            drifting_since = (row.drifting_since if row is not None else None) or now
        plan.signed.append(
            {
                "outlet_id": outlet_id,
                "old_version": row.desired_version if row is not None else None,
                "desired_version": version,
                "desired_hash": normalised.hash,
                "desired": normalised.body,
                "envelope": signed.model_dump(mode="json"),
                "issued_at": signed.issued_at,
                "published_at": None,
                "held": None,
                "in_sync_since": in_sync_since,
                "drifting_since": drifting_since,
            }
        )
        plan.result.signed.append(outlet_id)

    def _refuse(self, outlet_id: str, refused: Refused, plan: _Plan) -> None:
        """Keep the outlet's last config; log and count a refusal once while it lasts."""
        plan.result.refused[outlet_id] = refused.reason
        text = f"{refused.reason}: {refused.detail}"
        if self._refusals.get(outlet_id) == text:
            return
        self._refusals[outlet_id] = text
        self._stats.refused_by_server(refused.reason)
        logger.warning(
            "outlet %s: effective config not signed (%s); it keeps its last config",
            outlet_id,
            text,
        )

    def _publish_pending(self) -> list[str]:
        """Publish every stored, unpublished envelope; mark those the broker acknowledged."""
        sent: list[tuple[str, int, Delivery]] = []
        invalid = 0
        with self.publish_lock:
            with self._sessions() as session:
                pending = unpublished(session)
            for outlet_id, version, envelope in pending:
                try:
                    signed = SignedConfig.model_validate(envelope)
                except ValidationError:  # stays unpublished; the next change replaces it
                    invalid += 1
                    self._stats.dropped("stored_envelope_invalid")
                    logger.warning("outlet %s: stored envelope v%d invalid", outlet_id, version)
                    continue
                delivery = self._publisher.publish_config(signed)
                if delivery is None:
                    break  # the broker is away: the next pass publishes
                sent.append((outlet_id, version, delivery))
        deadline = time.monotonic() + self._publish_timeout_s
        done: list[tuple[str, int]] = []
        for outlet_id, version, delivery in sent:
            try:
                delivery.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                continue
            if delivery.is_published():
                done.append((outlet_id, version))
        if done:
            with self._sessions.begin() as session:
                mark_published(session, done, at=datetime.now(UTC))
            self._stats.count("published", len(done))
        waiting = len(pending) - invalid - len(done)
        self._left_unpublished = waiting > 0
        if waiting:
            logger.info("%d configs wait to be published", waiting)
        return [outlet_id for outlet_id, _ in done]

    def _gauges(self, rows: Mapping[str, OutletRow], plan: _Plan) -> None:
        held = {row.outlet_id for row in rows.values() if row.held is not None}
        for change in plan.held:
            (held.add if change["held"] is not None else held.discard)(change["outlet_id"])
        drifting = {row.outlet_id for row in rows.values() if row.drifting_since is not None}
        for change in plan.signed:
            target = drifting.add if change["drifting_since"] is not None else drifting.discard
            target(change["outlet_id"])
        self._stats.gauges(held=len(held), drifting=len(drifting))


def _held_row(
    row: OutletRow | None, held: dict[str, Any] | None, *, outlet_id: str | None = None
) -> dict[str, Any]:
    return {
        "outlet_id": row.outlet_id if row is not None else outlet_id,
        "old_version": row.desired_version if row is not None else None,
        "held": held,
    }
