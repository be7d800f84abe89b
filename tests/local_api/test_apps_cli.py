"""``edge-agent apps add|list|remove``: the token is printed once and stored hashed, 0600."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_agent.cli import main
from edge_agent.local_api import AppRegistry, AppRegistryError


def test_add_list_remove(tmp_path: Path) -> None:
    runner = CliRunner()
    data = str(tmp_path / "data")
    added = runner.invoke(
        main,
        ["apps", "add", "clerk", "--origin", "HTTPS://Clerk.Example:443/",
         "--origin", "http://127.0.0.1:5173", "--data-dir", data],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    assert token.startswith("gva_")
    assert len(token) > 40
    stored = (tmp_path / "data" / "apps.json").read_text()
    assert token not in stored
    assert stat.S_IMODE((tmp_path / "data" / "apps.json").stat().st_mode) == 0o600
    app = AppRegistry(tmp_path / "data").authenticate(token)
    assert app is not None
    assert app.origins == ("https://clerk.example", "http://127.0.0.1:5173")

    listed = runner.invoke(main, ["apps", "list", "--data-dir", data])
    assert listed.exit_code == 0
    assert "clerk" in listed.stdout
    assert token not in listed.stdout

    again = runner.invoke(main, ["apps", "add", "clerk", "--data-dir", data])
    assert again.exit_code == 2
    assert "exists" in again.stderr

    removed = runner.invoke(main, ["apps", "remove", "clerk", "--data-dir", data])
    assert removed.exit_code == 0
    assert AppRegistry(tmp_path / "data").authenticate(token) is None
    missing = runner.invoke(main, ["apps", "remove", "clerk", "--data-dir", data])
    assert missing.exit_code == 1


def test_bad_origin_and_unsafe_file_are_refused(tmp_path: Path) -> None:
    registry = AppRegistry(tmp_path)
    with pytest.raises(AppRegistryError, match="path"):
        registry.add("clerk", origins=["https://clerk.example/app"])
    with pytest.raises(AppRegistryError, match="https://host"):
        registry.add("clerk", origins=["*"])
    registry.add("clerk", origins=[])
    (tmp_path / "apps.json").chmod(0o644)
    with pytest.raises(AppRegistryError, match="chmod 600"):
        AppRegistry(tmp_path)


def test_running_registry_sees_changes_without_restart(tmp_path: Path) -> None:
    running = AppRegistry(tmp_path)
    _, token = AppRegistry(tmp_path).add("kiosk", origins=["https://kiosk.example"])
    assert running.authenticate(token) is not None
    assert running.all_origins() == frozenset({"https://kiosk.example"})
    data = json.loads((tmp_path / "apps.json").read_text())
    assert data["apps"][0]["name"] == "kiosk"
    assert "token_sha256" in data["apps"][0]
