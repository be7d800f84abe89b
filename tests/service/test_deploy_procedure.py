"""docs/deploy.md's install procedure, run as written on a clean machine, then checked
as the operator checks it.

The steps are read from the page (tests/service/deploy_doc.py), so a changed step is run
as changed. Each step's shell runs through ``bash -e`` as root in a throw-away copy of
this machine booted with its own systemd as PID 1 (tests/service/clean_root.py: overlay
over ``/``, own PID and network namespaces with loopback only), working directory
``/root``, no terminal. The units run under the real service manager with their
sandboxing, ``journalctl`` reads the real journal, and polkitd decides the service
user's ``systemctl reload``.

What differs from a bare Debian 12, each kept as small as could be:

- **Packages.** apt-get runs as written, but the clean root has no package lists and
  no network: the packages are this machine's, already installed (scripts/bootstrap),
  so it installs nothing. What apt-get's installation would have started (PostgreSQL's
  cluster, Mosquitto) is enabled in the machine image and starts at boot.
- **Names.** ``broker.example`` and ``fleet.example`` resolve to 127.0.0.1 through a
  line the test adds to the clean root's ``/etc/hosts``; the page's text is unchanged.
- **PASSWORD.** The page's placeholder is used as the password itself: ``createuser
  --pwprompt`` (step 3) is fed ``PASSWORD`` twice on its stdin.
- **/srv/wheels.** The project's wheel built now with ``uv build --wheel`` and the
  locked ``server`` dependencies' wheels for the system Python
  (tests/service/wheelhouse.py), mounted read-only at ``/srv/wheels``.
- **Waiting.** Between step 7 and step 8 the test waits until every worker answers
  ``/readyz``, as an operator waits for a start before reading its journal.

Then what the operator checks: no unit failed (but those of the machine image that had
failed at boot, before step 1); the first admin's file is 0600 and the service user's,
its password logs in at the HTTPS worker (the certificate of step 6, trusted through
the fleet CA) and its token works at the API; the workers' journal has
no warning or error but the one the page leaves for later (no config signing key,
docs/config.md) and says each worker had the broker reload its CRL; the service user
may reload Mosquitto and not restart it; state is under ``/var/lib/govedge`` owned by
the service user, settings under ``/etc/govedge``, nothing in the working directory;
and an outlet enrolls with ``edge-agent enroll`` over HTTPS, connects to the installed
Mosquitto over TLS with its new certificate, and once revoked at the API is refused
there. Last, the page's "Upgrade the server" as written (steps 2-4, ``NEW`` a wheel of
this code stamped 0.1.1 added to ``/srv/wheels``) and the operator's checks after it
(the last test). Not tried: nginx in front, the firewall, the daily timer firing, the
upgrade's step 1 (the backup) and rolling back.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing
from tests.service.clean_root import CleanRoot
from tests.service.deploy_doc import Step, install_steps, upgrade_steps
from tests.service.wheelhouse import (
    REPO,
    WheelhouseError,
    build_project_wheel,
    build_wheelhouse,
)

# One worker runs the module: its fixture boots one clean root for all the tests (two
# workers each booted one, and built the shared wheel cache at the same time).
pytestmark = [pytest.mark.timeout(900), pytest.mark.xdist_group("deploy_procedure")]

HOSTS_LINE = "127.0.0.1 broker.example fleet.example"
STATE_NAMES = {"fleet-pki", "fleet-pii-keys", "fleet-releases", "fleet-playbook-runs",
               "first-admin.txt", "fleet.db"}  # fmt: skip
# What the page leaves to other pages: no config signing key yet (docs/config.md).
EXPECTED_WARNINGS = ("no config signing key",)
# What each worker logs once it had the broker reread the CRL it rewrote at start.
CRL_RELOADED = "CRL rewritten at start: broker reload command succeeded"
# The upgrade test's new version: the code under test, stamped one patch release up.
NEW_VERSION = "0.1.1"


@dataclass
class Installed:
    root: CleanRoot
    outputs: dict[int, str]
    cwd_at_boot: set[str]  # what the machine's own boot wrote in /root
    wheels: Path  # the host's directory the root sees at /srv/wheels (a bind mount)


# The units the procedure installs or configures. The machine image's own (a getty
# without a console, ssh) may fail in the container at boot or later: not the install's.
INSTALL_UNITS = ("govedge-", "mosquitto", "postgresql", "polkit")


def failed_units(root: CleanRoot) -> set[str]:
    done = root.run("systemctl --failed --plain --no-legend")
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


def failed_install_units(root: CleanRoot) -> set[str]:
    return {unit for unit in failed_units(root) if unit.startswith(INSTALL_UNITS)}


def _complaints(journal: str) -> list[str]:
    """The journal's warnings, errors and tracebacks but those the page expects."""
    return [
        line
        for line in journal.splitlines()
        if (" WARNING " in line or " ERROR " in line or "Traceback" in line)
        and not any(expected in line for expected in EXPECTED_WARNINGS)
    ]


def _cwd_entries(root: CleanRoot) -> set[str]:
    written = root.upper() / "root"
    return {p.name for p in written.iterdir()} if written.exists() else set()


def _require_tools() -> None:
    if os.geteuid() != 0:
        missing("the deploy procedure runs as root (namespaces, chroot, adduser)")
    tools = ("unshare", "nsenter", "chroot", "ip", "/lib/systemd/systemd",
             "/usr/lib/polkit-1/polkitd", "pg_ctlcluster", "mosquitto")  # fmt: skip
    for tool in tools:
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed (scripts/bootstrap installs it)")


def _run_step(root: CleanRoot, step: Step, *, shell: str | None = None, stdin: str = "") -> str:
    """``shell`` (the step's own, by default) through the clean root; its stdout."""
    shell = step.shell if shell is None else shell
    done = root.run(shell, stdin=stdin)
    assert done.returncode == 0, (
        f"step {step.number} ({step.title}) failed as written, exit {done.returncode}:\n"
        f"{shell}\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
    )
    return done.stdout


def check(root: CleanRoot, *args: str) -> dict[str, Any]:
    """tests/service/deploy_checks.py inside the clean root; its JSON answer."""
    done = root.run(
        f"{sys.executable} -m tests.service.deploy_checks {' '.join(args)}",
        cwd=str(REPO),
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return answer


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    _require_tools()
    base = tmp_path_factory.mktemp("deploy")
    try:
        wheels = build_wheelhouse(base / "wheels")
    except WheelhouseError as exc:
        missing(f"the wheels for /srv/wheels could not be made: {exc}")
    root = CleanRoot(base / "clean-root", wheels=wheels, hosts_line=HOSTS_LINE, checkout=REPO)
    try:
        booted = root.boot()
        assert booted.startswith(("running", "degraded")), f"systemd did not start: {booted}"
        cwd_at_boot = _cwd_entries(root)
        assert root.run("! getent passwd govedge-fleet && ! test -e /etc/govedge").returncode == 0
        outputs: dict[int, str] = {}
        for step in install_steps():
            if not step.shell:
                continue
            if step.number == 8:
                assert check(root, "ready") == {"ready": True}
            # Step 3's createuser --pwprompt asks for the password twice.
            stdin = "PASSWORD\nPASSWORD\n" if step.number == 3 else ""
            outputs[step.number] = _run_step(root, step, stdin=stdin)
        yield Installed(root, outputs, cwd_at_boot, wheels)
    finally:
        root.close()


def _passwd(root: CleanRoot) -> dict[str, int]:
    lines = root.host_path("/etc/passwd").read_text().splitlines()
    return {line.split(":")[0]: int(line.split(":")[2]) for line in lines}


def _groups(root: CleanRoot) -> dict[str, int]:
    lines = root.host_path("/etc/group").read_text().splitlines()
    return {line.split(":")[0]: int(line.split(":")[2]) for line in lines}


def test_the_first_admin_file_is_the_service_users_and_its_login_works(
    installed: Installed,
) -> None:
    root = installed.root
    # Step 8 as written: the journal says where the file is, and it is there.
    assert "first admin 'admin'" in installed.outputs[8]
    assert "/var/lib/govedge/first-admin.txt" in installed.outputs[8]
    assert "password=" in installed.outputs[8]
    uid = _passwd(root)["govedge-fleet"]
    info = root.host_path("/var/lib/govedge/first-admin.txt").stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == uid
    # Its password logs in through the form over HTTPS, its token at the API.
    answer = check(root, "login")
    assert answer["form_status"] == 303, answer
    assert answer["cookie_me"] == "admin"
    assert answer["token_me"] == "admin"
    assert answer["wrong_password_status"] != 303


def test_the_workers_journal_has_no_warning_the_page_does_not_expect(
    installed: Installed,
) -> None:
    journal = installed.root.run("journalctl -u 'govedge-fleet-*'")
    assert journal.returncode == 0, journal.stderr
    assert "listening on https://0.0.0.0:8443" in journal.stdout
    assert "listening on http://127.0.0.1:8082" in journal.stdout
    # Step 7's split: two API workers above, two ingest workers on their loopback ports.
    assert "listening on http://127.0.0.1:9101" in journal.stdout
    assert "listening on http://127.0.0.1:9102" in journal.stdout
    assert _complaints(journal.stdout) == []
    # Each worker had the broker reread the CRL it rewrote at start (step 5's rule)…
    assert journal.stdout.count(CRL_RELOADED) == 4
    # …and the rule allows the service user that, and nothing else.
    restart = installed.root.run("runuser -u govedge-fleet -- systemctl restart mosquitto")
    assert restart.returncode != 0
    assert "authentication required" in restart.stderr.lower(), restart.stderr
    assert failed_install_units(installed.root) == set()


def test_state_and_settings_are_where_the_page_says_and_nowhere_else(
    installed: Installed,
) -> None:
    root = installed.root
    passwd, groups = _passwd(root), _groups(root)
    assert "govedge-fleet" not in Path("/etc/passwd").read_text()  # made in the copy only
    uid, gid = passwd["govedge-fleet"], groups["govedge-fleet"]

    state = root.host_path("/var/lib/govedge")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert {p.name for p in state.iterdir()} >= {"fleet-pki", "fleet-pii-keys", "first-admin.txt"}
    not_owned = [str(p) for p in [state, *state.rglob("*")] if p.lstat().st_uid != uid]
    assert not_owned == []

    env_file = root.host_path("/etc/govedge/fleet-server.env").stat()
    assert (stat.S_IMODE(env_file.st_mode), env_file.st_uid, env_file.st_gid) == (0o640, 0, gid)
    settings = root.host_path("/etc/govedge")
    assert (settings.stat().st_uid, settings.stat().st_gid) == (0, gid)

    # Everything the install wrote is in the overlay's upper layer: no server state
    # outside /var/lib/govedge, nothing in the working directory (/root) but caches.
    upper = root.upper()
    stray = [
        str(p.relative_to(upper))
        for p in upper.rglob("*")
        if p.name in STATE_NAMES and not str(p.relative_to(upper)).startswith("var/lib/govedge")
    ]
    assert stray == []
    in_cwd = _cwd_entries(root) - installed.cwd_at_boot
    assert in_cwd <= {".cache"}  # pip's cache in root's home


def test_an_outlet_enrolls_over_https_and_connects_to_the_installed_broker(
    installed: Installed,
) -> None:
    answer = check(installed.root, "enroll", "/tmp/outlet-agent")
    assert answer.get("enroll_rc") == 0, answer
    assert answer["broker_connack"] == "Success", answer
    # Revoked at the API: the worker (the service user) has the broker reread the CRL
    # through step 5's polkit rule, and the outlet's certificate is refused at once.
    revoked = check(installed.root, "revoke", "/tmp/outlet-agent")
    assert revoked["revoke_status"] == 200, revoked
    assert revoked["broker_reloaded"] is True, revoked
    assert "systemctl reload mosquitto.service" in revoked["broker_detail"], revoked
    assert revoked["broker_connack_after"].startswith("connection ended"), revoked
    broker_log = installed.root.host_path("/var/log/mosquitto/mosquitto.log").read_text()
    assert "certificate verify failed" in broker_log  # the same certificate as before


# Last in the module, on purpose: it stops and restarts the workers the tests above
# check, and pytest runs a module's tests in file order.
def test_the_upgrade_as_written_brings_the_new_version_and_keeps_data_and_keys(
    installed: Installed,
) -> None:
    """docs/deploy.md's "Upgrade the server", steps 2-4 as written, on the installed
    server, with ``NEW`` a wheel of this code stamped 0.1.1 put beside the install's in
    ``/srv/wheels``; then what an operator checks.

    Step 1 (the backup) is prose that points at "Backup and restore", and is not run
    here: its command restores into a scratch database on another host and starts a
    second fleet server with a private broker to prove the copy, which this root has no
    second PostgreSQL for (it is tested on its own, tests/server/test_backup_restore_check.py).
    Both wheels hold the same schema, so step 3's migrate finds nothing to do: an
    upgrade that brings a migration is not tried here.
    """
    root = installed.root
    build_project_wheel(installed.wheels, NEW_VERSION)  # seen at /srv/wheels at once
    old_link = root.run("readlink /opt/govedge-fleet/venv").stdout.strip()
    assert old_link != f"venv-{NEW_VERSION}"
    cursor = _journal_cursor(root)

    steps = upgrade_steps()
    assert [step.number for step in steps if step.shell] == [2, 3, 4]
    for step in steps:
        if step.shell:
            _run_step(root, step, shell=step.shell.replace("NEW", NEW_VERSION))

    assert check(root, "ready") == {"ready": True}
    link = root.run("readlink /opt/govedge-fleet/venv").stdout.strip()
    assert link == f"venv-{NEW_VERSION}"
    version = root.run(
        "/opt/govedge-fleet/venv/bin/python -c "
        "'import importlib.metadata as m; print(m.version(\"govedge\"))'"
    )
    assert version.stdout.strip() == NEW_VERSION, version.stderr
    # What a client of the API reads: each API worker's /openapi.json names it too.
    assert check(root, "versions") == {"versions": [NEW_VERSION]}
    assert failed_install_units(root) == set()
    # Every worker stopped and started again (on the new link), and said nothing amiss.
    journal = root.run(f"journalctl -u 'govedge-fleet-*' --after-cursor='{cursor}'")
    assert journal.returncode == 0, journal.stderr
    assert journal.stdout.count(CRL_RELOADED) == 4
    assert _complaints(journal.stdout) == []
    # The accounts, and the keys they are checked with, survived: the first admin's
    # password and API token made at install still log in.
    answer = check(root, "login")
    assert (answer["token_me"], answer["cookie_me"]) == ("admin", "admin"), answer


def _journal_cursor(root: CleanRoot) -> str:
    """Where the journal ends now, to read only what comes after."""
    done = root.run("journalctl -n 1 -o json --output-fields=__CURSOR")
    assert done.returncode == 0, done.stderr
    cursor: str = json.loads(done.stdout.splitlines()[-1])["__CURSOR"]
    return cursor
