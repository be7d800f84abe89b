"""Run ``govedge-demo`` as a new user does and read what it prints (the demo tests)."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from govedge_testbed.mosquitto import find_mosquitto
from govedge_testbed.ports import free_port
from govedge_testbed.services import ServiceUnavailable
from tests.conftest import missing


@dataclass(frozen=True)
class Printed:
    """What the demo printed up to "Ctrl-C stops", and the values a user copies from it."""

    text: str

    def value(self, pattern: str) -> str:
        found = re.search(pattern, self.text, re.M)
        assert found, self.text
        return found.group(1)


def _printed(proc: subprocess.Popen[str], *, until: str, deadline: float) -> list[str]:
    """The demo's stdout lines up to the one containing ``until``."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if until in line:
            return seen
    raise AssertionError(f"the demo did not print {until!r}: {seen}")


@contextmanager
def running_demo(data_dir: Path, *, outlets: int) -> Iterator[Printed]:
    """``govedge-demo --outlets N`` until the block ends; then Ctrl-C, and it must exit 0."""
    try:
        find_mosquitto()
    except ServiceUnavailable as exc:
        missing(str(exc))
    demo = subprocess.Popen(
        [str(Path(sys.executable).parent / "govedge-demo"), "--outlets", str(outlets),
         "--port", str(free_port()), "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        lines = _printed(demo, until="Ctrl-C stops", deadline=time.monotonic() + 90)
        yield Printed("\n".join(lines))
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=60)
        if demo.stdout is not None:
            demo.stdout.close()
        assert code == 0
