#!/usr/bin/python3
"""Stand-ins for ``systemctl`` and ``journalctl`` in the clean root of the deploy test.

No systemd runs on the test machine (its PID 1 is not a service manager), so the
commands of docs/deploy.md that talk to it are played by this script, mounted over
``/usr/bin/systemctl`` and ``/usr/bin/journalctl`` of the clean root. It stands in for
exactly this, and says so:

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
- ``reload``: runs the unit's ``ExecReload=`` with ``$MAINPID`` the shim's start of it.
- **A caller that is not root** is served as systemd serves it over D-Bus: a manager
  running as root (``systemctl --manager``, started with the clean root, the part of
  PID 1) gets the request over a Unix socket, learns the caller's user from the socket
  (``SO_PEERCRED``), and asks the polkit rules in ``/etc/polkit-1/rules.d`` and
  ``/usr/share/polkit-1/rules.d`` about ``org.freedesktop.systemd1.manage-units`` with
  the ``unit`` and ``verb`` details systemd passes. polkitd does not run here: node
  evaluates the rule files in name order, with a ``polkit`` object of ``addRule`` and
  ``Result`` and a subject of ``user`` and ``groups``; the first answer wins, and
  anything but ``yes`` is refused, as polkit refuses a service that has no agent to
  ask for a password.
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
import json
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
MANAGER_SOCKET = STATE / "manager.sock"
POLKIT_RULE_DIRS = ("/etc/polkit-1/rules.d", "/usr/share/polkit-1/rules.d")
# Evaluates polkit's JavaScript rules as polkitd does (first non-empty answer wins);
# argv: action id, details as JSON, user name, groups as JSON, rule files in order.
POLKIT_JS = r"""
const fs = require("fs");
const [id, details, user, groups, ...files] = process.argv.slice(1);
const rules = [];
const polkit = {
  Result: { NO: "no", YES: "yes", AUTH_SELF: "auth_self", AUTH_SELF_KEEP: "auth_self_keep",
            AUTH_ADMIN: "auth_admin", AUTH_ADMIN_KEEP: "auth_admin_keep",
            NOT_HANDLED: "not_handled" },
  addRule: (rule) => rules.push(rule),
  addAdminRule: () => {},
  log: () => {},
  spawn: () => { throw new Error("polkit.spawn is not stood in for"); },
};
for (const file of files) eval(fs.readFileSync(file, "utf8"));
const known = JSON.parse(details);
const action = { id, lookup: (key) => known[key] };
const member = JSON.parse(groups);
const subject = { user, groups: member, isInGroup: (g) => member.includes(g),
                  isInNetGroup: () => false, local: true, active: false };
for (const rule of rules) {
  const answer = rule(action, subject);
  if (answer && answer !== "not_handled") { console.log(answer); process.exit(0); }
}
console.log("no");
"""
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


def reload(name: str) -> None:
    if not pid_file(name).exists():
        fail(f"{name} is not running")
    path, instance = unit_file(name)
    unit = parse(path, instance)
    main_pid = pid_file(name).read_text().strip()
    lines = unit.get("Service.ExecReload", [])
    if not lines:
        fail(f"{name} has no ExecReload=")
    for line in lines:
        argv, ignore, _ = command(
            line.replace("${MAINPID}", main_pid).replace("$MAINPID", main_pid)
        )
        code = subprocess.run(argv, stdin=subprocess.DEVNULL, check=False).returncode
        if code != 0 and not ignore:
            fail(f"{name}: reload {argv[0]} exited {code}")


def polkit_allows(uid: int, args: list[str]) -> bool:
    """What polkit's rules answer a service user's ``systemctl VERB UNIT…``."""
    words = [a for a in args if not a.startswith("-")]
    if len(words) < 2:
        return False
    entry = pwd.getpwuid(uid)
    groups = [g.gr_name for g in grp.getgrall() if entry.pw_name in g.gr_mem]
    groups.append(grp.getgrgid(entry.pw_gid).gr_name)
    files = sorted(
        (p for d in POLKIT_RULE_DIRS if Path(d).is_dir() for p in Path(d).glob("*.rules")),
        key=lambda p: p.name,
    )
    verb = words[0]
    for name in words[1:]:
        unit = name if "." in name else f"{name}.service"
        details = json.dumps({"unit": unit, "verb": verb})
        done = subprocess.run(
            ["node", "-e", POLKIT_JS, "org.freedesktop.systemd1.manage-units", details,
             entry.pw_name, json.dumps(groups), *map(str, files)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.stdout.strip() != "yes":
            return False
    return True


def serve() -> None:
    """The part of PID 1: take non-root callers' requests over the socket."""
    MANAGER_SOCKET.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(MANAGER_SOCKET))
    MANAGER_SOCKET.chmod(0o666)
    server.listen()
    while True:
        conn, _ = server.accept()
        with conn:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            uid = int.from_bytes(creds[4:8], sys.byteorder)
            args: list[str] = json.loads(conn.makefile().readline())
            if polkit_allows(uid, args):
                done = subprocess.run(
                    ["/usr/bin/systemctl", *args], capture_output=True, text=True, check=False
                )
                reply = {"code": done.returncode, "out": done.stdout, "err": done.stderr}
            else:
                reply = {"code": 1, "out": "", "err": "Access denied (polkit)\n"}
            conn.sendall(json.dumps(reply).encode() + b"\n")


def ask_manager(args: list[str]) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(MANAGER_SOCKET))
        client.sendall(json.dumps(args).encode() + b"\n")
        reply = json.loads(client.makefile().readline())
    sys.stdout.write(reply["out"])
    sys.stderr.write(reply["err"])
    sys.exit(reply["code"])


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
    elif verb == "reload":
        for name in names:
            reload(name if "." in name else f"{name}.service")
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
    if name == "systemctl" and sys.argv[1:] == ["--manager"]:
        serve()
    elif name == "systemctl" and os.geteuid() != 0:
        ask_manager(sys.argv[1:])
    elif name == "systemctl":
        systemctl(sys.argv[1:])
    elif name == "journalctl":
        journalctl(sys.argv[1:])
    else:
        fail(f"called as {name}: only systemctl and journalctl are stood in for")


if __name__ == "__main__":
    main()
