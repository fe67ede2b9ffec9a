"""The OpenAPI 3.1 document, generated from the route table and the attrs models.

Built from the same :class:`ade.api.routing.Operation` list that registers the routes, so every
route is documented and nothing undocumented is served. Websocket routes have no OpenAPI verb:
they are listed outside ``paths``, under the top-level ``x-websockets`` (path -> operation, its
messages' schema in ``x-message-schema``), so HTTP tools do not mistake them for plain GETs.

So that a fuzzer meets only documented answers, every operation also declares the statuses the
layers around the handlers give (:func:`_common_responses`): 400 for a bad workspace id, 408,
413 and 415 for a route with a body, 400 and 422 for an ``Idempotency-Key``, and 503 while the
service drains. Body limits come from the fields' :class:`ade.api.bodies.Bounds`, and links
(``submit -> job -> artifact/output/retry/cancel``, ``upload -> document``) let a stateful
fuzzer chain the calls.
"""

from __future__ import annotations

import types
import typing
from datetime import datetime
from enum import Enum
from typing import Any

import attrs

from ade.api.bodies import WORKSPACE_PATTERN, Bounds, SubmitJob, bounds_of
from ade.api.routing import Operation
from ade.models import ConfigVersion, Document, JobEvent, JobRecord, JobStatus
from ade.outcome import OUTCOMES

__all__ = ["build_openapi"]


def _type_schema(tp: Any) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        schema = _type_schema(inner[0]) if len(inner) == 1 else {"anyOf": []}
        if type(None) in args:
            return {"anyOf": [schema, {"type": "null"}]}
        return schema
    if origin is tuple or origin is list:
        return {"type": "array", "items": _type_schema(args[0])}
    if origin is dict or tp is dict:
        return {"type": "object"}
    if isinstance(tp, type) and issubclass(tp, Enum):
        return {"$ref": f"#/components/schemas/{tp.__name__}"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if tp is datetime:
        return {"type": "string", "format": "date-time"}
    return {}


def _bounded(schema: dict[str, Any], bounds: Bounds | None) -> dict[str, Any]:
    """``schema`` with the limits the API enforces on the field (ade.api.bodies)."""
    if bounds is None:
        return schema
    strings = schema["items"] if schema.get("type") == "array" else schema
    if bounds.min_length is not None:
        strings["minLength"] = bounds.min_length
    if bounds.max_length is not None:
        strings["maxLength"] = bounds.max_length
    if schema.get("type") == "array":
        if bounds.min_items is not None:
            schema["minItems"] = bounds.min_items
        if bounds.max_items is not None:
            schema["maxItems"] = bounds.max_items
        if bounds.unique:
            schema["uniqueItems"] = True
    return schema


def _attrs_schema(cls: type, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in attrs.fields(cls):
        properties[field.name] = _bounded(_type_schema(hints[field.name]), bounds_of(field))
        if field.default is attrs.NOTHING:
            required.append(field.name)
    properties.update(extra or {})
    return {"type": "object", "properties": properties, "required": required}


def _links(*names: str) -> dict[str, Any]:
    return {
        "links": {
            "type": "object",
            "properties": {n: {"type": "string"} for n in names},
        }
    }


def _list_of(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}}
        },
        "required": ["items"],
    }


def _components() -> dict[str, Any]:
    error = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {},
                },
                "required": ["code", "message", "details"],
            }
        },
        "required": ["error"],
    }
    queue_full = {
        "allOf": [
            {"$ref": "#/components/schemas/Error"},
            {
                "type": "object",
                "properties": {
                    "queued": {"type": "integer"},
                    "capacity": {"type": "integer"},
                    "retry_after_seconds": {"type": "integer"},
                },
                "required": ["queued", "capacity", "retry_after_seconds"],
            },
        ]
    }
    submit = _attrs_schema(SubmitJob)
    submit["additionalProperties"] = False
    return {
        "schemas": {
            "Error": error,
            "QueueFull": queue_full,
            "JobStatus": {"type": "string", "enum": [s.value for s in JobStatus]},
            "SubmitJob": submit,
            "Job": _attrs_schema(
                JobRecord,
                {
                    **_links("self", "events", "artifact", "output", "retry", "cancel"),
                    # ade.outcome: how clean a finished run is, and its issues in one line.
                    "outcome": {"anyOf": [{"enum": list(OUTCOMES)}, {"type": "null"}]},
                    "issues": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                },
            ),
            "JobPage": {
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                    "next_cursor": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                },
                "required": ["items", "next_cursor"],
            },
            "Document": _attrs_schema(Document, _links("self", "content")),
            "DocumentList": _list_of("Document"),
            "Config": _attrs_schema(ConfigVersion, _links("self")),
            "ConfigList": _list_of("Config"),
            "Event": _attrs_schema(JobEvent),
            "Health": {
                "type": "object",
                "properties": {
                    "status": {"type": "string", "enum": ["ok", "degraded", "draining"]},
                    "shutting_down": {"type": "boolean"},
                    "runtime": {"type": "object"},
                    "store": {"type": "object"},
                    "cluster": {"type": ["object", "null"]},
                    "sandbox": {"type": "object"},
                    "disk": {"type": ["object", "null"]},
                },
            },
            "OpenApi": {"type": "object"},
        }
    }


def _content(target: str | None) -> dict[str, Any]:
    if target is None:
        return {}
    if target == "application/json":  # a JSON file served as is (artifact.json)
        return {"content": {target: {"schema": {"type": "object"}}}}
    if "/" in target:  # a media type
        return {"content": {target: {"schema": {"type": "string", "format": "binary"}}}}
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{target}"}}}}


# Statuses the layers around every handler can give (see the module docstring).
_WORKSPACE = {400: ("invalid workspace id (or another malformed part of the request)", "Error")}
_BODY = {
    408: ("the body did not arrive within ADE_BODY_TIMEOUT_SECONDS", "Error"),
    413: ("the body is larger than its limit; details {max_bytes}", "Error"),
    415: ("wrong Content-Type", "Error"),
}
_IDEMPOTENCY = {
    400: ("malformed Idempotency-Key", "Error"),
    422: ("Idempotency-Key reused for a different request", "Error"),
}
_DRAINING = {
    503: ("the service is shutting down (or its store is unavailable); Retry-After", "Error")
}


def _common_responses(op: Operation) -> dict[int, tuple[str, str | None]]:
    common: dict[int, tuple[str, str | None]] = dict(_DRAINING)
    if "workspace_id" in op.path_params:
        common.update(_WORKSPACE)
    if op.request_body is not None:
        common.update(_BODY)
    if any(h.name == "Idempotency-Key" for h in op.headers):
        common.update(_IDEMPOTENCY)
    return {**common, **op.responses}  # the operation's own descriptions win


# operationId -> {status: {link name: (target operationId, {parameter: expression})}}
_FROM_JOB = {
    "GetJob": ("get_job", {"job_id": "$response.body#/id"}),
    "GetArtifact": ("get_artifact", {"job_id": "$response.body#/id"}),
    "GetOutput": ("get_output", {"job_id": "$response.body#/id"}),
    "RetryJob": ("retry_job", {"job_id": "$response.body#/id"}),
    "CancelJob": ("cancel_job", {"job_id": "$response.body#/id"}),
}
_FROM_DOCUMENT = {
    "GetDocument": ("get_document", {"document_id": "$response.body#/id"}),
    "GetDocumentContent": ("get_document_content", {"document_id": "$response.body#/id"}),
}
_LINKS: dict[str, dict[int, dict[str, tuple[str, dict[str, str]]]]] = {
    "submit_job": {202: _FROM_JOB},
    "get_job": {200: _FROM_JOB},
    "retry_job": {202: _FROM_JOB},
    "cancel_job": {202: _FROM_JOB},
    "upload_document": {201: _FROM_DOCUMENT},
    "get_document": {200: _FROM_DOCUMENT},
    "publish_config": {
        200: {"GetConfig": ("get_config", {"config_id": "$response.body#/id"})},
        201: {"GetConfig": ("get_config", {"config_id": "$response.body#/id"})},
    },
}


def _response_links(op: Operation, status: int) -> dict[str, Any]:
    links = _LINKS.get(op.name, {}).get(status)
    if not links:
        return {}
    return {
        "links": {
            name: {
                "operationId": target,
                "parameters": {"workspace_id": "$request.path.workspace_id", **parameters},
            }
            for name, (target, parameters) in links.items()
        }
    }


def _operation(op: Operation) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = []
    for name in op.path_params:
        schema: dict[str, Any] = {"type": "string"}
        if name == "workspace_id":
            schema["pattern"] = WORKSPACE_PATTERN.pattern
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    for param in op.query:
        parameters.append(
            {
                "name": param.name,
                "in": "query",
                "required": param.required,
                "description": param.description,
                "schema": param.schema,
            }
        )
    for param in op.headers:
        parameters.append(
            {
                "name": param.name,
                "in": "header",
                "required": param.required,
                "description": param.description,
                "schema": param.schema,
            }
        )
    doc: dict[str, Any] = {
        "operationId": op.name,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": parameters,
        "responses": {
            str(status): {
                "description": description,
                **_content(target),
                **_response_links(op, status),
            }
            for status, (description, target) in sorted(_common_responses(op).items())
        },
    }
    if op.request_body is not None:
        kind, name = op.request_body
        if kind == "json":
            doc["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                },
            }
        else:
            doc["requestBody"] = {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {name: {"type": "string", "format": "binary"}},
                            "required": [name],
                        }
                    }
                },
            }
    return doc


def _websocket(op: Operation) -> dict[str, Any]:
    doc = _operation(op)
    doc["x-message-schema"] = {"$ref": "#/components/schemas/Event"}
    return doc


def build_openapi(operations: list[Operation]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    websockets: dict[str, dict[str, Any]] = {}
    for op in operations:
        if op.is_websocket:
            websockets[op.path] = _websocket(op)
            continue
        verb = op.method.lower()
        item = paths.setdefault(op.path, {})
        if verb in item:
            raise ValueError(f"two operations for {verb.upper()} {op.path}")
        item[verb] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ADE API",
            "version": "1",
            "description": "Turns messy spreadsheets into normalized workbooks "
            "with an audit trail. "
            'Every error is {"error": {"code", "message", "details"}}. '
            "Websocket event streams are listed under x-websockets, not paths.",
        },
        "paths": paths,
        "x-websockets": websockets,
        "components": _components(),
    }
