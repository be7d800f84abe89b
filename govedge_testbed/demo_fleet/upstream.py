"""The demo's upstream: the provincial platform and its 好差评 system on loopback.

The same receiver the tests use (``govedge_testbed.upstream``), speaking what the
server's HTTP adapter sends (signed JSON, ``Idempotency-Key``, a case number back), and
a targets file naming it, so the demo's submissions and evaluations are delivered.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

from govedge_testbed.upstream import Upstream

__all__ = ["EVALUATION_TARGET", "SUBMISSION_TARGET", "DemoUpstream", "start_upstream"]

# The target names catalogue.csv routes to.
SUBMISSION_TARGET: Final = "zj-platform"
EVALUATION_TARGET: Final = "zj-haochaping"


@dataclass(frozen=True, slots=True)
class DemoUpstream:
    """The running receiver and the targets file for ``GOVEDGE_UPSTREAM_TARGETS_FILE``."""

    receiver: Upstream
    targets_file: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.receiver.port}/"


def start_upstream(data_dir: Path) -> DemoUpstream:
    """Start the receiver and write its targets file into ``data_dir``."""
    # A fresh secret per run: the file sits in the demo's data directory.
    receiver = Upstream(
        secret=secrets.token_urlsafe(24).encode(),
        case_prefix=f"ZJ{date.today():%Y%m%d}",
    )
    receiver.start()
    targets = [
        {"name": name, "url": receiver.url(name), "hmac_secret": receiver.secret.decode()}
        for name in (SUBMISSION_TARGET, EVALUATION_TARGET)
    ]
    path = data_dir / "upstream-targets.json"
    path.write_text(json.dumps({"evaluation_target": EVALUATION_TARGET, "targets": targets}))
    path.chmod(0o600)
    return DemoUpstream(receiver=receiver, targets_file=path)
