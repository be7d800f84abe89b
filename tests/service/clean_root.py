"""A throw-away copy of this machine, booted with systemd: the deploy test's "bare host".

``unshare`` makes a mount, PID and network namespace. In it an overlay puts a tmpfs
over ``/``: the install writes only there (users made by ``adduser`` exist only in the
overlay's ``/etc/passwd``), and everything goes when the namespace ends. Then the
machine's own ``/lib/systemd/systemd`` boots in it as PID 1 (``container=other``), so
the units run under the real service manager with their sandboxing, journald keeps the
journal and polkitd answers ``systemctl`` calls of the service user over D-Bus. What is
enabled in the machine image starts at boot (PostgreSQL's cluster and Mosquitto among
it, as after their ``apt-get install``). The network namespace has loopback only, so
the install's ports are not this machine's. Fresh ``/proc``, ``/run`` and ``/tmp``.
A cgroup namespace rooted at a cgroup made for the run (removed after it) gives that
systemd cgroup trees of its own (``name=systemd`` and the unified tree, no v1
controllers), so it never touches this machine's, and two runs do not meet.

What the copy is not: the Debian packages are this machine's (installed by
scripts/bootstrap), and its apt has no package lists (there is no network), so
``apt-get install`` finds them all installed and downloads nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UPPER = "/mnt/deploy-upper"
CGROUP_TREES = ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified")

# Prepares the root in the new namespaces, prints "ready", then becomes systemd.
# $1 base dir, $2 wheels, $3 a line for /etc/hosts, $4 this checkout (bound in
# read-only, so the checks run from it wherever it lives).
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
# systemd's own cgroup trees, rooted at this namespace's cgroup (see CleanRoot): it
# sees and manages only what it starts, never this machine's tree.
mount -t tmpfs -o mode=0755 cgroup "$root/sys/fs/cgroup"
mkdir "$root/sys/fs/cgroup/systemd" "$root/sys/fs/cgroup/unified"
mount -t cgroup -o none,name=systemd cgroup "$root/sys/fs/cgroup/systemd"
mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup/unified"
mount -t tmpfs -o mode=0755 run "$root/run"
mount -t tmpfs -o mode=1777 tmp "$root/tmp"
mount -t tmpfs -o mode=0755 apt-lists "$root/var/lib/apt/lists"
mkdir -p "$root/srv/wheels" "$root$4" "$root/mnt/deploy-upper"
mount --bind -o ro "$2" "$root/srv/wheels"
mount --bind -o ro "$4" "$root$4"
mount --bind -o ro "$base/upper" "$root/mnt/deploy-upper"
echo "$3" >> "$root/etc/hosts"
echo ready
export container=other
exec chroot "$root" /lib/systemd/systemd </dev/null >/dev/null 2>&1
"""


class CleanRoot:
    """The booted namespace, and running commands inside its root."""

    def __init__(self, base: Path, *, wheels: Path, hosts_line: str, checkout: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        script = base / "holder.sh"
        script.write_text(_HOLDER)
        mnt = base / "mnt"
        mnt.mkdir()
        # A cgroup of its own in each tree systemd uses, entered before the cgroup
        # namespace is made, so that namespace's root is this cgroup.
        self._cgroups = [Path(tree) / f"govedge-deploy-{base.name}-{os.getpid()}"
                         for tree in CGROUP_TREES]  # fmt: skip
        for cgroup in self._cgroups:
            cgroup.mkdir()
        enter = " ".join(f"echo $$ > {c}/cgroup.procs;" for c in self._cgroups)
        self._holder = subprocess.Popen(
            ["bash", "-c", f'{enter} exec "$@"', "enter",
             "unshare", "--cgroup", "--mount", "--net", "--pid", "--fork", "--kill-child",
             "bash", str(script), str(mnt), str(wheels), hosts_line, str(checkout)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )  # fmt: skip
        self.pid = 0
        assert self._holder.stdout is not None
        if self._holder.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError("the clean root did not start")
        children = Path(f"/proc/{self._holder.pid}/task/{self._holder.pid}/children")
        self.pid = int(children.read_text().split()[0])

    def boot(self, timeout: float = 180) -> str:
        """Wait until systemd has started the machine; its state (``running``, or
        ``degraded`` with the failed units named)."""
        # Polled, each ask bounded and retried: early in the boot an ask can hang here,
        # and ``is-system-running --wait`` sometimes missed the end of the start.
        deadline = time.monotonic() + timeout
        state = "no answer"
        while time.monotonic() < deadline:
            try:
                done = self.run("systemctl is-system-running || true", timeout=10)
            except subprocess.TimeoutExpired:
                continue
            state = done.stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.5)
        if state == "degraded":
            failed = self.run("systemctl --failed --plain --no-legend", timeout=30)
            state = f"degraded: {failed.stdout.strip()}"
        return state

    def host_path(self, path: str) -> Path:
        """Where ``path`` of the clean root is seen from this (outer) process."""
        return Path(f"/proc/{self.pid}/root") / path.lstrip("/")

    def upper(self) -> Path:
        """The overlay's upper layer: every file the clean root wrote or changed."""
        return self.host_path(UPPER)

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
        argv = ["nsenter", f"--target={self.pid}", "--mount", "--net", "--pid", "--root",
                "--wd", "--", "bash", "-c", f"cd {cwd} && set -e && {{\n{script}\n}}"]  # fmt: skip
        return subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout,
            check=False, env=environment, start_new_session=True,
        )  # fmt: skip

    def close(self) -> None:
        """End the namespace: SIGKILL to its PID 1 (systemd), and the kernel kills all
        it holds."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        try:
            self._holder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self._holder.pid, signal.SIGKILL)
            self._holder.wait(timeout=30)
        for pipe in (self._holder.stdout, self._holder.stderr):
            if pipe is not None:
                pipe.close()
        for cgroup in getattr(self, "_cgroups", []):
            _remove_cgroup(cgroup)


def _remove_cgroup(cgroup: Path) -> None:
    """Remove ``cgroup`` and what systemd made below it, deepest first, once the
    processes in them are gone."""
    if not cgroup.exists():
        return
    below = sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    for directory in [*below, cgroup]:
        for _ in range(50):
            try:
                directory.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:  # busy until the killed processes are reaped
                time.sleep(0.1)
