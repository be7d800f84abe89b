"""Voice at the outlet: the agent plays its announcements on a real PulseAudio server.

A private ``pulseaudio`` with a null sink stands in for the hall's loudspeakers; the
agent's player (real paplay) plays into it and ``parec`` records the sink's monitor.
The sink runs at espeak-ng's own rate, mono, so at 100 % the recording holds the
rendered WAVs sample for sample: each announcement is found where it was played by
least squares, and the test checks what a listener would: every call heard, whole,
in the order the calls were made, none over another, and at the volume set.
"""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from edge_agent.counters import AgentCounters
from edge_agent.local_api import AppRegistry, LocalApiOptions
from edge_agent.queueing import render_announcement
from edge_agent.queueing.playback import AnnouncementPlayer, PlaybackSettings, scaled
from govedge_testbed import Mosquitto
from govedge_testbed.pulse import RATE, SINK, PulseServer
from tests.conftest import missing, started_service
from tests.local_api.harness import Outlet, outlet
from tests.simulated_agent import simulated_agent

pytestmark = pytest.mark.usefixtures("espeak_ng")  # fails under CI=true if missing

Samples = npt.NDArray[np.float64]
# The whole agent's window 1 (test_the_agents_voice_settings_reach_its_player).
WINDOWS_1 = [{"window": "1", "business_types": ["general"]}]


@pytest.fixture
def pulse() -> Iterator[PulseServer]:
    """A real PulseAudio server with a null sink (fails under CI=true if missing)."""
    server = started_service(PulseServer)
    yield server
    server.close()


def samples(wav: bytes) -> Samples:
    """A WAV's 16-bit mono samples as floats."""
    with wave.open(io.BytesIO(wav)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


def voiced(wav: bytes) -> Samples:
    """A WAV's samples from its first to its last audible one.

    espeak-ng pads its WAVs with silence, and an idle null sink's monitor records none,
    so only the voiced part can be looked for.
    """
    x = samples(wav)
    loud = np.flatnonzero(np.abs(x) > 64)
    assert len(loud) > 0, "a silent announcement"
    return x[loud[0] : loud[-1] + 1]


def recorded(path: Path) -> Samples:
    """The raw recording of the sink's monitor as floats."""
    return np.frombuffer(path.read_bytes(), dtype="<i2").astype(np.float64)


def locate(template: Samples, recording: Samples) -> tuple[int, float, float]:
    """Where ``template`` fits ``recording`` best: (offset, residual, gain).

    For every offset, the best gain g and the residual ||r - g·t||² / ||r||² of that
    stretch of the recording; 0 residual is the template itself, at gain g.
    """
    n = len(template)
    assert len(recording) >= n, "the recording is shorter than the announcement"
    size = 1 << int(np.ceil(np.log2(len(recording) + n)))
    corr = np.fft.irfft(np.fft.rfft(recording, size) * np.conj(np.fft.rfft(template, size)), size)
    corr = corr[: len(recording) - n + 1]
    running = np.concatenate(([0.0], np.cumsum(recording**2)))
    window = running[n:] - running[:-n]
    energy = float(template @ template)
    gain = corr / energy
    residual = 1 - corr**2 / (energy * np.maximum(window, 1e-9))
    offset = int(np.argmin(residual))
    return offset, float(residual[offset]), float(gain[offset])


async def wait_played(counters: AgentCounters, count: int) -> None:
    """Until ``count`` announcements were played or failed (the test's timeout bounds it)."""
    while counters.get("voice_played") + counters.get("voice_failed") < count:  # noqa: ASYNC110 - counters have no event
        await asyncio.sleep(0.05)


def test_calls_are_played_in_order_one_after_another(tmp_path: Path, pulse: PulseServer) -> None:
    counters = AgentCounters()
    playback = PlaybackSettings(output="pulse", device=SINK, pulse_server=pulse.server)
    recording = tmp_path / "hall.raw"

    async def main() -> None:
        options = LocalApiOptions(playback=playback)
        async with outlet(tmp_path, options=options, counters=counters) as o:
            for business in ("social",) * 5:
                taken = await o.client.post(
                    "/v1/tickets", headers=o.auth, json={"business_type": business}
                )
                assert taken.status_code == 201, taken.text
            with pulse.record(recording):
                # Three calls in quick succession: each returns once its WAV is
                # rendered, long before the one before it has been heard.
                bodies = [await call(o, "3"), await call(o, "5"), await call(o, "3")]
                # Two windows calling at the same moment: neither talks over the other.
                together = await asyncio.gather(call(o, "5"), call(o, "3"))
                async with asyncio.timeout(60):
                    await wait_played(counters, 5)
                await asyncio.sleep(0.3)  # the sink's last buffer reaches the monitor
            wavs = [await audio(o, body) for body in [*bodies, *together]]
        texts = [cast("dict[str, str]", b["announcement"])["text"] for b in bodies]
        assert texts == [f"请A00{n}号到{w}号窗口办理业务" for n, w in ((1, 3), (2, 5), (3, 3))]
        assert counters.get("voice_played") == 5
        assert counters.get("voice_failed") == 0
        heard = recorded(recording)
        found = [locate(voiced(w), heard) for w in wavs]
        for offset, residual, gain in found:
            assert residual < 0.01, f"announcement at {offset} not heard as rendered"
            assert gain == pytest.approx(1.0, abs=0.02)
        spans = [
            (offset, offset + len(voiced(w))) for (offset, _, _), w in zip(found, wavs, strict=True)
        ]
        first_three = spans[:3]
        assert first_three == sorted(first_three), "the calls were heard out of order"
        for (_, end), (start, _) in zip(sorted(spans), sorted(spans)[1:], strict=False):
            assert start >= end, "two announcements overlapped"

    asyncio.run(main())


async def call(o: Outlet, window: str) -> dict[str, object]:
    response = await o.client.post(f"/v1/windows/{window}/call", headers=o.auth)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    assert body["warnings"] == []
    return body


async def audio(o: Outlet, body: dict[str, object]) -> bytes:
    announcement = body["announcement"]
    assert isinstance(announcement, dict)
    response = await o.client.get(str(announcement["audio_url"]), headers=o.auth)
    assert response.status_code == 200
    return response.content


def test_volume_is_the_fleets_percent_on_pulseaudios_scale(
    tmp_path: Path, pulse: PulseServer
) -> None:
    counters = AgentCounters()
    fleet_volume: list[int | None] = [None]
    player = AnnouncementPlayer(
        PlaybackSettings(output="pulse", device=SINK, pulse_server=pulse.server, volume=80),
        counters=counters,
        volume=lambda: fleet_volume[0],
    )
    wav_path = tmp_path / "a.wav"
    recording = tmp_path / "hall.raw"

    async def main() -> None:
        await render_announcement("请A001号到3号窗口", wav_path)
        wav = wav_path.read_bytes()
        worker = asyncio.create_task(player.run())
        try:
            with pulse.record(recording):
                fleet_volume[0] = 50  # the fleet's config turned the hall down
                assert player.enqueue("quiet", wav)
                await player.drained()
                await asyncio.sleep(0.3)
        finally:
            worker.cancel()
        _, residual, gain = locate(voiced(wav), recorded(recording))
        assert residual < 0.01
        # PulseAudio's volume is cubic: 50 % is 0.125 of the amplitude.
        assert gain == pytest.approx(0.5**3, rel=0.05)
        assert counters.get("voice_played") == 1

    asyncio.run(main())


def test_a_missing_sink_is_logged_counted_and_the_call_still_succeeds(
    tmp_path: Path, pulse: PulseServer, caplog: pytest.LogCaptureFixture
) -> None:
    counters = AgentCounters()
    playback = PlaybackSettings(output="pulse", device="no_such_sink", pulse_server=pulse.server)

    async def main() -> None:
        options = LocalApiOptions(playback=playback)
        async with outlet(tmp_path, options=options, counters=counters) as o:
            await o.client.post("/v1/tickets", headers=o.auth, json={"business_type": "social"})
            body = await call(o, "3")
            assert body["ticket"] is not None
            async with asyncio.timeout(30):
                await wait_played(counters, 1)
            # The queue is not stuck behind a failed announcement.
            await o.client.post("/v1/tickets", headers=o.auth, json={"business_type": "social"})
            await call(o, "5")
            async with asyncio.timeout(30):
                await wait_played(counters, 2)

    with caplog.at_level(logging.WARNING, logger="edge_agent.queueing.playback"):
        asyncio.run(main())
    assert counters.get("voice_failed") == 2
    assert counters.get("voice_played") == 0
    warnings = [r.getMessage() for r in caplog.records if "not played" in r.getMessage()]
    # One line per reason a minute, however many announcements fail.
    assert len(warnings) == 1
    assert "No such entity" in warnings[0]


def test_no_sound_server_and_a_full_queue_are_counted(tmp_path: Path, espeak_ng: str) -> None:
    counters = AgentCounters()
    player = AnnouncementPlayer(
        PlaybackSettings(output="pulse", pulse_server=f"unix:{tmp_path}/no-server", queued=2),
        counters=counters,
    )
    wav_path = tmp_path / "a.wav"

    async def main() -> None:
        await render_announcement("请A001号到3号窗口", wav_path)
        wav = wav_path.read_bytes()
        # Nobody plays yet: two wait, the third is dropped.
        assert [player.enqueue(str(i), wav) for i in range(3)] == [True, True, False]
        worker = asyncio.create_task(player.run())
        try:
            async with asyncio.timeout(30):
                await player.drained()
        finally:
            worker.cancel()

    asyncio.run(main())
    assert counters.snapshot() == {"voice_dropped": 1, "voice_failed": 2}
    assert player.last_error is not None
    assert "Connection refused" in player.last_error


def test_alsa_output_scales_the_samples_and_a_missing_device_is_counted(
    tmp_path: Path, espeak_ng: str
) -> None:
    counters = AgentCounters()
    player = AnnouncementPlayer(
        PlaybackSettings(output="alsa", device="govedge_no_such_pcm", volume=50),
        counters=counters,
    )
    wav_path = tmp_path / "a.wav"

    async def main() -> None:
        await render_announcement("请A001号到3号窗口", wav_path)
        worker = asyncio.create_task(player.run())
        try:
            assert player.enqueue("a", wav_path.read_bytes())
            async with asyncio.timeout(30):
                await player.drained()
        finally:
            worker.cancel()

    asyncio.run(main())
    # No such ALSA device here (or no aplay at all): counted, with the reason.
    assert counters.snapshot() == {"voice_failed": 1}
    assert player.last_error is not None
    assert "aplay" in player.last_error
    # What aplay would have been fed: the same WAV at 1/8 of the amplitude (50 %).
    original = samples(wav_path.read_bytes())
    quiet = samples(scaled(wav_path.read_bytes(), 50))
    assert len(quiet) == len(original)
    assert np.abs(quiet - original * 0.125).max() <= 1.0
    assert scaled(wav_path.read_bytes(), 100) == wav_path.read_bytes()


def test_alsa_output_plays_the_announcement_on_the_configured_device(
    tmp_path: Path, espeak_ng: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No sound card here: the ALSA device is alsa-lib's own ``file`` plugin in the
    # user's ~/.asoundrc, which writes what aplay plays to a file (its slave discards it).
    if shutil.which("aplay") is None:
        missing("aplay is not installed (apt-get install alsa-utils)")
    played = tmp_path / "played.raw"
    home = tmp_path / "home"
    home.mkdir()
    (home / ".asoundrc").write_text(
        f'pcm.govedge_test {{\n type file\n slave.pcm "null"\n file "{played}"\n format "raw"\n}}\n'
    )
    monkeypatch.setenv("HOME", str(home))  # aplay is the player's child: it reads it
    counters = AgentCounters()
    player = AnnouncementPlayer(
        PlaybackSettings(output="alsa", device="govedge_test", volume=50), counters=counters
    )
    wav_path = tmp_path / "a.wav"

    async def main() -> None:
        await render_announcement("请A001号到3号窗口", wav_path)
        worker = asyncio.create_task(player.run())
        try:
            assert player.enqueue("a", wav_path.read_bytes())
            async with asyncio.timeout(30):
                await player.drained()
        finally:
            worker.cancel()

    asyncio.run(main())
    assert counters.snapshot() == {"voice_played": 1}, player.last_error
    # The device got the announcement at 50 % (1/8 of the amplitude), then the
    # silence aplay pads its last period with.
    expected = samples(scaled(wav_path.read_bytes(), 50))
    heard = np.frombuffer(played.read_bytes(), dtype="<i2").astype(np.float64)
    assert len(heard) >= len(expected)
    assert np.array_equal(heard[: len(expected)], expected)
    assert not heard[len(expected) :].any()
    assert np.abs(expected).max() > 0


def test_the_agents_voice_settings_reach_its_player(
    tmp_path: Path, pulse: PulseServer, broker: Mosquitto
) -> None:
    """The daemon wires ``voice_output``, ``voice_device``, ``voice_pulse_server`` and
    ``voice_volume`` (an outlet's TOML file) into the player: the whole agent, every
    device simulated, a clerk's call over HTTP, heard on the sink named, at 50 %."""
    recording = tmp_path / "hall.raw"
    data_dir = tmp_path / "agent"
    data_dir.mkdir()
    _, token = AppRegistry(data_dir).add("counter-web", origins=[])
    voice = {
        "voice_output": "pulse",
        "voice_device": SINK,
        "voice_pulse_server": pulse.server,
        "voice_volume": 50,
    }

    async def main() -> bytes:
        async with (
            simulated_agent(broker.url, "voice-wiring-1", data_dir, WINDOWS_1, **voice) as (
                agent,
                _,
                port,
            ),
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            ) as api,
        ):
            taken = await api.post("/v1/tickets", json={"business_type": "general"})
            assert taken.status_code == 201, taken.text
            with pulse.record(recording):
                called = await api.post("/v1/windows/1/call")
                assert called.status_code == 200, called.text
                async with asyncio.timeout(60):
                    await wait_played(agent.counters, 1)
                await asyncio.sleep(0.3)  # the sink's last buffer reaches the monitor
            assert agent.counters.get("voice_played") == 1
            wav = await api.get(called.json()["announcement"]["audio_url"])
            assert wav.status_code == 200
            return wav.content

    wav = asyncio.run(main())
    _, residual, gain = locate(voiced(wav), recorded(recording))
    assert residual < 0.01, "the announcement was not heard on the sink named"
    assert gain == pytest.approx(0.5**3, rel=0.05)  # voice_volume 50 on PulseAudio's scale
