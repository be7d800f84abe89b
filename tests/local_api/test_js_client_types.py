"""The client's TypeScript declarations, compiled by the real TypeScript compiler.

``tsc --noEmit --strict`` checks ``govedge-local.d.ts`` itself, a clerk page using the
client as docs/local-api.md shows (``typescript/counter_page.ts``) and calls the
declarations must refuse (``typescript/wrong_calls.ts``, each under
``// @ts-expect-error``). Each run compiles copies beside each other, as an app that
ships its own copy of the client would have them; the last test changes a copy of the
declarations and expects the compiler to notice. ``scripts/bootstrap --for-tests``
installs the compiler into ``.tools/typescript``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import missing

ROOT = Path(__file__).parents[2]
DECLARATIONS = ROOT / "edge_agent" / "local_api" / "client" / "govedge-local.d.ts"
EXAMPLES = Path(__file__).parent / "typescript"
TSC_OPTIONS = (
    "--noEmit",
    "--strict",
    "--target",
    "es2022",
    "--module",
    "es2022",
    "--moduleResolution",
    "bundler",
    "--lib",
    "es2022,dom",
)


def _tsc() -> str:
    local = ROOT / ".tools" / "typescript" / "node_modules" / ".bin" / "tsc"
    if local.exists():
        return str(local)
    found = shutil.which("tsc")
    if found is None:
        missing("tsc (scripts/bootstrap --for-tests installs TypeScript into .tools/typescript)")
    return found


def _compile(tmp_path: Path, declarations: str, *examples: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / DECLARATIONS.name).write_text(declarations, encoding="utf-8")
    for name in examples:
        shutil.copy(EXAMPLES / name, tmp_path / name)
    return subprocess.run(
        [_tsc(), *TSC_OPTIONS, DECLARATIONS.name, *examples],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _declarations() -> str:
    return DECLARATIONS.read_text(encoding="utf-8")


def test_the_declarations_and_the_documented_use_compile_under_strict(tmp_path: Path) -> None:
    done = _compile(tmp_path, _declarations(), "counter_page.ts", "wrong_calls.ts")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("example", "declared", "changed", "complaint"),
    [
        # A field renamed in the declarations: the documented page no longer compiles.
        ("counter_page.ts", "export interface SubmissionAccepted { tx_id: string;",
         "export interface SubmissionAccepted { txId: string;",
         "'tx_id' does not exist on type 'SubmissionAccepted'"),
        # A parameter loosened to any: a wrong call is accepted, its expect-error unused.
        ("wrong_calls.ts", "windowCall(window: string): Promise<WindowResultPublic>;",
         "windowCall(window: any): Promise<WindowResultPublic>;",
         "Unused '@ts-expect-error' directive"),
    ],
    ids=["renamed-field", "loosened-parameter"],
)  # fmt: skip
def test_a_wrong_declaration_fails_the_compile(
    tmp_path: Path, example: str, declared: str, changed: str, complaint: str
) -> None:
    wrong = _declarations().replace(declared, changed)
    assert wrong != _declarations()
    done = _compile(tmp_path, wrong, example)
    assert done.returncode != 0
    assert example in done.stdout
    assert complaint in done.stdout
