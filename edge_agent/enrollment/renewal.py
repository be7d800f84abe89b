"""Renew the certificate while the agent runs, at two thirds of its validity.

A renewed certificate is used from the next MQTT connect; one not issued by the pinned
fleet CA is refused and counted (docs/security.md, "Outlet identity").
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from edge_agent.backoff import full_jitter_delay
from edge_agent.counters import AgentCounters
from edge_agent.enrollment.client import renew
from edge_agent.enrollment.errors import EnrollmentError, UntrustedAnswer
from edge_agent.enrollment.store import Identity, TlsStore

log = logging.getLogger(__name__)

RENEW_FRACTION: Final = 2 / 3
MAX_SLEEP_S: Final = 3600.0
RETRY_BASE_S: Final = 30.0
RETRY_CAP_S: Final = 3600.0
HTTP_TIMEOUT_S: Final = 30.0


def renew_at(identity: Identity) -> datetime:
    """When to renew: two thirds into the certificate's validity."""
    span = identity.not_after - identity.not_before
    return identity.not_before + span * RENEW_FRACTION


class RenewalLoop:
    """Runs forever (until cancelled) keeping the certificate in ``keys_dir`` fresh."""

    def __init__(
        self,
        keys_dir: Path,
        *,
        max_sleep_s: float = MAX_SLEEP_S,
        counters: AgentCounters | None = None,
    ) -> None:
        self._keys_dir = keys_dir
        self._store = TlsStore(keys_dir)
        self._max_sleep_s = max_sleep_s
        self.counters = counters or AgentCounters()

    @property
    def renewals(self) -> int:
        """Certificates renewed by this loop."""
        return self.counters.get("cert_renewals")

    async def run(self) -> None:
        """Sleep until due, renew, repeat; failures are logged and retried."""
        attempt = 0
        while True:
            identity = await asyncio.to_thread(self._store.identity)
            wait_s = (renew_at(identity) - datetime.now(UTC)).total_seconds()
            if wait_s > 0:
                await asyncio.sleep(min(wait_s, self._max_sleep_s))
                continue
            try:
                renewed = await asyncio.to_thread(
                    renew, keys_dir=self._keys_dir, timeout=HTTP_TIMEOUT_S
                )
            except EnrollmentError as exc:
                delay = full_jitter_delay(attempt, base=RETRY_BASE_S, cap=RETRY_CAP_S)
                attempt += 1
                if isinstance(exc, UntrustedAnswer):
                    self.counters.incr("cert_renewals_refused")
                    log.error(  # noqa: TRY400 - the reason is the message, no traceback
                        "certificate renewal REFUSED, the current certificate stays in use: "
                        "%s; retrying in %.0f s",
                        exc,
                        delay,
                    )
                else:
                    self.counters.incr("cert_renewal_failures")
                    log.warning("certificate renewal failed: %s; retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self.counters.incr("cert_renewals")
            log.info("certificate renewed; valid until %s", renewed.not_after.isoformat())
