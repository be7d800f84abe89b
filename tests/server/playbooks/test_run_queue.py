"""Runs past the concurrency limit wait their turn (pending), first come first served,
and one canceled while waiting never runs."""

from __future__ import annotations

from pathlib import Path

from tests.server.playbooks.kit import DONE, playbook_api


def test_runs_past_the_limit_wait_and_a_waiting_one_can_be_canceled(tmp_path: Path) -> None:
    with playbook_api(tmp_path, playbook_max_concurrent_runs=1) as pb:
        pb.add_outlet("o-slow")
        waiting_dir = pb.add_outlet("o-next")
        dropped_dir = pb.add_outlet("o-dropped")
        slow = pb.start(playbook="slow.yml", target={"outlets": ["o-slow"]})
        pb.wait(slow["id"], until=frozenset({"running"}))
        nxt = pb.start(playbook="mark.yml", target={"outlets": ["o-next"]},
                       extra_vars={"marker_text": "next"})  # fmt: skip
        dropped = pb.start(playbook="mark.yml", target={"outlets": ["o-dropped"]},
                           extra_vars={"marker_text": "dropped"})  # fmt: skip
        third_dir = pb.add_outlet("o-third")
        third = pb.start(playbook="mark.yml", target={"outlets": ["o-third"]},
                         extra_vars={"marker_text": "third"})  # fmt: skip
        # one slot: the two later runs wait, pending, while the slow one runs
        assert pb.run_json(nxt["id"])["status"] == "pending"
        assert pb.run_json(dropped["id"])["status"] == "pending"
        answer = pb.api.client.post(f"/api/v1/playbook-runs/{dropped['id']}/cancel",
                                    headers=pb.tech)  # fmt: skip
        assert answer.status_code == 202, answer.text
        assert pb.wait(dropped["id"], until=DONE, deadline_s=30)["status"] == "canceled"
        assert pb.run_json(nxt["id"])["status"] == "pending"  # still behind the slow one
        pb.api.client.post(f"/api/v1/playbook-runs/{slow['id']}/cancel", headers=pb.tech)
        assert pb.wait(slow["id"], until=DONE, deadline_s=30)["status"] == "canceled"
        # the slot is free: the waiting run goes through; the canceled one never ran
        assert pb.wait(nxt["id"], until=DONE, deadline_s=60)["status"] == "successful"
        assert (waiting_dir / "marker.txt").read_text() == "next\n"
        assert not (dropped_dir / "marker.txt").exists()
        # first come, first served: the third run started only after the next one ended
        done_third = pb.wait(third["id"], until=DONE, deadline_s=60)
        assert done_third["status"] == "successful"
        assert done_third["started_at"] >= pb.run_json(nxt["id"])["finished_at"]
        assert (third_dir / "marker.txt").read_text() == "third\n"
