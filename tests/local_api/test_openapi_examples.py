"""The request examples ``/openapi.json`` shows are bodies the agent accepts.

A clerk-app developer copies an example out of the served document and sends it; an
example the agent's own validation refuses (an ID number with a wrong check digit)
sends them hunting for a bug in their app. Each request schema's examples, as served
by a running agent, are validated with the model the route validates with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.local_api import models
from govedge_wire.pii import check_digit
from tests.local_api.harness import Outlet, outlet


@pytest.mark.timeout(60)
def test_every_served_request_example_is_accepted_by_its_model(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path) as o:
            async with asyncio.timeout(30):
                await check(o)

    async def check(o: Outlet) -> None:
        spec = (await o.client.get("/openapi.json", headers=o.auth)).json()
        checked = []
        for name, schema in spec["components"]["schemas"].items():
            if not name.endswith("Create"):
                continue  # answers are the agent's own, not what an app sends
            for example in schema.get("examples", []):
                getattr(models, name).model_validate(example)
                checked.append(name)
        assert "SubmissionCreate" in checked
        assert "EvaluationCreate" in checked
        # Answers too: an app's own validation of the reader's answer (or a test fixture
        # copied from the document) must not meet an ID number no card can carry.
        numbers = list(_id_numbers(spec))
        assert len(numbers) >= 3
        for number in numbers:
            assert number[17] == check_digit(number[:17]), number

    asyncio.run(main())


def _id_numbers(node: object) -> Iterator[str]:
    """Every ``id_number`` value anywhere in the document (examples are nested)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "id_number" and isinstance(value, str) and len(value) == 18:
                yield value
            else:
                yield from _id_numbers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _id_numbers(value)
