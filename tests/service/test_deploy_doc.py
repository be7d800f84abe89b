"""The reader of docs/deploy.md's install and upgrade steps, which the deploy test runs
as written."""

from __future__ import annotations

import pytest

from tests.service.deploy_doc import SECTION, UPGRADE_SECTION, install_steps, upgrade_steps

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


def test_the_upgrade_has_commands_in_the_steps_that_upgrade_and_none_after() -> None:
    steps = upgrade_steps()
    # Step 1 points at the backup section; "Rolling back" after step 4 is no step.
    assert [step.number for step in steps] == [1, 2, 3, 4]
    assert [step.number for step in steps if step.shell] == [2, 3, 4]
    assert steps[2].shell.splitlines() == [
        "systemctl stop govedge-fleet.target",
        "ln -sfn venv-NEW /opt/govedge-fleet/venv",
        "runuser -u govedge-fleet -- fleet-server migrate",
    ]
    assert steps[3].shell.startswith("systemctl start govedge-fleet.target\n")
    # The install section's steps are not read into the upgrade's.
    assert not any("createuser" in step.shell for step in steps)


def test_the_upgrade_reader_refuses_what_the_install_reader_refuses() -> None:
    other_language = f"{UPGRADE_SECTION}\n\n1. **One.**\n\n   ```bash\n   x\n   ```\n\n## Next\n"
    with pytest.raises(ValueError, match="upgrade section has a block that is not ```sh"):
        upgrade_steps(other_language)
    out_of_order = f"{UPGRADE_SECTION}\n\n2. **Two.**\n\n## Next\n"
    with pytest.raises(ValueError, match=r"upgrade steps are not numbered 1\.\.N"):
        upgrade_steps(out_of_order)


def test_a_block_in_another_language_is_refused_not_skipped() -> None:
    page = f"{SECTION}\n\n1. **One.**\n\n   ```bash\n   echo hidden\n   ```\n\n## Next\n"
    with pytest.raises(ValueError, match="not ```sh"):
        install_steps(page)


def test_steps_out_of_order_are_refused() -> None:
    page = f"{SECTION}\n\n1. **One.**\n\n3. **Three.**\n\n## Next\n"
    with pytest.raises(ValueError, match=r"numbered 1\.\.N"):
        install_steps(page)
