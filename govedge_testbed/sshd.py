"""An outlet PC reached over SSH, for playbook tests: Debian's OpenSSH server on a
loopback port, with a host key and a client key the test makes.

The server runs in a mount namespace of its own (``unshare --mount``) in which the
system folders a playbook or the agent's service writes to (``/opt``, ``/etc``,
``/var/lib``, ``/var/cache``, ``/var/backups``) are overlays: the test machine's own
below, this host's folder above (``root/opt``, ``root/etc``, ...). A playbook run over
SSH thus installs into the production layout at its real paths, makes its service user
in ``/etc/passwd`` and removes what it made (no folder there is a mount point), while
the test machine's own files stay untouched. ``inside`` runs a command in the same
namespace, as the unit's ``ExecStart`` runs on the PC.

Root's home there is its own too, made from ``/etc/skel`` as on a freshly installed PC:
sshd runs each command through root's shell, and bash reads ``~/.bashrc`` for commands
sent over SSH, so the test machine's own (a developer's, which may start pyenv or the
like, a quarter of a CPU second each time) would otherwise run before every step of a
playbook.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

from govedge_testbed.ports import free_port, wait_for_port

SSHD = "/usr/sbin/sshd"
# The folders of the production layout, the service user, the unit and the udev rules;
# /var/cache for the unit's CacheDirectory (the service's bytecode).
PRIVATE_DIRS = ("/opt", "/etc", "/var/lib", "/var/cache", "/var/backups")
SKELETON = Path("/etc/skel")


def find_sshd() -> str | None:
    """The OpenSSH server binary, or None (package openssh-server)."""
    return SSHD if os.access(SSHD, os.X_OK) else shutil.which("sshd")


class SshHost:
    """One SSH-reachable outlet PC on ``127.0.0.1:port``; ``root`` logs in by key."""

    def __init__(self, base: Path, *, private_dirs: tuple[str, ...] = PRIVATE_DIRS) -> None:
        self.base = base
        self.private_dirs = private_dirs
        self.port = free_port()
        self.client_key = base / "client_ed25519"
        self.host_key = base / "host_ed25519"
        self.root = base / "root"  # what the private folders hold, seen from outside
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        sshd = find_sshd()
        if sshd is None:
            raise FileNotFoundError("sshd is not installed (Debian package openssh-server)")
        self.base.mkdir(parents=True, exist_ok=True)
        for key in (self.client_key, self.host_key):
            if not key.exists():
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key.name, "-f", str(key)],
                    check=True,
                )
        authorized = self.base / "authorized_keys"
        authorized.write_text(self.client_key.with_suffix(".pub").read_text(), encoding="utf-8")
        authorized.chmod(0o600)
        config = self.base / "sshd_config"
        config.write_text(
            "\n".join([
                f"Port {self.port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {self.host_key}",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {self.base / 'sshd.pid'}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "Subsystem sftp internal-sftp",
                "LogLevel ERROR",
                "",
            ]),
            encoding="utf-8",
        )  # fmt: skip
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        mounts = []
        for folder in self.private_dirs:
            upper = self.root / folder.lstrip("/")
            work = self.base / "overlay-work" / folder.lstrip("/")
            upper.mkdir(parents=True, exist_ok=True)
            work.mkdir(parents=True, exist_ok=True)
            options = f"lowerdir={folder},upperdir={upper},workdir={work}"
            mounts.append(
                f"mkdir -p {shlex.quote(folder)} && "
                f"mount -t overlay overlay -o {shlex.quote(options)} {shlex.quote(folder)}"
            )
        home = self.base / "home-root"  # root's home on the PC (Ansible's remote tmp too)
        if not home.exists():
            if SKELETON.is_dir():
                shutil.copytree(SKELETON, home)
            else:
                home.mkdir()
            home.chmod(0o700)
        mounts.append(f"mount --bind {shlex.quote(str(home))} /root")
        script = " && ".join(
            [*mounts, f"exec {shlex.quote(sshd)} -D -e -f {shlex.quote(str(config))}"]
        )
        with (self.base / "sshd.log").open("ab") as log:  # the child keeps its own copy
            self._process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        if not wait_for_port(self.port, timeout=15):
            self.stop()
            raise RuntimeError(f"sshd did not listen on {self.port}: see {self.base / 'sshd.log'}")

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def host_key_line(self) -> str:
        """``ssh-ed25519 AAAA…``: the public host key, as a known_hosts line's tail."""
        fields = self.host_key.with_suffix(".pub").read_text(encoding="utf-8").split()
        return f"{fields[0]} {fields[1]}"

    def inventory_vars(self) -> dict[str, object]:
        """How Ansible reaches this host, as ``PUT /outlets/{id}/access`` takes it (the
        key is given separately)."""
        # Debian's Python, as on an outlet PC (root's PATH here may lead to other ones)
        return {
            "ansible_host": "127.0.0.1", "ansible_port": self.port, "ansible_user": "root",
            "host_vars": {"ansible_python_interpreter": "/usr/bin/python3"},
        }  # fmt: skip

    def inside(self, argv: list[str]) -> list[str]:
        """``argv`` run in this host's mount namespace."""
        return ["nsenter", f"--target={self.pid}", "--mount", "--", *argv]

    def run_inside(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.inside(argv), capture_output=True, text=True, **kwargs)  # type: ignore[call-overload, no-any-return]

    def stop(self) -> None:
        """Stop the server and every session it forked, as a PC going down would (a
        session left alive would be reused by ssh's connection sharing)."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        with contextlib.suppress(ProcessLookupError):  # sessions that outlived the listener
            os.killpg(process.pid, signal.SIGKILL)
