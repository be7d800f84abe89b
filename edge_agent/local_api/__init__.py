"""The clerks' local API: Starlette on 127.0.0.1, per-app tokens, per-app origins.

``create_local_app(runtime, apps=AppRegistry(data_dir))`` builds the app;
``serve_local_api(runtime, port=8765, apps=...)`` runs it with uvicorn in the agent's
loop. Clerk apps are registered with ``edge-agent apps add``. See docs/local-api.md.

Exception tree::

    ApiError            an answer {error, message, hint} with an HTTP status
    AppRegistryError    apps.json unsafe or broken, or a bad app name/origin
"""

from edge_agent.local_api.app import create_local_app
from edge_agent.local_api.apps import AppRegistry, AppRegistryError, ClerkApp, normalise_origin
from edge_agent.local_api.context import LocalApiContext, LocalApiOptions
from edge_agent.local_api.errors import ApiError
from edge_agent.local_api.security import WS_SUBPROTOCOL
from edge_agent.local_api.server import LOCAL_HOST, serve_local_api

__all__ = [
    "LOCAL_HOST",
    "WS_SUBPROTOCOL",
    "ApiError",
    "AppRegistry",
    "AppRegistryError",
    "ClerkApp",
    "LocalApiContext",
    "LocalApiOptions",
    "create_local_app",
    "normalise_origin",
    "serve_local_api",
]
