"""``--keys-dir``: the one option every command that touches the keys takes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from edge_agent.enrollment.move import move_keys
from edge_agent.enrollment.store import default_keys_dir

F = TypeVar("F", bound=Callable[..., object])


def keys_dir_option(func: F) -> F:
    """Add ``--keys-dir`` (env ``GOVEDGE_KEYS_DIR``; unset: ``DATA_DIR/tls``)."""
    return click.option(
        "--keys-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        envvar="GOVEDGE_KEYS_DIR",
        help="Where the TLS key, certificate and fleet CA live (the agent's keys_dir). "
        "Default: DATA_DIR/tls.",
    )(func)


def keys_dir_of(data_dir: Path, keys_dir: Path | None, *, move: bool) -> Path:
    """The keys dir to use; with ``move``, keys still in ``DATA_DIR/tls`` go there first.

    Commands that write keys move them as the agent does at start, so a renewal on an
    upgraded outlet renews the one identity instead of making a second.
    """
    resolved = keys_dir if keys_dir is not None else default_keys_dir(data_dir)
    if move:
        move_keys(data_dir, resolved)
    return resolved
