"""Back the fleet up, restore it elsewhere and prove the copy works (docs/deploy.md).

``python -m fleet_server.backup_check`` (``scripts/backup-restore-check`` in a checkout):

1. **Backup**: ``pg_dump --format=custom`` of the fleet's PostgreSQL database and a tar
   of the key material (the fleet CA directory, the PII key directory, the
   config-signing key), with a manifest of SHA-256 sums, into ``--out``.
2. **Restore**: ``pg_restore`` into ``--scratch-url`` (an empty database) and the keys
   into ``--out/restored``.
3. **Check**: a ``fleet-server run`` on the restored database and keys, against a
   private broker of its own on loopback (never the fleet's broker: it would take the
   outlets' traffic) and with no upstream targets (it must deliver nothing), must list
   the same outlets and the same transactions (id and state) as the source database,
   and the restored PII keys must open every sealed transaction body of the copy.

Exit 0 when every check passed, 1 with what differs, 2 for bad arguments. The output
names outlet and transaction ids only, never a body.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from fleet_server.db import make_engine
from fleet_server.envfile import EnvFileError, load_env_file
from fleet_server.models import InboxEntry, Outlet
from fleet_server.piivault import Vault, VaultError, default_key_dir, use_vault
from fleet_server.pki.ca import CA_CERT_FILE, CRL_COPIES_FILE

DUMP_FILE = "fleet.dump"
KEYS_FILE = "keys.tar"
MANIFEST_FILE = "manifest.json"
PAGE = 500  # the transaction list's largest page
READY_TIMEOUT_S = 120


class CheckFailed(Exception):
    """The restored copy differs from the source, or a step of the check failed."""


@dataclass(frozen=True)
class KeyPaths:
    """Where the server's key material lives (the settings of the server backed up)."""

    pki_dir: Path
    pii_key_dir: Path
    signing_key: Path | None

    def members(self) -> dict[str, Path]:
        """Name in the archive → source path; a missing optional key is left out."""
        found = {"pki": self.pki_dir, "pii-keys": self.pii_key_dir}
        if self.signing_key is not None:
            found["config-signing-key.pem"] = self.signing_key
        return found


@dataclass(frozen=True)
class Fleet:
    """What both sides must agree on: outlet ids and (outlet, tx id) → state."""

    outlets: frozenset[str]
    transactions: dict[tuple[str, str], str]


def libpq(database_url: str) -> tuple[list[str], dict[str, str]]:
    """Connection arguments for pg_dump/pg_restore, the password in the environment
    (never on a command line another user can read in ``ps``)."""
    url: URL = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise CheckFailed(f"{url.render_as_string()}: only a PostgreSQL fleet is backed up here")
    args = ["--dbname", str(url.database or "")]
    args += ["--host", url.host] if url.host else []
    args += ["--port", str(url.port)] if url.port else []
    args += ["--username", url.username] if url.username else []
    env = {"PGPASSWORD": url.password} if url.password else {}
    return args, env


def run_tool(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, **env}, check=False
    )
    if done.returncode != 0:
        raise CheckFailed(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()[-800:]}")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def backup(database_url: str, keys: KeyPaths, out: Path) -> dict[str, Any]:
    """Dump the database and archive the keys into ``out``; return the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)  # the key archive holds the CA key and the PII keys
    args, env = libpq(database_url)
    run_tool(["pg_dump", "--format=custom", "--file", str(out / DUMP_FILE), *args], env)
    with tarfile.open(out / KEYS_FILE, "w") as archive:
        for name, path in keys.members().items():
            if not path.exists():
                raise CheckFailed(f"key material {name} not found at {path}")
            archive.add(path, arcname=name)
    os.chmod(out / KEYS_FILE, 0o600)
    manifest = {
        "files": {name: sha256(out / name) for name in (DUMP_FILE, KEYS_FILE)},
        "keys": sorted(keys.members()),
        "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def restore(backup_dir: Path, scratch_url: str, into: Path) -> Path:
    """Check the manifest, restore the dump into ``scratch_url`` and the keys into ``into``."""
    manifest = json.loads((backup_dir / MANIFEST_FILE).read_text())
    for name, digest in manifest["files"].items():
        if sha256(backup_dir / name) != digest:
            raise CheckFailed(f"{name} does not match its manifest: the backup is damaged")
    args, env = libpq(scratch_url)
    run_tool(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
              *args, str(backup_dir / DUMP_FILE)], env)  # fmt: skip
    into.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tarfile.open(backup_dir / KEYS_FILE) as archive:
        archive.extractall(into, filter="data")
    # The copy must not publish CRLs to the real broker's directories.
    copies = into / "pki" / CRL_COPIES_FILE
    if copies.exists():
        copies.write_text("")
    return into


def read_fleet(database_url: str) -> Fleet:
    """The source's outlets and transactions, read from its database."""
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            outlets = frozenset(session.scalars(select(Outlet.id)))
            rows = session.execute(select(InboxEntry.outlet_id, InboxEntry.tx_id, InboxEntry.state))
            return Fleet(outlets, {(o, t): s for o, t, s in rows})
    finally:
        engine.dispose()


def open_bodies(database_url: str, pii_key_dir: Path) -> int:
    """Open every sealed, unpurged body of the copy with the restored keys."""
    use_vault(Vault(pii_key_dir))
    engine = make_engine(database_url)
    opened = 0
    try:
        with Session(engine) as session:
            for entry in session.scalars(select(InboxEntry).where(InboxEntry.purged_at.is_(None))):
                try:
                    entry.body  # noqa: B018 - reading it decrypts and authenticates it
                except VaultError as exc:
                    raise CheckFailed(
                        f"the restored keys cannot open transaction {entry.tx_id!r} of "
                        f"{entry.outlet_id!r}: {exc}"
                    ) from exc
                opened += 1
    finally:
        engine.dispose()
    return opened


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:]
            raise CheckFailed(f"the restored fleet-server exited {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise CheckFailed(f"the restored fleet-server was not ready within {READY_TIMEOUT_S} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def restored_server(scratch_url: str, keys_dir: Path, work: Path) -> Iterator[str]:
    """A private broker and ``fleet-server run`` on the copy; yields the server's URL."""
    broker_port, port = free_port(), free_port()
    conf = work / "check-broker.conf"
    conf.write_text(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\n")
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    log = work / "check-server.log"
    # Nothing of the real server's configuration: not its settings, and not systemd
    # credentials, which the server would prefer to the restored PII keys.
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GOVEDGE_") and k != "CREDENTIALS_DIRECTORY"
    }
    env = {
        **clean,
        "GOVEDGE_API_AUTH": "off",  # loopback only: the server refuses it anywhere else
        # Not the installed settings file either (its broker, targets, keys).
        "GOVEDGE_ENV_FILE": "",
        "GOVEDGE_STATE_DIR": str(work),
        "GOVEDGE_PKI_DIR": str(keys_dir / "pki"),
        "GOVEDGE_PII_KEY_DIR": str(keys_dir / "pii-keys"),
        "GOVEDGE_RELEASES_DIR": str(work / "releases"),
        "GOVEDGE_PLAYBOOK_RUNS_DIR": str(work / "playbook-runs"),
    }
    if (keys_dir / "config-signing-key.pem").exists():
        env["GOVEDGE_CONFIG_SIGNING_KEY"] = str(keys_dir / "config-signing-key.pem")
    broker = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        with log.open("wb") as out:
            server = subprocess.Popen(
                [str(Path(sys.executable).parent / "fleet-server"), "run",
                 "--mqtt-url", f"mqtt://127.0.0.1:{broker_port}", "--database-url", scratch_url,
                 "--listen", f"127.0.0.1:{port}"],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work,
            )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, server, log)
            yield url
        finally:
            stop(server)
    finally:
        stop(broker)


def served_fleet(url: str) -> Fleet:
    """The outlets and transactions as the restored server's API lists them."""
    outlets: set[str] = set()
    transactions: dict[tuple[str, str], str] = {}
    with httpx.Client(base_url=url, timeout=60) as http:
        offset, total = 0, 1
        while offset < total:
            page = http.get("/api/v1/outlets", params={"limit": 1000, "offset": offset})
            page.raise_for_status()
            body = page.json()
            outlets.update(item["outlet_id"] for item in body["items"])
            total, offset = body["total"], offset + 1000
        offset = 0
        while True:
            rows = http.get("/api/v1/transactions", params={"limit": PAGE, "offset": offset})
            rows.raise_for_status()
            listed = rows.json()
            transactions.update({(r["outlet_id"], r["tx_id"]): r["state"] for r in listed})
            if len(listed) < PAGE:
                break
            offset += PAGE
    return Fleet(frozenset(outlets), transactions)


def differences(source: Fleet, copy: Fleet) -> list[str]:
    found = []
    for label, missing in (
        ("outlets missing from the copy", source.outlets - copy.outlets),
        ("outlets only in the copy", copy.outlets - source.outlets),
    ):
        if missing:
            found.append(f"{label}: {', '.join(sorted(missing)[:10])} ({len(missing)})")
    keys = source.transactions.keys() | copy.transactions.keys()
    changed = sorted(k for k in keys if source.transactions.get(k) != copy.transactions.get(k))
    if changed:
        shown = ", ".join(
            f"{o}/{t} {source.transactions.get((o, t))}→{copy.transactions.get((o, t))}"
            for o, t in changed[:10]
        )
        found.append(f"transactions that differ: {shown} ({len(changed)})")
    return found


def check(database_url: str, scratch_url: str, keys: KeyPaths, out: Path) -> str:
    """The whole round trip; a one-line summary, or ``CheckFailed``."""
    backup(database_url, keys, out)
    source = read_fleet(database_url)  # after the dump: nothing older is compared
    keys_dir = restore(out, scratch_url, out / "restored")
    for name, path in keys.members().items():
        if path.is_file() and sha256(keys_dir / name) != sha256(path):
            raise CheckFailed(f"the restored {name} is not the server's")
    source_ca, copy_ca = keys.pki_dir / CA_CERT_FILE, keys_dir / "pki" / CA_CERT_FILE
    if source_ca.exists() and sha256(copy_ca) != sha256(source_ca):
        raise CheckFailed("the restored fleet CA certificate is not the server's")
    opened = open_bodies(scratch_url, keys_dir / "pii-keys")
    with restored_server(scratch_url, keys_dir, out) as url:
        try:
            copy = served_fleet(url)
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise CheckFailed(f"the restored server did not list the fleet: {exc!r}") from exc
    problems = differences(source, copy)
    if problems:
        raise CheckFailed("the restored server differs from the source: " + "; ".join(problems))
    size = (out / DUMP_FILE).stat().st_size / 2**20
    return (
        f"backup-restore-check: ok: {len(copy.outlets)} outlets and "
        f"{len(copy.transactions)} transactions served alike by the restored server; "
        f"{opened} sealed bodies opened with the restored keys; backup in {out} "
        f"(dump {size:.1f} MiB, keys: {', '.join(sorted(keys.members()))})"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="backup-restore-check", description=__doc__.splitlines()[0])
    # The installed server's settings file and state directory, as fleet-server reads them.
    try:
        load_env_file()
    except EnvFileError as exc:
        ap.error(str(exc))
    ap.add_argument("--database-url", default=os.environ.get("GOVEDGE_DATABASE_URL"),
                    help="the fleet's database (GOVEDGE_DATABASE_URL)")  # fmt: skip
    ap.add_argument("--scratch-url", required=True, help="an empty database to restore into")
    state = Path(os.environ.get("GOVEDGE_STATE_DIR") or ".")
    pki_default = os.environ.get("GOVEDGE_PKI_DIR")
    ap.add_argument(
        "--pki-dir", type=Path, default=Path(pki_default) if pki_default else state / "fleet-pki"
    )
    ap.add_argument("--pii-key-dir", type=Path, default=default_key_dir())
    signing = os.environ.get("GOVEDGE_CONFIG_SIGNING_KEY")
    ap.add_argument("--signing-key", type=Path, default=Path(signing) if signing else None)
    ap.add_argument(
        "--out", type=Path, help="keep the backup there (default: a temporary directory)"
    )
    args = ap.parse_args(argv)
    if not args.database_url:
        ap.error("--database-url (or GOVEDGE_DATABASE_URL) is required")
    if args.database_url == args.scratch_url:
        ap.error("--scratch-url must be another database: the restore would overwrite the fleet")
    keys = KeyPaths(args.pki_dir, args.pii_key_dir, args.signing_key)
    temporary = args.out is None
    out = args.out or Path(tempfile.mkdtemp(prefix="govedge-backup-"))
    try:
        print(check(args.database_url, args.scratch_url, keys, out))
    except CheckFailed as exc:
        print(f"backup-restore-check: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if temporary:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
