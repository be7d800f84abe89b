"""``edge-agent diagnose`` without a running agent: the archive still says what it could
not read and why, its JSON stays JSON whatever the PC's figures, and its texts are
masked. (With a running agent and its technician socket, the archive is checked end to
end in tests/e2e/test_outlet_playbooks.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

from edge_agent.technician.diagnose import _masked
from govedge_wire.pii import make_id_number, mask_id_number

EDGE_AGENT = Path(sys.executable).parent / "edge-agent"


def test_numbers_stay_numbers_and_texts_are_masked() -> None:
    citizen = make_id_number("330106", "19900101", 3)
    value = {
        "free_bytes": 13812345678,  # a 13 GB disk: a figure, not a mobile number
        "note": f"reader said {citizen} for 13812345678",
        "list": [citizen, 1.5, None, True],
        citizen: "a key",
    }
    masked = _masked(value)
    assert masked["free_bytes"] == 13812345678
    assert masked["note"] == f"reader said {mask_id_number(citizen)} for 138****5678"
    assert masked["list"] == [mask_id_number(citizen), 1.5, None, True]
    assert mask_id_number(citizen) in masked
    json.loads(json.dumps(masked))


def test_without_a_running_agent_the_archive_says_why(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    citizen = make_id_number("330106", "19900101", 5)
    log = tmp_path / "agent.log"
    log.write_text(f"line one\nerror: {citizen} 13912345678\n", encoding="utf-8")
    out = tmp_path / "d.tar.gz"
    done = subprocess.run(
        [str(EDGE_AGENT), "diagnose", "--out", str(out), "--data-dir", str(data_dir),
         "--home", str(tmp_path / "home"), "--log-file", str(log)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with tarfile.open(out) as archive:
        files = {
            m.name.split("/", 1)[1]: archive.extractfile(m).read().decode()  # type: ignore[union-attr]
            for m in archive.getmembers()
        }
    summary = json.loads(files["summary.json"])
    assert summary["agent"]["running"] is False
    assert "technician.sock does not exist" in summary["agent"]["error"]
    assert "error" in summary["service"] or "ActiveState" in summary["service"]
    devices = json.loads(files["devices.json"])
    assert "technician.sock does not exist" in devices["agent"]["error"]
    assert citizen not in files["journal.txt"]
    assert "139****5678" in files["journal.txt"]
