#!/usr/bin/python3
"""Stand-ins for ``systemctl`` and ``journalctl`` in the clean root of the deploy test.

No systemd runs on the test machine (its PID 1 is not a service manager), so the
commands of docs/deploy.md that talk to it are played by this script, installed
first on ``PATH`` under both names. It stands in for exactly this, and says so:

- ``systemctl daemon-reload``: systemd would parse the unit files; here
  ``systemd-analyze verify`` checks every unit file written in ``/etc/systemd/system``
  since the clean root started, and any complaint fails the command.
- ``systemctl start|restart|enable --now UNIT…``: the unit is started the way its unit
  file says: ``ExecStartPre=`` then ``ExecStart=`` (a ``-`` prefix ignores a failure),
  as its ``User=``/``Group=`` (with supplementary groups), with ``UMask=``,
  ``WorkingDirectory=``, ``StateDirectory=``/``StateDirectoryMode=`` made and owned as
  systemd makes them, and the environment of its ``EnvironmentFile=`` lines (``-`` for
  optional) and ``Environment=`` lines, specifiers ``%i %I %H %%`` expanded. ``Type=
  forking``/``oneshot`` wait for ``ExecStart`` to end; other types are left running
  detached, their output in a per-unit log. A ``.target`` starts what it ``Wants=``/
  ``Requires=``. ``enable`` makes no links (nothing boots here). A ``.timer`` is
  recorded as started but never fires.
- ``restart``: stops the shim's own earlier start of the unit (SIGTERM, then waits).
- ``journalctl -u PATTERN…``: prints the per-unit logs of the units matching the
  patterns (shell-style, as journalctl's ``-u`` globs).

Not played at all: the hardening lines (``ProtectSystem=``, ``NoNewPrivileges=`` and the
rest; ``systemd-analyze verify`` checks only their syntax), ``Restart=``, ordering
(``After=``: units start in the order named), cgroups, sd_notify readiness.
Anything else exits 1 naming what it does not stand in for.
"""

from __future__ import annotations

import contextlib
import fnmatch
import grp
import os
import pwd
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

UNIT_DIRS = (
    Path("/etc/systemd/system"),
    Path("/lib/systemd/system"),
    Path("/usr/lib/systemd/system"),
)
STATE = Path("/run/deploy-shim")
WAITING_TYPES = {"forking", "oneshot"}


def fail(message: str) -> None:
    print(f"systemd shim: {message}", file=sys.stderr)
    sys.exit(1)


def unit_file(name: str) -> tuple[Path, str]:
    """The file of unit ``name`` and its instance (empty for a plain unit)."""
    stem, dot, kind = name.rpartition(".")
    if not dot:
        stem, kind, name = name, "service", f"{name}.service"
    prefix, at, instance = stem.partition("@")
    candidates = [name, f"{prefix}@.{kind}"] if at and instance else [name]
    for directory in UNIT_DIRS:
        for candidate in candidates:
            if (directory / candidate).is_file():
                return directory / candidate, instance
    fail(f"no unit file for {name}")
    raise AssertionError  # unreachable: fail exits


def expand(value: str, instance: str) -> str:
    out = []
    chars = iter(value)
    for char in chars:
        if char != "%":
            out.append(char)
            continue
        spec = next(chars, "")
        table = {
            "i": instance,
            "I": instance.replace("-", "/"),
            "H": socket.gethostname(),
            "%": "%",
        }
        if spec not in table:
            fail(f"specifier %{spec} is not stood in for")
        out.append(table[spec])
    return "".join(out)


def parse(path: Path, instance: str) -> dict[str, list[str]]:
    """``SECTION.Key`` → values, in order, specifiers expanded (continuation lines joined)."""
    found: dict[str, list[str]] = {}
    section = ""
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(expand(value.strip(), instance))
    return found


def env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        words = shlex.split(value) if value.strip() else [""]
        values[key.strip()] = " ".join(words)
    return values


def environment(unit: dict[str, list[str]]) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
    }
    for name in unit.get("Service.EnvironmentFile", []):
        optional = name.startswith("-")
        path = Path(name.lstrip("-"))
        if path.exists():
            env.update(env_file(path))
        elif not optional:
            fail(f"EnvironmentFile={path} does not exist")
    for line in unit.get("Service.Environment", []):
        for word in shlex.split(line):
            key, _, value = word.partition("=")
            env[key] = value
    user = unit.get("Service.User", ["root"])[-1]
    entry = pwd.getpwnam(user)
    env.update(USER=user, LOGNAME=user, HOME=entry.pw_dir, SHELL=entry.pw_shell)
    return env


def state_directory(unit: dict[str, list[str]]) -> None:
    mode = int(unit.get("Service.StateDirectoryMode", ["0755"])[-1], 8)
    user = unit.get("Service.User", ["root"])[-1]
    group = unit.get("Service.Group", [user])[-1]
    for line in unit.get("Service.StateDirectory", []):
        for name in line.split():
            path = Path("/var/lib") / name
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(mode)
            os.chown(path, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)


def command(line: str) -> tuple[list[str], bool, bool]:
    """argv, whether a failure is ignored (``-``), whether it runs as root (``+``)."""
    ignore = privileged = False
    while line and line[0] in "-+@:!":
        ignore |= line[0] == "-"
        privileged |= line[0] == "+"
        line = line[1:]
    return shlex.split(line), ignore, privileged


def pid_file(name: str) -> Path:
    return STATE / "pids" / f"{name}.pid"


def log_file(name: str) -> Path:
    return STATE / "journal" / f"{name}.log"


def stop(name: str) -> None:
    path = pid_file(name)
    if not path.exists():
        return
    pid = int(path.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    for _ in range(300):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    path.unlink()


def start(name: str) -> None:
    if not name.rpartition(".")[1]:
        name = f"{name}.service"
    path, instance = unit_file(name)
    unit = parse(path, instance)
    kind = name.rpartition(".")[2]
    if kind == "target":
        for line in unit.get("Unit.Wants", []) + unit.get("Unit.Requires", []):
            for wanted in line.split():
                start(wanted)
        return
    if kind == "timer":
        (STATE / "timers").mkdir(parents=True, exist_ok=True)
        (STATE / "timers" / name).touch()
        return
    if kind != "service":
        fail(f"starting a .{kind} unit is not stood in for")
    if pid_file(name).exists():
        return
    state_directory(unit)
    env = environment(unit)
    user = unit.get("Service.User", ["root"])[-1]
    group = unit.get("Service.Group", [grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name])[-1]
    supplementary = [g.gr_name for g in grp.getgrall() if user in g.gr_mem]
    umask = int(unit.get("Service.UMask", ["0022"])[-1], 8)
    cwd = unit.get("Service.WorkingDirectory", ["/"])[-1].lstrip("-")
    log_file(name).parent.mkdir(parents=True, exist_ok=True)
    pid_file(name).parent.mkdir(parents=True, exist_ok=True)
    service_type = unit.get("Service.Type", ["simple"])[-1]
    steps = unit.get("Service.ExecStartPre", []) + unit.get("Service.ExecStart", [])
    with log_file(name).open("ab") as log:
        for index, line in enumerate(steps):
            argv, ignore, privileged = command(line)
            as_root = privileged or user == "root"
            proc = subprocess.Popen(
                argv, env=env, cwd=cwd, umask=umask, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True,
                user=None if as_root else user, group=None if as_root else group,
                extra_groups=None if as_root else supplementary,
            )  # fmt: skip
            last = index == len(steps) - 1
            if last and service_type not in WAITING_TYPES:
                pid_file(name).write_text(str(proc.pid))
                return
            code = proc.wait()
            if code != 0 and not ignore:
                fail(f"{name}: {argv[0]} exited {code}; see journalctl -u {name}")


def verify_units() -> None:
    """``systemd-analyze verify`` of the unit files written in /etc/systemd/system since
    the clean root started (the machine's own units are not the procedure's)."""
    booted = (STATE / "booted").stat().st_mtime
    units = [
        str(path)
        for path in sorted(UNIT_DIRS[0].iterdir())
        if path.is_file() and not path.is_symlink() and path.stat().st_mtime >= booted
    ]
    if not units:
        return
    done = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True)
    complaints = [line for line in done.stderr.splitlines() if line.strip()]
    if done.returncode != 0 or complaints:
        fail("systemd-analyze verify: " + "\n".join(complaints))


def systemctl(args: list[str]) -> None:
    words = [a for a in args if not a.startswith("-")]
    flags = {a for a in args if a.startswith("-")}
    if not words:
        fail("systemctl with no verb is not stood in for")
    verb, names = words[0], words[1:]
    if verb == "daemon-reload":
        verify_units()
    elif verb == "start" or (verb == "enable" and "--now" in flags):
        for name in names:
            start(name)
    elif verb == "restart":
        for name in names:
            stop(name if "." in name else f"{name}.service")
            start(name)
    elif verb == "stop":
        for name in names:
            stop(name if "." in name else f"{name}.service")
    else:
        fail(f"systemctl {' '.join(args)} is not stood in for")


def journalctl(args: list[str]) -> None:
    patterns = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-u"]
    if not patterns or len(args) != 2 * len(patterns):
        fail(f"journalctl {' '.join(args)} is not stood in for (only -u PATTERN)")
    journal = STATE / "journal"
    for log in sorted(journal.glob("*.log")) if journal.exists() else []:
        unit = log.name.removesuffix(".log")
        if any(
            fnmatch.fnmatchcase(unit, p) or fnmatch.fnmatchcase(unit, f"{p}.service")
            for p in patterns
        ):
            sys.stdout.write(log.read_text(errors="replace"))


def main() -> None:
    name = Path(sys.argv[0]).name
    if name == "systemctl":
        systemctl(sys.argv[1:])
    elif name == "journalctl":
        journalctl(sys.argv[1:])
    else:
        fail(f"called as {name}: only systemctl and journalctl are stood in for")


if __name__ == "__main__":
    main()
