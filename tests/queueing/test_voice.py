"""Announcements rendered to WAV by the real espeak-ng (Mandarin voice ``cmn``)."""

from __future__ import annotations

import asyncio
import os
import sys
import wave
from pathlib import Path

import pytest

from edge_agent.queueing import VoiceError, render_announcement

needs_espeak = pytest.mark.usefixtures("espeak_ng")  # fails under CI=true if missing


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


def test_hung_synthesiser_is_killed(tmp_path: Path) -> None:
    """A real synthesiser process that hangs (and ignores SIGTERM) is killed and reaped."""
    pid_file, wav = tmp_path / "synth.pid", tmp_path / "y.wav"
    hung = tmp_path / "hung-espeak"
    hung.write_text(
        f"#!{sys.executable}\n"
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "while True:\n"
        "    time.sleep(60)\n"
    )
    hung.chmod(0o755)
    # ``within`` is far above a Python start, so the process is running when it ends.
    with pytest.raises(VoiceError, match="did not finish"):
        asyncio.run(render_announcement("请A001号", wav, within=3.0, espeak=str(hung)))
    pid = int(pid_file.read_text())
    # Killed and reaped: no process (not even a zombie) has that pid any more.
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not wav.exists()
