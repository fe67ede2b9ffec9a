"""ADE's HTTP API: a quart-trio app served by hypercorn's trio worker (``ade serve``).

Every route lives under ``/api/v1/workspaces/{workspace_id}/``; ``/api/v1/health`` and
``/api/v1/openapi.json`` describe the service. Errors are translated at one seam
(:mod:`ade.api.errors`). docs/api.md is the guide.
"""

from ade.api.app import OPENAPI_PATH, api_context, create_app
from ade.api.server import run_service, serve_api

__all__ = ["OPENAPI_PATH", "api_context", "create_app", "run_service", "serve_api"]
