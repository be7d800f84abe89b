"""Play announcements on the outlet PC's own audio output, one after another.

For halls where no display page plays the voice (docs/queue.md, "Voice at the
outlet"). Announcements wait in a bounded queue and one worker plays them in turn, so
two windows calling at once are heard one after the other, never over each other.
Playing is a subprocess (``paplay`` for PulseAudio or PipeWire's pulse server, ``aplay``
for bare ALSA) fed the WAV on stdin under a deadline, so the event loop never waits for
a sound card and a hung player is killed. The WAV's bytes are taken when it is queued:
the announcement store may delete old files before a long queue reaches them.

A missing sound server or device is a logged, counted condition (``voice_failed``,
at most one log line a minute per reason), never an error of the call: the clerk's
operation is done; the hall only stays silent.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import io
import logging
import os
import sys
import wave
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from edge_agent.counters import AgentCounters, LogLimiter

__all__ = ["AnnouncementPlayer", "PlaybackSettings", "VoiceOutput", "scaled"]

log = logging.getLogger(__name__)

VoiceOutput = Literal["off", "pulse", "alsa"]
_PA_NORM: Final = 65536  # PulseAudio's 100 %


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackSettings:
    """Where and how loud the agent plays announcements itself."""

    output: VoiceOutput = "off"
    device: str | None = None  # a PulseAudio sink or an ALSA PCM; None: the default one
    pulse_server: str | None = None  # PULSE_SERVER for paplay (a system service's agent)
    volume: int = 100  # percent, as a desktop's volume slider shows it
    within_s: float = 60.0  # longest one announcement may take to play
    queued: int = 16  # announcements waiting at most; more are dropped (counted)


class AnnouncementPlayer:
    """A queue of WAVs and the one worker (``run``) that plays them in order."""

    def __init__(
        self,
        settings: PlaybackSettings,
        *,
        counters: AgentCounters | None = None,
        volume: Callable[[], int | None] | None = None,
    ) -> None:
        """``volume()`` is a live override (a fleet config's ``queue.voice.volume``)."""
        self.settings = settings
        self.counters = counters or AgentCounters()
        self._volume = volume
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(settings.queued)
        self._limiter = LogLimiter(60.0)
        self.last_error: str | None = None

    @property
    def enabled(self) -> bool:
        """True unless the output is ``off``."""
        return self.settings.output != "off"

    def volume(self) -> int:
        """The volume in force, percent: the fleet's if it set one, else the settings'."""
        live = self._volume() if self._volume is not None else None
        return self.settings.volume if live is None else live

    def enqueue(self, label: str, wav: bytes) -> bool:
        """Queue one announcement; False (counted ``voice_dropped``) if the queue is full."""
        try:
            self._queue.put_nowait((label, wav))
        except asyncio.QueueFull:
            self.counters.incr("voice_dropped")
            if self._limiter.allow("full"):
                log.warning(
                    "announcement %s not played: %d already waiting", label, self._queue.qsize()
                )
            return False
        return True

    async def run(self) -> None:
        """Play queued announcements one at a time until cancelled."""
        while True:
            label, wav = await self._queue.get()
            try:
                await self._play(label, wav)
            finally:
                self._queue.task_done()

    async def drained(self) -> None:
        """Wait until every queued announcement was played (or failed)."""
        await self._queue.join()

    def command(self) -> list[str]:
        """The player's command line for the output in force (WAV on stdin)."""
        device = self.settings.device
        if self.settings.output == "pulse":
            volume = round(_PA_NORM * self.volume() / 100)
            return [
                "paplay",
                "--client-name=govedge-agent",
                f"--volume={volume}",
                *([f"--device={device}"] if device else []),
            ]
        return ["aplay", "-q", *(["-D", device] if device else []), "-"]

    async def _play(self, label: str, wav: bytes) -> None:
        if self.settings.output == "alsa":
            # aplay has no volume of its own; scale the samples the way PulseAudio's
            # (cubic) volume does, so a percent means the same on both outputs.
            wav = await asyncio.to_thread(scaled, wav, self.volume())
        env = dict(os.environ)
        if self.settings.pulse_server:
            env["PULSE_SERVER"] = self.settings.pulse_server
        problem = await self._run(self.command(), wav, env)
        if problem is None:
            self.counters.incr("voice_played")
            self.last_error = None
            return
        self.counters.incr("voice_failed")
        self.last_error = problem
        if self._limiter.allow(problem):
            log.warning(
                "announcement %s not played on the outlet's %s output: %s "
                "(technicians: check the sound server and voice_device)",
                label,
                self.settings.output,
                problem,
            )

    async def _run(self, argv: list[str], wav: bytes, env: dict[str, str]) -> str | None:
        """Run the player; None when it played, else why not (one line)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            return f"cannot run {argv[0]}: {exc.strerror or exc}"
        try:
            async with asyncio.timeout(self.settings.within_s):
                _, stderr = await proc.communicate(wav)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return f"{argv[0]} did not finish within {self.settings.within_s:g} s"
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        if proc.returncode == 0:
            return None
        lines = stderr.decode("utf-8", "replace").strip().splitlines()
        return f"{argv[0]} exit code {proc.returncode}: {lines[-1] if lines else 'no message'}"[
            :200
        ]


def scaled(wav: bytes, percent: int) -> bytes:
    """``wav`` (16-bit PCM) at ``percent`` volume on PulseAudio's cubic scale."""
    if percent >= 100:
        return wav
    with wave.open(io.BytesIO(wav)) as src:
        params = src.getparams()
        frames = src.readframes(params.nframes)
    if params.sampwidth != 2:
        return wav  # espeak-ng writes 16-bit; anything else plays as it is
    samples = array.array("h", frames)
    if sys.byteorder != "little":
        samples.byteswap()
    factor = (percent / 100) ** 3
    samples = array.array("h", (int(s * factor) for s in samples))
    if sys.byteorder != "little":
        samples.byteswap()
    out = io.BytesIO()
    with wave.open(out, "wb") as dst:
        dst.setparams(params)
        dst.writeframes(samples.tobytes())
    return out.getvalue()
