"""``edge-agent profiles check [PATH]``: exit 0 when every profile is fine, 1 otherwise."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from edge_agent.cli import main


def test_shipped_profiles_pass() -> None:
    result = CliRunner().invoke(main, ["profiles", "check"])
    assert result.exit_code == 0, result.output
    assert "profiles ok" in result.output


def test_a_broken_profile_is_named_with_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "id: broken\nname: x\nkind: id_card_reader\ndriver: nope\nmatch:\n  - usb:\n"
        "      subsystem: tty\n      vendor_id: 1234\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["profiles", "check", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{broken}:8: match[0].usb.vendor_id:" in result.output


def test_a_missing_path_fails() -> None:
    result = CliRunner().invoke(main, ["profiles", "check", "/nonexistent/profiles"])
    assert result.exit_code == 1
    assert "not found" in result.output
