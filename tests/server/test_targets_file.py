"""The upstream targets file: checked once, the same way in every command that reads it.

The documented example must work as written; a bad file ends ``fleet-server run`` and
``fleet-server catalogue import`` alike with exit code 2 and one line naming the file,
the field and the reason (never the value), and no traceback. Before this, a non-ASCII
placeholder in a header passed ``catalogue import`` and crashed ``run`` with a
``UnicodeEncodeError`` traceback when the delivery worker built its HTTP client.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fleet_server.routing.http_adapter import HttpJsonAdapter
from fleet_server.routing.targets import TargetsFileError, load_targets
from govedge_testbed import Mosquitto
from tests.e2e.conftest import BIN, start_server, stop_process

DOCS = Path(__file__).parents[2] / "docs" / "transactions.md"
SECRET_ENV = {"ZJ_PLATFORM_SECRET": "a-secret-of-32-characters-length"}
GOOD_SECRET = "0123456789abcdef0123"


def docs_example() -> str:
    """The YAML block of docs/transactions.md's "Targets file" section, as written."""
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## Targets file") :]
    found = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert found is not None
    return found.group(1)


def _catalogue(path: Path) -> Path:
    row = {
        "code": "ZJ-1", "base_code": "000101", "name": "居民身份证换领", "level": 4,
        "handling_type": "promised", "promised_days": 5, "department": "公安局",
        "outlet_kinds": ["township_centre"], "handling_mode": "direct",
        "region_codes": ["33"], "target": "zj-platform",
    }  # fmt: skip
    path.write_text(json.dumps([row]), encoding="utf-8")
    return path


def _fleet_server(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GOVEDGE_", "ZJ_"))}
    keep = {"GOVEDGE_PII_KEY_DIR": os.environ.get("GOVEDGE_PII_KEY_DIR", "")}
    return subprocess.run(
        [str(BIN / "fleet-server"), *args],
        capture_output=True, text=True, timeout=90, check=False,
        env={**clean, **keep, **env},
    )  # fmt: skip


def test_docs_example_works_in_every_command(broker: Mosquitto, tmp_path: Path) -> None:
    targets = tmp_path / "targets.yaml"
    targets.write_text(docs_example(), encoding="utf-8")
    env = {"GOVEDGE_UPSTREAM_TARGETS_FILE": str(targets), **SECRET_ENV}
    database = f"sqlite:///{tmp_path / 'fleet.db'}"
    imported = _fleet_server(
        "catalogue", "import", str(_catalogue(tmp_path / "cat.json")),
        "--database-url", database, env=env,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    # The server starts with the delivery worker built from this file (it crashed here).
    server = start_server(broker.url, database, tmp_path / "server.log", env=env)
    try:
        log = server.log.read_text(errors="replace")
        assert "Traceback" not in log
    finally:
        stop_process(server.proc)
    assert server.proc.returncode == 0


@pytest.mark.parametrize(
    ("name", "content", "env", "field"),
    [
        # The documented example as it was: a "…" placeholder in the Authorization header.
        (
            "targets.yaml",
            "targets:\n  - name: zj-platform\n    url: https://platform.example/api/cases\n"
            '    headers: {Authorization: "Bearer …"}\n',
            {},
            "targets[0].headers: header Authorization: value has non-ASCII",
        ),
        (
            "targets.json",
            json.dumps({"targets": [{"name": "zj-platform", "url": "https://p.example/",
                                     "hmac_secret_env": "ZJ_PLATFORM_SECRET"}]}),
            {},
            "targets[0]: environment variable ZJ_PLATFORM_SECRET is not set",
        ),
    ],
)  # fmt: skip
def test_bad_file_is_one_clear_line_in_every_command(
    tmp_path: Path, name: str, content: str, env: dict[str, str], field: str
) -> None:
    targets = tmp_path / name
    targets.write_text(content, encoding="utf-8")
    env = {"GOVEDGE_UPSTREAM_TARGETS_FILE": str(targets), **env}
    database = f"sqlite:///{tmp_path / 'fleet.db'}"
    run = _fleet_server(
        "run", "--database-url", database, "--mqtt-url", "mqtt://127.0.0.1:1",
        "--listen", "127.0.0.1:0", env=env,
    )  # fmt: skip
    imported = _fleet_server(
        "catalogue", "import", str(_catalogue(tmp_path / "cat.json")),
        "--database-url", database, env=env,
    )  # fmt: skip
    for result in (run, imported):
        assert result.returncode == 2, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        assert f"fleet-server: bad targets file {targets}: {field}" in result.stderr
        assert "Bearer" not in result.stderr  # a header value is a credential
    assert run.stderr.strip().splitlines()[-1] == imported.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "fleet.db").exists()  # refused before anything was done


def _target(**fields: Any) -> dict[str, Any]:
    return {"name": "t1", "url": "https://upstream.example/cases"} | fields


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        ({"targets": [_target(headers={"X-Token": "ab\r\nInjected: 1"})]},
         "targets[0].headers", "line break or control character at position 3"),
        ({"targets": [_target(headers={"Authorization": "令牌"})]},
         "targets[0].headers", "non-ASCII text at position 1"),
        ({"targets": [_target(headers={"Bad Name": "x"})]},
         "targets[0].headers.Bad Name.[key]", "should match pattern"),
        ({"targets": [_target(headers={"Idempotency-Key": "x"})]},
         "targets[0].headers", "set by the server itself"),
        ({"targets": [_target(headers={"X-Sig": "x"}, signature_header="x-sig")]},
         "targets[0]", "clashes with a header"),
        ({"targets": [_target(url="ftp://upstream.example/")]}, "targets[0].url", "scheme"),
        ({"targets": [_target(url="https://user:pw@upstream.example/")]},
         "targets[0].url", "must not carry a user or password"),
        ({"targets": [_target(hmac_secret="short")]}, "targets[0].hmac_secret", "16"),
        ({"targets": [_target(backoff_base_s=10, backoff_max_s=5)]},
         "targets[0]", "backoff_base_s must not exceed backoff_max_s"),
        ({"targets": [_target(), _target()]}, "file", "target names must be unique"),
        ({"evaluation_target": "nope", "targets": [_target()]}, "file", "is not a target"),
        ({"targets": [_target(timeout_s="fast")]}, "targets[0].timeout_s", "valid number"),
        ({"targets": [_target(colour="red")]}, "targets[0].colour", "Extra inputs"),
        ([_target()], "", "must hold a table"),
    ],
)  # fmt: skip
def test_each_rule_names_field_and_reason_never_the_value(
    tmp_path: Path, data: Any, field: str, reason: str
) -> None:
    path = tmp_path / "targets.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(TargetsFileError) as caught:
        load_targets(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {field}")
    assert reason in message
    for secret in ("Injected", "令牌", "short", ":pw@"):
        assert secret not in message


def test_accepted_targets_build_their_http_client(tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    path.write_text(
        'evaluation_target = "t1"\n[[targets]]\nname = "t1"\n'
        'url = "http://127.0.0.1:9/x"\n'
        f'hmac_secret = "{GOOD_SECRET}"\n'
        '[targets.headers]\nAuthorization = "Bearer abc.DEF-123_~+/="\n',
        encoding="utf-8",
    )
    config = load_targets(path)
    adapter = HttpJsonAdapter(config.targets[0])
    adapter.close()


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("t.yaml", b"targets: [\n"),
        ("t.toml", b"targets = \n"),
        ("t.json", b"\xff\xfe{}"),
        ("t.json", b"[" * 100_000),
        ("t.ini", b"[targets]\n"),
        ("t.yaml", b"x" * (1024 * 1024 + 1)),
    ],
)
def test_unreadable_files_are_clear_errors(tmp_path: Path, name: str, raw: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(raw)
    with pytest.raises(TargetsFileError, match=re.escape(str(path))):
        load_targets(path)
