"""Social-security cards through a REAL pcscd + vpcd, and document captures from the camera.

The PC/SC stack is the session fixture of
``tests/devices/social_security_card_reader/test_social_security.py`` (imported, not
rewritten): under ``CI=true`` a missing pcscd fails, elsewhere it skips.
The document camera is the file-backed simulator that OpenCV opens like ``/dev/videoN``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_agent.devices.document_camera.simulator import DocumentCameraSimulator
from edge_agent.devices.social_security_card_reader.simulator import SocialSecurityCardSimulator
from edge_agent.devices.social_security_card_reader.vpcd import PcscStack
from tests.devices.social_security_card_reader.test_social_security import CARD, wait_until_absent
from tests.local_api.harness import CAMERA, CAMERA_SIZE, SSC_READER, outlet
from tests.local_api.test_submissions import submission


def decode(jpeg: bytes) -> np.ndarray[Any, Any]:
    image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG OpenCV can decode"
    return np.asarray(image)


def test_social_security_card_read_through_pcscd(
    tmp_path: Path,
    pcsc: PcscStack,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wait_until_absent(pcsc)
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        async with outlet(tmp_path, pcsc=pcsc) as o, asyncio.timeout(40):
            empty = await o.client.post(
                "/v1/social-security/read", headers=o.auth, json={"wait_s": 0.3}
            )
            assert empty.status_code == 409, empty.text
            assert empty.json()["error"] == "no_card"
            assert "chip first" in empty.json()["hint"]
            with SocialSecurityCardSimulator(CARD, port=pcsc.vpcd_port):
                response = await o.client.post(
                    "/v1/social-security/read", headers=o.auth, json={"wait_s": 5}
                )
            assert response.status_code == 200, response.text
            assert response.json() == {
                "device_id": SSC_READER,
                "card_number": CARD.card_number,
                "region": CARD.region,
                "card_id_code": response.json()["card_id_code"],
                "name": CARD.name,
                "id_number": CARD.ssn,
            }
            assert response.json()["card_id_code"].startswith(CARD.region.lower())

    asyncio.run(main())
    assert CARD.ssn not in caplog.text
    assert CARD.name not in caplog.text


def test_capture_as_json_and_as_jpeg_then_submit_it_by_id(tmp_path: Path) -> None:
    width, height = CAMERA_SIZE

    async def main() -> None:
        with DocumentCameraSimulator(width=1280, height=960, frames=3) as camera:
            async with outlet(tmp_path, camera=camera) as o, asyncio.timeout(40):
                response = await o.client.post("/v1/documents/capture", headers=o.auth)
                assert response.status_code == 200, response.text
                doc = response.json()
                assert doc["device_id"] == CAMERA
                assert (doc["width"], doc["height"]) == (width, height)
                jpeg = base64.b64decode(doc["jpeg_base64"])
                assert doc["size"] == len(jpeg)
                assert decode(jpeg).shape == (height, width, 3)
                assert doc["document_id"].startswith("doc-")

                raw = await o.client.post(
                    "/v1/documents/capture", headers=o.auth, params={"format": "jpeg"}
                )
                assert raw.status_code == 200, raw.text
                assert raw.headers["content-type"] == "image/jpeg"
                assert raw.headers["x-document-id"].startswith("doc-")
                assert raw.headers["x-document-id"] != doc["document_id"]
                assert decode(raw.content).shape == (height, width, 3)

                body = submission(
                    materials=[{"name": "身份证复印件", "document_id": doc["document_id"]}]
                )
                headers = {**o.auth, "Idempotency-Key": "case-with-capture-1"}
                filed = await o.client.post("/v1/submissions", headers=headers, json=body)
                assert filed.status_code == 202, filed.text
                assert filed.json()["materials"] == 1
                entry = await o.runtime.outbox.read("case-with-capture-1")
                assert entry is not None
                materials = entry.body["materials"]
                assert isinstance(materials, list)
                assert isinstance(materials[0], dict)
                assert materials[0]["name"] == "身份证复印件"
                progress = await o.runtime.outbox.material_progress(str(materials[0]["ref"]))
                assert progress is not None
                assert progress.size == len(jpeg)  # the captured bytes, not re-uploaded

    asyncio.run(main())
