"""FastAPI dependencies as ``Annotated`` aliases: the app state, a DB session, the ingest."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.evaluations.rules import EvaluationRules
from fleet_server.ingest import Ingest
from fleet_server.routing.targets import TargetsConfig
from fleet_server.routing.worker import DeliveryWorker


@dataclass(frozen=True, slots=True, kw_only=True)
class AppState:
    """What the lifespan builds and the routes use; stored as ``app.state.fleet``."""

    engine: Engine
    sessions: sessionmaker[Session]
    ingest: Ingest
    targets: TargetsConfig
    # The server's 好差评 profile, and each outlet's rules (its config's `evaluation`
    # part over that profile; fleet_server.config.evaluation_rules).
    rules: EvaluationRules
    rules_for: Callable[[str], EvaluationRules]
    # None when no upstream targets file is configured: rows then wait as pending.
    delivery: DeliveryWorker | None = None
    # Called after a config scope changed (commit done): wakes the config reconciler,
    # which signs and publishes the outlets' new effective configs.
    config_changed: Callable[[], None] = lambda: None
    # Called after a campaign was created or changed: wakes the campaign engine.
    campaigns_changed: Callable[[], None] = lambda: None
    # The config-signing public keys agents should hold, {key_id: base64 raw key}: the
    # enrollment and renewal answers carry them (docs/config.md, "Keys and rotation").
    config_keys: Mapping[str, str] = field(default_factory=dict)
    # Raises ValueError for an alert rule or parameter that does not exist: the config
    # API checks a document's ``alerts`` with it (alerts.rules.check_override, handed in
    # by the runtime since the alerts layer sits above config).
    check_alert_override: Callable[[str, dict[str, Any]], None]
    # Whether /readyz waits for the broker: an API-only process (--role api) serves
    # operators from the database alone, so a broker outage leaves it ready.
    ready_needs_broker: bool = True


def get_app_state(request: Request) -> AppState:
    """The running app's state (set by the lifespan before any request is served)."""
    state: AppState = request.app.state.fleet
    return state


AppStateDep = Annotated[AppState, Depends(get_app_state)]


def operators_see_a_change(request: Request) -> None:
    """Tell the open UI pages to refetch (their server-sent ``change`` event). The
    health runtime sits above this layer: reached through the app, absent in a bare app."""
    health = getattr(request.app.state, "health", None)
    if health is not None:
        health.live.bump()


def get_session(state: AppStateDep) -> Iterator[Session]:
    """One session per request, closed afterwards."""
    with state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_ingest(state: AppStateDep) -> Ingest:
    """The process's MQTT ingest."""
    return state.ingest


IngestDep = Annotated[Ingest, Depends(get_ingest)]
