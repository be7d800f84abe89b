"""Each outlet's 好差评 rules: the server's profile with its signed config's ``evaluation``.

An outlet whose desired config (``outlet_configs.desired``, what was signed for it) has
an ``evaluation`` part gets the server's profile with every field that part sets
replaced (``evaluations.rules.with_config``); any other outlet gets the profile as is.
The ingest asks once per evaluation, up to 15,000 messages a second, so the answer is a
dict lookup: the table is re-read every ``refresh_s`` (or at the next call after
``invalidate``), and only the outlets whose ``desired_hash`` changed are parsed again.
Outlets with equal ``evaluation`` parts share one rules object.

Rules are applied when an evaluation is ingested; one already stored keeps the stars,
default flag and deadline it got then (docs/evaluations.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.config.outlet_rows import desired_hash_changes
from fleet_server.config.tables import OutletConfig
from fleet_server.evaluations.rules import EvaluationRules, with_config
from fleet_server.ingest.stats import RateLimitedLog
from govedge_wire.config import EvaluationConfig, canonical_json

__all__ = ["OutletEvaluationRules"]

logger = logging.getLogger(__name__)
_CHUNK = 500  # outlet ids per IN (...) when reading changed configs


class OutletEvaluationRules:
    """``rules(outlet_id)``: that outlet's rules; safe from any thread."""

    def __init__(
        self,
        base: EvaluationRules,
        *,
        sessions: sessionmaker[Session],
        refresh_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = base
        self._sessions = sessions
        self._refresh_s = refresh_s
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()
        self._log = RateLimitedLog(logger)
        # Replaced whole on refresh, so readers never see a half-built map.
        self._by_outlet: dict[str, EvaluationRules] = {}
        self._hashes: dict[str, str | None] = {}
        self._by_part: dict[bytes, EvaluationRules] = {}
        self.refresh_errors = 0
        self.invalid_configs = 0

    def __call__(self, outlet_id: str) -> EvaluationRules:
        if self._clock() >= self._next:
            self.refresh()
        return self._by_outlet.get(outlet_id, self.base)

    def errors(self) -> dict[str, int]:
        """Failed re-reads and invalid evaluation parts seen, for ``/metrics``."""
        return {"refresh": self.refresh_errors, "invalid_config": self.invalid_configs}

    def invalidate(self) -> None:
        """Re-read at the next call (after this process wrote ``outlet_configs``)."""
        self._next = 0.0

    def refresh(self) -> None:
        """Re-read the table; on a database error the rules read last stay in force.

        A caller finding another thread refreshing goes on with the current map.
        """
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._next = self._clock() + self._refresh_s
            with self._sessions() as session:
                self._reload(session)
        except SQLAlchemyError as exc:
            self.refresh_errors += 1
            self._log.exception(
                "evaluation_rules", "could not read the outlets' evaluation configs", exc=exc
            )
        finally:
            self._lock.release()

    def load(self) -> None:
        """The first read, at start: a database error is raised, not logged."""
        with self._lock, self._sessions() as session:
            self._next = self._clock() + self._refresh_s
            self._reload(session)

    def _reload(self, session: Session) -> None:
        hashes, stale = desired_hash_changes(session, self._hashes)
        changed = set(stale)
        by_outlet = {
            outlet: rules
            for outlet, rules in self._by_outlet.items()
            if outlet in hashes and outlet not in changed
        }
        for outlet, desired in _desired(session, sorted(changed)):
            rules = self._rules_of(outlet, desired)
            if rules is not None:
                by_outlet[outlet] = rules
        self._by_outlet, self._hashes = by_outlet, hashes
        used = {id(rules) for rules in by_outlet.values()}
        self._by_part = {key: r for key, r in self._by_part.items() if id(r) in used}

    def _rules_of(self, outlet_id: str, desired: object) -> EvaluationRules | None:
        part = desired.get("evaluation") if isinstance(desired, dict) else None
        if part is None:
            return None
        try:
            config = EvaluationConfig.model_validate(part)
        except ValidationError:
            # Signed configs are validated first; a row that is not is someone's bug.
            self.invalid_configs += 1
            self._log.warning(
                "evaluation_config_invalid",
                "outlet %s: its desired evaluation config is not valid; the server's "
                "profile applies",
                outlet_id,
            )
            return None
        key = canonical_json(config.model_dump(mode="json", exclude_none=True))
        rules = self._by_part.get(key)
        if rules is None:
            rules = self._by_part[key] = with_config(self.base, config)
        return rules


def _desired(session: Session, outlet_ids: list[str]) -> Iterable[tuple[str, object]]:
    for start in range(0, len(outlet_ids), _CHUNK):
        chunk = outlet_ids[start : start + _CHUNK]
        rows = session.execute(
            select(OutletConfig.outlet_id, OutletConfig.desired).where(
                OutletConfig.outlet_id.in_(chunk)
            )
        )
        yield from ((row.outlet_id, row.desired) for row in rows)
