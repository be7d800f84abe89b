"""The agent's memo of profile texts that passed the schema (``DATA_DIR/profiles-checked.json``).

A start whose profiles passed before skips the JSON-Schema check (and jsonschema's ~3 MiB;
tests/test_lazy_heavy_imports.py checks that part in a fresh interpreter). What must not
change: a new or edited file is checked in full, with its problems located as before;
every other check still runs on a remembered file; a damaged memo means a full check.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edge_agent.profiles import DEFAULT_PROFILES_DIR, load_profiles
from edge_agent.profiles.schema_memo import MEMO_FILE
from tests.profiles.test_profiles import GOOD


def _memo(data_dir: Path) -> list[str]:
    passed: list[str] = json.loads((data_dir / MEMO_FILE).read_text())["passed"]
    return passed


def test_profiles_that_passed_are_remembered_and_load_the_same_next_time(tmp_path: Path) -> None:
    memo = tmp_path / MEMO_FILE
    first = load_profiles(schema_memo=memo)
    assert first.problems == ()
    shipped = sorted(DEFAULT_PROFILES_DIR.glob("*.yaml"))
    assert len(_memo(tmp_path)) == len(shipped)
    again = load_profiles(schema_memo=memo)
    assert again.problems == ()
    assert [p.id for p in again.profiles] == [p.id for p in first.profiles]
    assert again.profiles == first.profiles


def test_an_edited_profile_is_checked_against_the_schema_again(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    reader = profiles / "reader.yaml"
    reader.write_text(GOOD, encoding="utf-8")
    memo = tmp_path / MEMO_FILE
    assert [p.id for p in load_profiles(profiles, schema_memo=memo).profiles] == ["good-reader"]
    # A USB id written as a YAML number: the schema's finding, at its line, as without memo.
    reader.write_text(GOOD.replace('vendor_id: "0400"', "vendor_id: 400"), encoding="utf-8")
    loaded = load_profiles(profiles, schema_memo=memo)
    unmemoised = load_profiles(profiles)
    assert loaded.profiles == ()
    assert [(p.line, p.field) for p in loaded.problems] == [(8, "match[0].usb.vendor_id")]
    assert loaded.problems == unmemoised.problems
    assert "quoted hex" in loaded.problems[0].message
    # The failing text is not remembered, and the old text's digest is dropped.
    assert _memo(tmp_path) == []


def test_a_remembered_profile_still_gets_every_check_after_the_schema(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "reader.yaml").write_text(GOOD, encoding="utf-8")
    memo = tmp_path / MEMO_FILE
    load_profiles(profiles, schema_memo=memo)
    # The same text in a second file: the schema passes (remembered), the id check not.
    shutil.copy(profiles / "reader.yaml", profiles / "reader-copy.yaml")
    loaded = load_profiles(profiles, schema_memo=memo)
    assert [p.id for p in loaded.profiles] == ["good-reader"]
    assert [(p.file.name, p.field) for p in loaded.problems] == [("reader.yaml", "id")]


def test_a_damaged_memo_means_a_full_check_and_is_written_anew(tmp_path: Path) -> None:
    memo = tmp_path / MEMO_FILE
    memo.write_text("{not json", encoding="utf-8")
    loaded = load_profiles(schema_memo=memo)
    assert loaded.problems == ()
    assert len(_memo(tmp_path)) == len(sorted(DEFAULT_PROFILES_DIR.glob("*.yaml")))


def test_a_memo_that_cannot_be_written_changes_nothing_but_the_next_start(
    tmp_path: Path,
) -> None:
    memo = tmp_path / "missing-dir" / MEMO_FILE
    loaded = load_profiles(schema_memo=memo)
    assert loaded.problems == ()
    assert len(loaded.profiles) == len(load_profiles().profiles)
    assert not memo.exists()


def test_a_remembered_profile_is_loaded_from_its_parsed_data_the_same(tmp_path: Path) -> None:
    memo = tmp_path / MEMO_FILE
    first = load_profiles(schema_memo=memo)
    parsed = json.loads(memo.read_text())["parsed"]
    assert sorted(parsed) == sorted(_memo(tmp_path))  # every passing text's data is kept
    # A memo written before the data was kept: the next load parses and adds it.
    memo.write_text(json.dumps({"passed": _memo(tmp_path)}))
    assert load_profiles(schema_memo=memo).profiles == first.profiles
    assert json.loads(memo.read_text())["parsed"] == parsed
    # From the data alone: the same profiles as a load without any memo.
    assert load_profiles(schema_memo=memo).profiles == load_profiles().profiles


def test_problems_of_remembered_profiles_keep_their_lines(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "reader.yaml").write_text(GOOD, encoding="utf-8")
    # The same id in a second file after two blank lines: both texts passed the schema
    # and are remembered, and the duplicate id's lines come from their node trees.
    (profiles / "reader-copy.yaml").write_text("\n\n" + GOOD, encoding="utf-8")
    memo = tmp_path / MEMO_FILE
    load_profiles(profiles, schema_memo=memo)
    assert len(json.loads(memo.read_text())["parsed"]) == 2
    remembered = load_profiles(profiles, schema_memo=memo)
    assert remembered.problems == load_profiles(profiles).problems
    (problem,) = remembered.problems
    assert (problem.file.name, problem.field) == ("reader.yaml", "id")
    assert problem.line is not None
    assert f"reader-copy.yaml:{problem.line + 2})" in problem.message


def test_a_memo_s_data_for_another_text_is_not_used(tmp_path: Path) -> None:
    """Data is filed under the digest of the text it came from: an edited file never
    gets the old text's data."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    reader = profiles / "reader.yaml"
    reader.write_text(GOOD, encoding="utf-8")
    memo = tmp_path / MEMO_FILE
    load_profiles(profiles, schema_memo=memo)
    reader.write_text(GOOD.replace("good-reader", "edited-reader"), encoding="utf-8")
    assert [p.id for p in load_profiles(profiles, schema_memo=memo).profiles] == ["edited-reader"]


def test_damaged_data_in_the_memo_means_a_parse_not_a_problem(tmp_path: Path) -> None:
    memo = tmp_path / MEMO_FILE
    first = load_profiles(schema_memo=memo)
    stored = json.loads(memo.read_text())
    stored["parsed"] = dict.fromkeys(stored["parsed"], 5)  # no profile is a number
    memo.write_text(json.dumps(stored))
    again = load_profiles(schema_memo=memo)
    assert again.problems == ()
    assert again.profiles == first.profiles
    assert all(isinstance(d, dict) for d in json.loads(memo.read_text())["parsed"].values())
