"""A throw-away copy of this machine to install on as root: the deploy test's "bare host".

``unshare`` makes a mount, PID and network namespace. In it an overlay puts a tmpfs
over ``/``: the install writes only there (users made by ``adduser`` exist only in the
overlay's ``/etc/passwd``), and everything goes when the namespace's first process
ends. The network namespace has loopback only, so the install's PostgreSQL (5432),
Mosquitto (8883) and workers (8081, 8082, 8443) take no port of this machine's. Fresh
``/proc``, ``/run`` and ``/tmp``, as after a boot.

What the copy is not: the Debian packages are this machine's (installed by
scripts/bootstrap), and its apt has no package lists (there is no network), so
``apt-get install`` finds them all installed and downloads nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Runs as the namespace's PID 1; prints "ready" once the root is in place, then holds
# the namespace until its stdin closes. $1 base dir, $2 wheels, $3 the systemctl and
# journalctl stand-in (tests/service/systemd_shim.py), $4 hosts,
# $5 this checkout (bound in read-only, so the checks run from it wherever it lives).
_HOLDER = r"""
set -eu
base=$1
ip link set lo up
mount -t tmpfs -o mode=0755 deploy-root "$base"
mkdir "$base/upper" "$base/work" "$base/root"
mount -t overlay deploy-root -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$base/root"
root=$base/root
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
mount -t tmpfs -o mode=0755 run "$root/run"
mount -t tmpfs -o mode=1777 tmp "$root/tmp"
mount -t tmpfs -o mode=0755 apt-lists "$root/var/lib/apt/lists"
mkdir -p "$root/srv/wheels"
mount --bind -o ro "$2" "$root/srv/wheels"
for tool in systemctl journalctl; do
  mount --bind -o ro "$3" "$root/usr/bin/$tool"
done
mkdir -p "$root$5"
mount --bind -o ro "$5" "$root$5"
echo "$4" >> "$root/etc/hosts"
mkdir -p "$root/run/deploy-shim"
touch "$root/run/deploy-shim/booted"
chroot "$root" /usr/bin/systemctl --manager </dev/null >"$root/run/deploy-shim/manager.log" 2>&1 &
while ! [ -S "$root/run/deploy-shim/manager.sock" ]; do sleep 0.1; done
echo ready
read -r _ || true
"""


class CleanRoot:
    """The namespace holder, and running commands inside its root."""

    def __init__(
        self, base: Path, *, wheels: Path, shim: Path, hosts_line: str, checkout: Path
    ) -> None:
        base.mkdir(parents=True, exist_ok=True)
        stand_in = base / "systemd-stand-in"
        stand_in.write_bytes(shim.read_bytes())
        stand_in.chmod(0o755)
        script = base / "holder.sh"
        script.write_text(_HOLDER)
        mnt = base / "mnt"
        mnt.mkdir()
        self._holder = subprocess.Popen(
            ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child",
             "bash", str(script), str(mnt), str(wheels), str(stand_in), hosts_line, str(checkout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )  # fmt: skip
        assert self._holder.stdout is not None
        line = self._holder.stdout.readline()
        if line.strip() != "ready":
            self.close()
            raise RuntimeError(f"the clean root did not start: {self._holder.stderr}")
        children = Path(f"/proc/{self._holder.pid}/task/{self._holder.pid}/children")
        self.pid = int(children.read_text().split()[0])
        self.root_dir = mnt / "root"
        self.upper_dir = mnt / "upper"

    def host_path(self, path: str) -> Path:
        """Where ``path`` of the clean root is seen from this (outer) process."""
        return Path(f"/proc/{self.pid}/root") / str(self.root_dir).lstrip("/") / path.lstrip("/")

    def upper(self) -> Path:
        """The overlay's upper layer: every file the clean root wrote or changed."""
        return Path(f"/proc/{self.pid}/root") / str(self.upper_dir).lstrip("/")

    def run(
        self,
        script: str,
        *,
        stdin: str = "",
        cwd: str = "/root",
        env: Mapping[str, str] | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """``script`` through ``bash -e`` as root in the clean root, with no terminal
        (prompts read stdin), in a login-like environment of root's."""
        environment = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "USER": "root",
                       "LOGNAME": "root", "SHELL": "/bin/bash", **(env or {})}  # fmt: skip
        argv = ["nsenter", f"--target={self.pid}", "--mount", "--net", "--pid", "--",
                "chroot", str(self.root_dir), "bash", "-c",
                f"cd {cwd} && set -e && {{\n{script}\n}}"]  # fmt: skip
        return subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout,
            check=False, env=environment, start_new_session=True,
        )  # fmt: skip

    def close(self) -> None:
        """End the namespace: its PID 1 exits, and the kernel kills all it holds."""
        if self._holder.poll() is None:
            assert self._holder.stdin is not None
            self._holder.stdin.close()
            try:
                self._holder.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self._holder.pid, signal.SIGKILL)
                self._holder.wait(timeout=30)
        for pipe in (self._holder.stdout, self._holder.stderr):
            if pipe is not None:
                pipe.close()
