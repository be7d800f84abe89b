"""A simulated citizen at the simulated pad: rates every request it is shown.

For demos (``simulate_ratings``): without it nobody presses the simulated pad, so a
clerk app's ``POST /v1/evaluations`` would always end in a walk-away and the fleet's
好差评 figures would stay empty. The citizen rates the requests in turn with the given
stars, cycling through them, after a short pause as a person would.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from typing import Final

from edge_agent.devices.evaluation_pad.simulator import EvaluationPadSimulator

__all__ = ["rate_every_request"]

log = logging.getLogger(__name__)

# Long enough for the clerk app to see the pad showing, short enough for a demo.
THINK_S: Final = 1.0
_WAIT_S: Final = 3600.0


async def rate_every_request(pad: EvaluationPadSimulator, ratings: Sequence[int]) -> None:
    """Press ``ratings`` (1-5 stars) on ``pad`` one request at a time, forever."""
    for stars in itertools.cycle(ratings):
        while True:
            try:
                await pad.wait_for_request(within=_WAIT_S)
                break
            except TimeoutError:
                continue
        await asyncio.sleep(THINK_S)
        if pad.showing is None:  # it timed out meanwhile: the citizen walked away
            continue
        pad.press(stars)
        log.info("simulated citizen rated %d stars", stars)
