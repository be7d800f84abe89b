"""Speak announcements: render the text to a WAV file with espeak-ng (Mandarin voice ``cmn``).

espeak-ng runs as a subprocess under a deadline, so the event loop never blocks and a
hung synthesiser is killed. Digits are spelled one by one first (``speech_text``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from edge_agent.queueing.announce import speech_text
from edge_agent.queueing.errors import QueueError

logger = logging.getLogger(__name__)


class VoiceError(QueueError):
    """The announcement could not be rendered (no espeak-ng, it failed or hung)."""


async def render_announcement(
    text: str,
    path: Path,
    *,
    voice: str = "cmn",
    speed: int = 150,
    within: float = 15.0,
    espeak: str = "espeak-ng",
) -> Path:
    """Write ``text`` (as spoken) to ``path`` as a WAV; ``VoiceError`` on any failure."""
    spoken = speech_text(text)
    try:
        proc = await asyncio.create_subprocess_exec(
            espeak,
            "-v",
            voice,
            "-s",
            str(speed),
            "-w",
            str(path),
            "--",
            spoken,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise VoiceError(f"cannot run {espeak}: {exc}") from exc
    try:
        async with asyncio.timeout(within):
            _, stderr = await proc.communicate()
    except TimeoutError as exc:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise VoiceError(f"{espeak} did not finish within {within:g} s") from exc
    if proc.returncode != 0 or not await asyncio.to_thread(path.exists):
        raise VoiceError(
            f"{espeak} failed with exit code {proc.returncode}: "
            f"{stderr.decode('utf-8', 'replace').strip()[:200]}"
        )
    logger.debug("rendered an announcement to %s", path)
    return path
