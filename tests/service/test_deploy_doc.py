"""The reader of docs/deploy.md's install steps, which the deploy test runs as written."""

from __future__ import annotations

import pytest

from tests.service.deploy_doc import SECTION, install_steps

pytestmark = pytest.mark.timeout(30)


def test_the_page_has_commands_in_the_steps_that_install() -> None:
    steps = install_steps()
    with_commands = [step.number for step in steps if step.shell]
    assert with_commands == [1, 2, 3, 4, 5, 6, 7, 8]
    assert steps[3].shell.splitlines()[-1] == (
        "echo GOVEDGE_LISTEN=127.0.0.1:8082 > /etc/govedge/fleet-server-api-2.env"
    )
    # A heredoc's end marker is at the start of its line once the item is dedented.
    assert "\nEOF\n" in steps[3].shell


def test_a_block_in_another_language_is_refused_not_skipped() -> None:
    page = f"{SECTION}\n\n1. **One.**\n\n   ```bash\n   echo hidden\n   ```\n\n## Next\n"
    with pytest.raises(ValueError, match="not ```sh"):
        install_steps(page)


def test_steps_out_of_order_are_refused() -> None:
    page = f"{SECTION}\n\n1. **One.**\n\n3. **Three.**\n\n## Next\n"
    with pytest.raises(ValueError, match=r"numbered 1\.\.N"):
        install_steps(page)
