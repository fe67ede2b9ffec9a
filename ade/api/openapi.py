"""The OpenAPI 3.1 document, generated from the route table and the attrs models.

Built from the same :class:`ade.api.routing.Operation` list that registers the routes, so every
route is documented and nothing undocumented is served. Websocket routes have no OpenAPI verb;
they appear as ``get`` (the upgrade request) marked ``x-websocket: true``.
"""

from __future__ import annotations

import types
import typing
from datetime import datetime
from enum import Enum
from typing import Any

import attrs

from ade.api.bodies import WORKSPACE_PATTERN, SubmitJob
from ade.api.routing import Operation
from ade.models import ConfigVersion, Document, JobEvent, JobRecord, JobStatus
from ade.outcome import OUTCOMES
from ade.runtime.admission import MAX_DOCUMENTS_PER_JOB

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


def _attrs_schema(cls: type, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in attrs.fields(cls):
        properties[field.name] = _type_schema(hints[field.name])
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
    submit["properties"]["document_ids"]["minItems"] = 1
    submit["properties"]["document_ids"]["maxItems"] = MAX_DOCUMENTS_PER_JOB
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
                    "status": {"type": "string", "enum": ["ok", "degraded"]},
                    "shutting_down": {"type": "boolean"},
                    "runtime": {"type": "object"},
                    "store": {"type": "object"},
                    "cluster": {"type": ["object", "null"]},
                    "sandbox": {"type": "object"},
                },
            },
            "OpenApi": {"type": "object"},
        }
    }


def _content(target: str | None) -> dict[str, Any]:
    if target is None:
        return {}
    if "/" in target:  # a media type
        return {"content": {target: {"schema": {"type": "string", "format": "binary"}}}}
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{target}"}}}}


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
            str(status): {"description": description, **_content(target)}
            for status, (description, target) in sorted(op.responses.items())
        },
    }
    if op.is_websocket:
        doc["x-websocket"] = True
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


def build_openapi(operations: list[Operation]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        verb = "get" if op.is_websocket else op.method.lower()
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
            'Every error is {"error": {"code", "message", "details"}}.',
        },
        "paths": paths,
        "components": _components(),
    }
