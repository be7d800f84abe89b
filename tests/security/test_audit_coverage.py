"""Every route that changes something writes an audit row: the app's mutating routes are
enumerated from ``app.routes`` (new ones included), each is called once successfully and
must add a row with its action. A new route fails here until it is audited and listed in
``CASES`` (or exempted in ``EXEMPT`` with the reason)."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.routing import APIRoute

from fleet_server.models import Outlet
from fleet_server.playbooks.tables import OutletAccess
from fleet_server.security import Role
from fleet_server.security.passwords import set_password
from govedge_testbed.upstream import catalogue_rows
from tests.security.api_harness import Api, running_api, seed_actionable_rows
from tests.server.config.kit import signing_key
from tests.server.playbooks.kit import DATA as PLAYBOOKS
from tests.server.releases.kit import wheel_bytes, wheel_name

_READS = {"GET", "HEAD", "OPTIONS"}

# Routes that change nothing an operator would audit, with the reason. Keep it short.
EXEMPT: dict[str, str] = {
    "POST /api/v1/config/validate": "a dry run: validates and computes, stores nothing",
}


@dataclass
class World:
    """What one case leaves for the next (ids, certificates, a session cookie)."""

    api: Api
    ids: dict[str, int] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


def _mutating_routes(app: Any) -> set[str]:
    try:
        from fastapi.routing import iter_route_contexts  # type: ignore[attr-defined]
    except ImportError:  # older FastAPI mounts routes eagerly
        pairs = [(r.path, r.methods) for r in app.routes if isinstance(r, APIRoute)]
    else:
        pairs = [
            (ctx.path, ctx.methods)
            for ctx in iter_route_contexts(app.routes)
            if isinstance(ctx.original_route, APIRoute)
        ]
    return {f"{method} {path}" for path, methods in pairs for method in methods - _READS}


def _clear_host_key(w: World) -> httpx.Response:
    """An outlet PC whose host key a run pinned, then cleared by an admin."""
    with w.api.session() as session, session.begin():
        row = session.get(OutletAccess, "o-1")
        assert row is not None, "the access case runs first"
        row.host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey"
    return w.api.client.delete("/api/v1/outlets/o-1/host-key", headers=_admin(w))


def _seed(world: World) -> None:
    dead, ticket, alert = seed_actionable_rows(world.api)
    world.ids.update(dead=dead, ticket=ticket, alert=alert)


def _csr(cn: str) -> tuple[ec.EllipticCurvePrivateKey, str, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    return key, pem, csr.public_bytes(serialization.Encoding.DER)


def _admin(world: World) -> dict[str, str]:
    return world.api.as_role(Role.ADMIN)


def _enrollments(w: World) -> httpx.Response:
    r = w.api.client.post(
        "/api/v1/enrollments", json={"outlet_id": "o-cover", "ttl_s": 600}, headers=_admin(w)
    )
    w.values["enroll_token"] = r.json().get("token")
    return r


def _enroll(w: World) -> httpx.Response:
    key, pem, _ = _csr("o-cover")
    body = {"token": w.values["enroll_token"], "csr_pem": pem}
    r = w.api.client.post("/api/v1/enroll", json=body)
    w.values["key"], w.values["cert"] = key, r.json().get("certificate_pem")
    return r


def _renew(w: World) -> httpx.Response:
    _, pem, der = _csr("o-cover")
    proof = base64.b64encode(w.values["key"].sign(der, ec.ECDSA(hashes.SHA256()))).decode()
    body = {"certificate_pem": w.values["cert"], "csr_pem": pem, "signature_b64": proof}
    return w.api.client.post("/api/v1/enroll/renew", json=body)


def _put_rule(w: World) -> httpx.Response:
    body = {"scope": "global", "rule": "outlet_offline", "params": {"after_s": 120}}
    r = w.api.client.put("/api/v1/alert-rules", json=body, headers=_admin(w))
    w.ids["rule"] = r.json().get("id", 0)
    return r


def _login(w: World) -> httpx.Response:
    with w.api.session() as session:
        set_password(session, name="u-admin", password="a long enough password", actor="test")
    form = {"username": "u-admin", "password": "a long enough password"}
    r = w.api.client.post("/ui/login", data=form, follow_redirects=False)
    w.values["cookie"] = r.cookies.get("govedge_session")
    return r


def _logout(w: World) -> httpx.Response:
    cookie = {"Cookie": f"govedge_session={w.values['cookie']}"}
    return w.api.client.post("/ui/logout", headers=cookie, follow_redirects=False)


def _post(path: str, **kwargs: Any) -> Callable[[World], httpx.Response]:
    def call(w: World) -> httpx.Response:
        return w.api.client.post(path.format(**w.ids), headers=_admin(w), **kwargs)

    return call


def _put(path: str, body: Any) -> Callable[[World], httpx.Response]:
    def call(w: World) -> httpx.Response:
        return w.api.client.put(path, json=body, headers=_admin(w))

    return call


def _add_release(w: World) -> httpx.Response:
    return w.api.client.post(
        "/api/v1/releases",
        params={"version": "9.0.0", "file_name": wheel_name("9.0.0")},
        content=wheel_bytes("9.0.0"),
        headers=_admin(w),
    )


def _add_campaign(w: World) -> httpx.Response:
    with w.api.session() as session:
        session.add(Outlet(id="o-camp", display_name=None, created_at=datetime.now(UTC)))
        session.commit()
    answer = w.api.client.post(
        "/api/v1/campaigns",
        json={"release": "9.0.0", "target": {"outlets": ["o-camp"]}},
        headers=_admin(w),
    )
    w.ids["campaign"] = answer.json().get("id", 0)
    return answer


def _start_run(w: World) -> httpx.Response:
    # a long run on an open outlet (asked for), reached locally, cancelled by the next case
    body = {"playbook": "slow.yml", "target": {"outlets": ["o-1"]}, "during_opening_hours": True}
    r = w.api.client.post("/api/v1/playbook-runs", json=body, headers=_admin(w))
    w.ids["run"] = r.json().get("id", 0)
    return r


_ACCESS = {
    "host_vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
}
_PROFILE = {"outlet_id": "o-1", "name": "城关镇便民服务中心", "region_code": "410402"}
_REGISTRY_ROW = {"id": "o-reg", "name": "自助终端", "kind": "kiosk", "region": "410402"}
_FOLLOW_UP = {"action": "回访", "note": "called back", "by": "clerk-1"}

# route → (how to change something through it, the audit action it must write); in order.
CASES: dict[str, tuple[Callable[[World], httpx.Response], str]] = {
    "POST /api/v1/catalogue/import": (
        _post("/api/v1/catalogue/import?format=json", content=json.dumps(catalogue_rows())),
        "catalogue.import",
    ),
    "POST /api/v1/dead-letters/{dead_letter_id}/replay": (
        _post("/api/v1/dead-letters/{dead}/replay"),
        "dead_letter.replay",
    ),
    "POST /api/v1/rectifications/{rectification_id}/follow-up": (
        _post("/api/v1/rectifications/{ticket}/follow-up", json=_FOLLOW_UP),
        "rectification.follow_up",
    ),
    "POST /api/v1/enrollments": (_enrollments, "enrollment.token_create"),
    "POST /api/v1/enroll": (_enroll, "certificate.issue"),
    "POST /api/v1/enroll/renew": (_renew, "certificate.renew"),
    "POST /api/v1/outlets/{outlet_id}/revoke": (
        _post("/api/v1/outlets/o-cover/revoke"),
        "certificate.revoke",
    ),
    "POST /api/v1/users": (
        _post("/api/v1/users", json={"name": "u-new", "role": "viewer"}),
        "user.create",
    ),
    "POST /api/v1/users/{name}/tokens": (_post("/api/v1/users/u-new/tokens"), "user.token"),
    "POST /api/v1/users/{name}/disable": (_post("/api/v1/users/u-new/disable"), "user.disable"),
    "POST /api/v1/users/{name}/unlock": (_post("/api/v1/users/u-new/unlock"), "user.enable"),
    "POST /api/v1/users/{name}/password": (
        _post("/api/v1/users/u-new/password", json={"generate": True}),
        "user.password",
    ),
    "POST /api/v1/users/{name}/sessions/revoke": (
        _post("/api/v1/users/u-new/sessions/revoke"),
        "user.sessions_revoke",
    ),
    "POST /api/v1/outlets/import": (
        _post("/api/v1/outlets/import", json=[_REGISTRY_ROW]),
        "outlet_registry.import",
    ),
    "PUT /api/v1/outlet-profiles": (
        _put("/api/v1/outlet-profiles", [_PROFILE]),
        "outlet_profile.put",
    ),
    "PUT /api/v1/regions": (
        _put("/api/v1/regions", [{"code": "410402", "name": "卫东区"}]),
        "region.put",
    ),
    "POST /api/v1/regions/import": (
        _post("/api/v1/regions/import", json=[{"code": "410403", "name": "湛河区"}]),
        "regions.import",
    ),
    "POST /api/v1/alerts/{alert_id}/ack": (_post("/api/v1/alerts/{alert}/ack"), "alert.ack"),
    "POST /api/v1/alerts/{alert_id}/silence": (
        _post("/api/v1/alerts/{alert}/silence?minutes=5&reason=maintenance"),
        "alert.silence",
    ),
    "POST /api/v1/alerts/evaluate": (_post("/api/v1/alerts/evaluate"), "alert.evaluate"),
    "PUT /api/v1/alert-rules": (_put_rule, "alert_rule.put"),
    "DELETE /api/v1/alert-rules/{override_id}": (
        lambda w: w.api.client.delete(f"/api/v1/alert-rules/{w.ids['rule']}", headers=_admin(w)),
        "alert_rule.delete",
    ),
    "PUT /api/v1/config/{scope}": (
        _put("/api/v1/config/region:41", {"log_level": "INFO"}),
        "config.put",
    ),
    "POST /api/v1/config/{scope}/rollback": (
        lambda w: w.api.client.post(
            "/api/v1/config/region:41/rollback",
            json={"version": 1},
            headers=_admin(w) | {"If-Match": "1"},
        ),
        "config.rollback",
    ),
    "POST /api/v1/releases": (_add_release, "release.add"),
    "POST /api/v1/campaigns": (_add_campaign, "campaign.create"),
    "POST /api/v1/campaigns/{campaign_id}/pause": (
        _post("/api/v1/campaigns/{campaign}/pause", json={"reason": "hold on"}),
        "campaign.pause",
    ),
    "POST /api/v1/campaigns/{campaign_id}/resume": (
        _post("/api/v1/campaigns/{campaign}/resume"),
        "campaign.resume",
    ),
    "POST /api/v1/campaigns/{campaign_id}/abort": (
        _post("/api/v1/campaigns/{campaign}/abort"),
        "campaign.abort",
    ),
    "POST /api/v1/releases/{version}/bad": (
        _post("/api/v1/releases/9.0.0/bad", json={"reason": "crashes at start"}),
        "release.bad",
    ),
    "PUT /api/v1/outlets/{outlet_id}/access": (
        _put("/api/v1/outlets/o-1/access", _ACCESS),
        "playbook.access",
    ),
    "POST /api/v1/playbook-runs": (_start_run, "playbook.run"),
    "DELETE /api/v1/outlets/{outlet_id}/host-key": (_clear_host_key, "playbook.host_key_clear"),
    "PUT /api/v1/users/{name}/scope": (
        _put("/api/v1/users/u-new/scope", {"regions": ["4104"]}),
        "user.scope",
    ),
    "POST /api/v1/playbook-runs/{run_id}/cancel": (
        _post("/api/v1/playbook-runs/{run}/cancel"),
        "playbook.cancel",
    ),
    "POST /ui/login": (_login, "session.open"),
    "POST /ui/logout": (_logout, "session.close"),
}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    key = signing_key(tmp_path)  # releases are signed with it
    with running_api(
        tmp_path,
        mqtt_url="mqtt://127.0.0.1:1",
        config_signing_key=key,
        playbooks_dir=PLAYBOOKS,
        playbook_runs_dir=tmp_path / "runs",
        playbook_allow_local=True,
    ) as harness:
        yield harness


def _actions(api: Api) -> list[str]:
    response = api.client.get("/api/v1/audit?limit=1000", headers=api.as_role(Role.ADMIN))
    assert response.status_code == 200, response.text
    return [row["action"] for row in response.json()]


def test_every_mutating_route_is_listed(api: Api) -> None:
    routes = _mutating_routes(api.client.app)
    assert routes - CASES.keys() - EXEMPT.keys() == set(), "audit the new route, list it here"
    assert CASES.keys() - routes == set(), "a listed route no longer exists"


def test_every_mutating_route_writes_an_audit_row(api: Api) -> None:
    world = World(api)
    _seed(world)
    for route, (call, action) in CASES.items():
        before = _actions(api)
        response = call(world)
        assert response.status_code < 400, (route, response.status_code, response.text)
        added = _actions(api)[: len(_actions(api)) - len(before)]
        assert action in added, (route, added)
