"""Keys enrolled into ``DATA_DIR/tls`` move to ``keys_dir`` whole, once, crash or not.

The move runs in a child process that dies (``os._exit``, no cleanup) at each file
operation in turn; the next move must leave one whole copy of every file in the keys
dir, a key that matches its certificate, and nothing in ``DATA_DIR/tls``. The keys dir
on /dev/shm (tmpfs) makes the move cross filesystems for real: copy, fsync, rename,
then remove.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from edge_agent.enrollment.move import KeysMoveError, move_keys
from edge_agent.enrollment.store import TlsStore, new_key
from edge_agent.fleet_config import load_config_keys, store_config_keys
from tests.enrollment.test_store_crash import _certificate, _public

pytestmark = pytest.mark.timeout(120)

FILES = ["ca.pem", "cert.pem", "config-keys.json", "enrollment.json", "key.pem"]
CONFIG_KEYS = {"k1": "A" * 43 + "="}


@pytest.fixture
def other_fs() -> Iterator[Path]:
    """A folder on another filesystem than the test's tmp_path."""
    path = Path("/dev/shm") / f"govedge-keys-{os.getpid()}-{os.urandom(4).hex()}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _enrolled(data_dir: Path) -> dict[str, bytes]:
    """What ``edge-agent enroll`` left in DATA_DIR/tls before keys_dir existed."""
    key = new_key()
    old = TlsStore(data_dir / "tls")
    old.save(key=key, certificate_pem=_certificate(key, 1), ca_pem=_certificate(key, 1),
             server_url="https://fleet.example", outlet_id="outlet-crash")  # fmt: skip
    store_config_keys(data_dir / "tls", CONFIG_KEYS)
    (data_dir / "outbox.db").write_bytes(b"transactions stay")
    return {name: (data_dir / "tls" / name).read_bytes() for name in FILES}


def _assert_moved(data_dir: Path, keys_dir: Path, files: dict[str, bytes]) -> None:
    assert not (data_dir / "tls").exists()
    assert (data_dir / "outbox.db").read_bytes() == b"transactions stay"
    assert sorted(p.name for p in keys_dir.iterdir()) == FILES  # no partial copy left
    assert {name: (keys_dir / name).read_bytes() for name in FILES} == files
    assert keys_dir.stat().st_mode & 0o777 == 0o700
    assert (keys_dir / "key.pem").stat().st_mode & 0o777 == 0o600
    store = TlsStore(keys_dir)
    assert _public(store.private_key()) == store.certificate().public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    store.ssl_context()  # key and certificate load as a pair
    assert store.identity().outlet_id == "outlet-crash"
    assert list(load_config_keys(keys_dir, None)) == ["k1"]


@pytest.mark.parametrize("across", [False, True], ids=["same-fs", "across-fs"])
def test_keys_in_the_data_dir_end_up_only_in_the_keys_dir_logged_once(
    tmp_path: Path, other_fs: Path, caplog: pytest.LogCaptureFixture, *, across: bool
) -> None:
    data_dir = tmp_path / "data"
    keys_dir = other_fs if across else tmp_path / "keys"
    files = _enrolled(data_dir)
    with caplog.at_level(logging.INFO, logger="edge_agent.enrollment.move"):
        assert move_keys(data_dir, keys_dir) is True
        assert move_keys(data_dir, keys_dir) is False  # the next start has nothing to do
    _assert_moved(data_dir, keys_dir, files)
    said = [r.getMessage() for r in caplog.records if "moved the keys" in r.getMessage()]
    assert len(said) == 1
    assert str(keys_dir) in said[0]


def test_nothing_moves_when_the_keys_dir_is_data_dir_tls(tmp_path: Path) -> None:
    files = _enrolled(tmp_path)
    assert move_keys(tmp_path, tmp_path / "tls") is False
    assert {name: (tmp_path / "tls" / name).read_bytes() for name in FILES} == files


def _move_and_die_at(data_dir: str, keys_dir: str, die_at: int) -> None:
    """Child: move, dying at the ``die_at``-th rename, replace, unlink or rmdir."""
    calls = 0

    def dying(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == die_at:
                os._exit(17)
            return real(*args, **kwargs)

        return call

    for name in ("rename", "replace", "unlink", "rmdir"):
        setattr(os, name, dying(getattr(os, name)))
    move_keys(Path(data_dir), Path(keys_dir))
    os._exit(0)


# Same filesystem: 5 renames and an rmdir; across: 5 x (the rename refused with EXDEV,
# replace of the whole copy, unlink of the old file) and an rmdir.
@pytest.mark.parametrize(
    ("across", "die_at"),
    [(False, n) for n in range(1, 7)] + [(True, n) for n in range(1, 17)],
)
def test_a_crash_at_any_step_of_the_move_is_finished_by_the_next_start(
    tmp_path: Path, other_fs: Path, *, across: bool, die_at: int
) -> None:
    data_dir = tmp_path / "data"
    keys_dir = other_fs if across else tmp_path / "keys"
    files = _enrolled(data_dir)
    child = multiprocessing.get_context("fork").Process(
        target=_move_and_die_at, args=(str(data_dir), str(keys_dir), die_at)
    )
    child.start()
    child.join(60)
    assert child.exitcode == 17  # it died where it was told to
    # Between the crash and the next start every file is whole in one place or both.
    for name, content in files.items():
        copies = [p for p in (data_dir / "tls" / name, keys_dir / name) if p.exists()]
        assert copies, name
        assert all(p.read_bytes() == content for p in copies), name
    move_keys(data_dir, keys_dir)
    _assert_moved(data_dir, keys_dir, files)


def test_a_partial_copy_left_by_a_crash_is_replaced_by_a_whole_one(
    tmp_path: Path, other_fs: Path
) -> None:
    data_dir = tmp_path / "data"
    files = _enrolled(data_dir)
    other_fs.mkdir(mode=0o700)
    (other_fs / ".key.pem.moving").write_bytes(files["key.pem"][:40])  # cut off mid-copy
    assert move_keys(data_dir, other_fs) is True
    _assert_moved(data_dir, other_fs, files)


def test_two_different_copies_are_refused_and_both_kept(tmp_path: Path) -> None:
    data_dir, keys_dir = tmp_path / "data", tmp_path / "keys"
    files = _enrolled(data_dir)
    keys_dir.mkdir(mode=0o700)
    (keys_dir / "key.pem").write_bytes(b"another key")
    with pytest.raises(KeysMoveError, match="differ"):
        move_keys(data_dir, keys_dir)
    assert (keys_dir / "key.pem").read_bytes() == b"another key"
    assert (data_dir / "tls" / "key.pem").read_bytes() == files["key.pem"]
