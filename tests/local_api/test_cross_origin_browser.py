"""A clerk's page on another origin drives the agent in a real Chromium, with only the client.

Two origins as in the field: a plain-HTTP intranet server (here 127.0.0.2, which
Chromium is told to count as the local network) and an HTTPS site whose certificate
comes from a test CA (``clerk.test`` on 127.0.0.3, counted as public, its CA trusted
by SPKI at launch). The public one gets the *local network access* permission as a
counter PC's managed policy grants it (``LocalNetworkAccessAllowedForUrls``; here
Playwright's grant, the same permission). Each page reads the ID card, captures a
document, files a submission with it and gets the 办件编号 back over the event stream;
upstream holds that case. An unregistered origin is refused and told how to register;
a public page without the permission sees the client's network error and its hint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from govedge_testbed import Mosquitto
from govedge_testbed.upstream import Upstream
from tests.local_api.browser_outlet import RunningOutlet, chromium, with_outlet
from tests.local_api.clerk_origin import make_test_ca, page_html, serving_page
from tests.server.helpers import FleetServer
from tests.server.txkit import delivering_fleet, upstream

__all__ = ["delivering_fleet", "upstream"]  # fixtures used by the tests below

HTTPS_HOST = "clerk.test"


def _run_page(
    outlet: RunningOutlet,
    tmp_path: Path,
    *,
    scheme: str,
    address: str,
    space: str,
    registered: bool = True,
    grant: bool = False,
    own_client: bool = False,
) -> tuple[str, dict[str, Any], str]:
    """Serve the clerk page, open it in Chromium and run its flow; (origin, result, text)."""
    tls = make_test_ca(tmp_path, HTTPS_HOST, address) if scheme == "https" else None
    host = HTTPS_HOST if tls is not None else address
    client = "/govedge-local.js" if own_client else None
    with serving_page(address, page_html(outlet.base_url, client), tls=tls) as port:
        origin = f"{scheme}://{host}:{port}"
        token = outlet.register("counter-web", *([origin] if registered else []))
        if not registered:  # a known app whose pages live elsewhere
            outlet.register("other-web", "https://elsewhere.example")
        args = [f"--ip-address-space-overrides={address}:{port}={space}"]
        if tls is not None:
            args += [
                f"--host-resolver-rules=MAP {HTTPS_HOST} {address}",
                f"--ignore-certificate-errors-spki-list={tls.ca_spki_sha256}",
            ]
        with chromium(*args) as browser:
            context = browser.new_context()
            if grant:
                context.grant_permissions(["local-network-access"], origin=origin)
            page = context.new_page()
            page.goto(f"{origin}/counter")
            page.wait_for_function("window.pageReady === true")
            result: dict[str, Any] = page.evaluate("(t) => window.runFlow(t)", token)
            if "error" in result:
                expect(page.locator("#error")).to_contain_text(result["hint"])
            else:
                expect(page.locator("#case")).to_have_text(result["case_number"])
            return origin, result, page.locator("body").inner_text()


@pytest.mark.timeout(240)  # a fleet, an agent and Chromium on a busy 2-core CI machine
@pytest.mark.parametrize(
    ("scheme", "address", "space", "grant"),
    [
        pytest.param("http", "127.0.0.2", "local", False, id="http-intranet"),
        pytest.param("https", "127.0.0.3", "public", True, id="https-test-ca-policy-granted"),
    ],
)
def test_a_clerk_page_on_another_origin_files_a_case_and_gets_its_number(
    broker: Mosquitto,
    delivering_fleet: FleetServer,
    upstream: Upstream,
    outlet_id: str,
    tmp_path: Path,
    scheme: str,
    address: str,
    space: str,
    grant: bool,
) -> None:
    origin, result, _ = with_outlet(
        broker, outlet_id, tmp_path / "agent",
        lambda outlet: _run_page(
            outlet, tmp_path, scheme=scheme, address=address, space=space, grant=grant
        ),
    )  # fmt: skip
    assert origin.startswith(f"{scheme}://")
    assert result["outcome"] == "delivered"
    key = f"{outlet_id}:{result['tx_id']}"
    assert upstream.accepted_count[key] == 1
    sent = upstream.accepted[key]
    assert sent["case_number"] == result["case_number"]
    assert sent["body"]["body"]["applicant"]["id_number"] == result["id_number"]
    assert [m["name"] for m in sent["body"]["materials"]] == ["身份证复印件"]
    assert len(sent["files"][0]["data"]) == result["document_size"]


@pytest.mark.parametrize(
    ("page", "error", "status", "hint"),
    [
        pytest.param(
            {"scheme": "http", "address": "127.0.0.4", "space": "local", "registered": False},
            "origin_not_allowed", 403, "edge-agent apps add NAME --origin {origin}",
            id="unregistered-origin-told-how-to-register",
        ),
        # Without the permission even ``import … from "http://127.0.0.1:…/client/…"`` is
        # blocked, so this app ships the client file itself to be able to say so.
        pytest.param(
            {"scheme": "https", "address": "127.0.0.3", "space": "public", "own_client": True},
            "network_error", 0, "allows this site local network access",
            id="public-page-without-local-network-permission",
        ),
    ],
)  # fmt: skip
def test_a_refused_page_shows_the_clerk_why(
    broker: Mosquitto,
    outlet_id: str,
    tmp_path: Path,
    page: dict[str, Any],
    error: str,
    status: int,
    hint: str,
) -> None:
    origin, result, text = with_outlet(
        broker, outlet_id, tmp_path / "agent", lambda o: _run_page(o, tmp_path, **page)
    )
    assert result["error"] == error
    assert result["status"] == status
    assert hint.format(origin=origin) in result["hint"]  # _run_page saw it on the page too
    assert "案件编号: —" in text  # nothing was filed
