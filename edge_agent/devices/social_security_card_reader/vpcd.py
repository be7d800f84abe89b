"""A real PC/SC stack for tests and the demo: pcscd with vsmartcard's vpcd reader.

pcsc-lite 1.9 runs one pcscd per machine (fixed socket ``/run/pcscd/pcscd.comm`` and a
pid file), so ``PcscStack.start`` reuses a running pcscd and reads its vpcd port from
its reader.conf directory; otherwise it starts ``pcscd --foreground`` with a private
reader.conf that puts vpcd on a free port, and stops it again in ``stop``. Nothing is
mocked: the driver talks to pcscd through libpcsclite, and the virtual card
(``simulators.social_security``) connects to vpcd.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

__all__ = ["VPCD_LIBRARY", "PcscStack", "PcscUnavailable", "environment_ok"]

_log = logging.getLogger(__name__)

VPCD_LIBRARY = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PID_FILE = Path("/run/pcscd/pcscd.pid")
SYSTEM_CONF_DIR = Path("/etc/reader.conf.d")
_DEVICENAME = re.compile(r"^\s*DEVICENAME\s+\S*:(0x[0-9A-Fa-f]+|\d+)\s*$", re.MULTILINE)
_FRIENDLY = re.compile(r'^\s*FRIENDLYNAME\s+"([^"]+)"', re.MULTILINE)


class PcscUnavailable(Exception):
    """pcscd or vpcd is missing, or the stack did not come up in time."""


def _free_port_pair() -> int:
    """A port P with P and P+1 free (vpcd opens one per slot)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise PcscUnavailable("no pair of free TCP ports for vpcd")


def _pcscd_binary() -> str | None:
    found = shutil.which("pcscd")
    if found is None and Path("/usr/sbin/pcscd").exists():
        found = "/usr/sbin/pcscd"
    return found


def _running_pcscd() -> int | None:
    try:
        # pcscd writes "PID\n\0": strip the NUL too, or a running pcscd goes unseen.
        pid = int(PID_FILE.read_text().strip(" \n\t\x00"))
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def _conf_dir_of(pid: int) -> Path:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return SYSTEM_CONF_DIR
    for i, arg in enumerate(args):
        if arg in (b"-c", b"--config") and i + 1 < len(args):
            return Path(args[i + 1].decode())
        if arg.startswith(b"--config="):
            return Path(arg.split(b"=", 1)[1].decode())
    return SYSTEM_CONF_DIR


def _vpcd_entry(conf_dir: Path) -> tuple[str, int] | None:
    """(friendly name, port) of the first vpcd reader configured in ``conf_dir``."""
    for conf in sorted(conf_dir.glob("*")) if conf_dir.is_dir() else []:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = conf.read_text()
            if "libifdvpcd" not in text:
                continue
            port = _DEVICENAME.search(text)
            name = _FRIENDLY.search(text)
            if port:
                return (name.group(1) if name else "Virtual PCD"), int(port.group(1), 0)
    return None


class PcscStack:
    """pcscd with one vpcd reader; ``vpcd_port`` is where a virtual card connects."""

    def __init__(self, *, start_timeout: float = 10.0) -> None:
        self.start_timeout = start_timeout
        self.vpcd_port = 0
        self.reader_name = ""
        self.owned = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> Self:
        """Reuse a running pcscd with vpcd, or start a private one; ``PcscUnavailable``."""
        pid = _running_pcscd()
        if pid is not None:
            entry = _vpcd_entry(_conf_dir_of(pid))
            if entry is None:
                raise PcscUnavailable(f"pcscd (pid {pid}) is running without a vpcd reader")
            friendly, self.vpcd_port = entry
            self.reader_name = f"{friendly} 00 00"
            _log.info("reusing pcscd pid %d, vpcd on port %d", pid, self.vpcd_port)
            self._wait_for_reader()
            return self
        binary = _pcscd_binary()
        if binary is None:
            raise PcscUnavailable("pcscd is not installed (apt-get install pcscd)")
        if not VPCD_LIBRARY.exists():
            raise PcscUnavailable(f"vpcd is not installed ({VPCD_LIBRARY}; vsmartcard-vpcd)")
        self._tmp = tempfile.TemporaryDirectory(prefix="govedge-pcsc-")
        conf_dir = Path(self._tmp.name) / "reader.conf.d"
        conf_dir.mkdir()
        self.vpcd_port = _free_port_pair()
        (conf_dir / "vpcd").write_text(
            f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:{self.vpcd_port}\n'
            f"LIBPATH {VPCD_LIBRARY}\nCHANNELID {self.vpcd_port}\n"
        )
        self.reader_name = "Virtual PCD 00 00"
        log_path = Path(self._tmp.name) / "pcscd.log"
        with log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [binary, "--foreground", "--config", str(conf_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.owned = True
        try:
            self._wait_for_reader()
        except PcscUnavailable:
            self.stop()
            raise
        _log.info("started pcscd pid %d, vpcd on port %d", self._proc.pid, self.vpcd_port)
        return self

    def _wait_for_reader(self) -> None:
        from edge_agent.devices.social_security_card_reader.transport import PcscError, list_readers

        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise PcscUnavailable(f"pcscd exited with {self._proc.returncode}: {self.log()}")
            try:
                if self.reader_name in list_readers():
                    return
            except PcscError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise PcscUnavailable(
            f"reader {self.reader_name!r} did not appear within {self.start_timeout}s "
            f"({last}) {self.log()}"
        )

    def log(self) -> str:
        """The tail of our pcscd's output (for failure messages)."""
        if self._tmp is None:
            return ""
        with contextlib.suppress(OSError):
            return (Path(self._tmp.name) / "pcscd.log").read_text(errors="replace")[-2000:]
        return ""

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop the pcscd this object started (never one it found running)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def environment_ok() -> str | None:
    """``None`` if pcscd and vpcd are installed, else why not (for skip messages)."""
    if _pcscd_binary() is None:
        return "pcscd is not installed"
    if not VPCD_LIBRARY.exists():
        return f"vpcd is not installed ({VPCD_LIBRARY})"
    if os.geteuid() != 0 and _running_pcscd() is None:
        return "no pcscd running and not root to start one"
    return None
