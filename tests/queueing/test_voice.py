"""Announcements rendered to WAV by the real espeak-ng (Mandarin voice ``cmn``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import wave
from pathlib import Path

import pytest

from edge_agent.queueing import VoiceError, render_announcement

# Outside CI only: under CI=true a missing espeak-ng must fail the run, not skip it.
needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None and os.environ.get("CI", "").lower() != "true",
    reason="espeak-ng missing (outside CI)",
)


@needs_espeak
def test_announcement_renders_a_valid_wav(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    asyncio.run(render_announcement("请A012号到3号窗口办理业务", path, within=30))
    with wave.open(str(path), "rb") as wav:
        frames = wav.getnframes()
        rate = wav.getframerate()
        assert wav.getnchannels() == 1
    assert frames > 0
    duration = frames / rate
    assert 1.0 < duration < 20.0


def test_missing_synthesiser_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(VoiceError, match="cannot run"):
        asyncio.run(
            render_announcement("请A001号", tmp_path / "x.wav", espeak="/nonexistent/espeak-ng")
        )


@needs_espeak
def test_hung_synthesiser_is_killed(tmp_path: Path) -> None:
    with pytest.raises(VoiceError, match="did not finish"):
        asyncio.run(render_announcement("请A001号" * 400, tmp_path / "y.wav", within=0.01))
