"""OpenAPI description of the receiver, so clients and fuzzers know the event's shape.

The handler reads the raw body itself (JSON whatever the Content-Type), so
Litestar cannot infer the request body; this operation class states it from
the same field table that validates events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)

from .model import EVENT_FIELDS, MAX_REPORTED_ERRORS
from .strict_json import MAX_DEPTH


def _field_schema(kind: Any, required: bool) -> Schema:
    if kind is str:
        base = Schema(type=OpenAPIType.STRING)
    else:
        low, high = kind
        base = Schema(type=OpenAPIType.INTEGER, minimum=low, maximum=high)
    return base if required else Schema(one_of=[base, Schema(type=OpenAPIType.NULL)])


EVENT_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    properties={name: _field_schema(kind, req) for name, (kind, req) in EVENT_FIELDS.items()},
    required=[name for name, (_, req) in EVENT_FIELDS.items() if req],
    additional_properties=True,
    description="A Pushwoosh webhook integration event; unknown fields are kept.",
)

_ERROR = Schema(type=OpenAPIType.OBJECT, properties={"error": Schema(type=OpenAPIType.STRING)})
_REPORT = Schema(
    type=OpenAPIType.OBJECT,
    properties={
        "error": Schema(type=OpenAPIType.STRING),
        "errors": Schema(
            type=OpenAPIType.OBJECT,
            additional_properties=Schema(type=OpenAPIType.STRING),
            description=f"JSON path -> reason, for the first {MAX_REPORTED_ERRORS} errors",
        ),
        "errors_omitted": Schema(type=OpenAPIType.INTEGER, description="errors not listed"),
    },
)


def _json(schema: Schema, description: str) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=description, content={"application/json": OpenAPIMediaType(schema=schema)}
    )


def events_body() -> RequestBody:
    """One event or an array of them: what the receiver and the dry run take."""
    return RequestBody(
        required=True,
        content={
            "application/json": OpenAPIMediaType(
                schema=Schema(
                    one_of=[
                        EVENT_SCHEMA,
                        Schema(type=OpenAPIType.ARRAY, items=EVENT_SCHEMA, min_items=1),
                    ]
                )
            )
        },
    )


@dataclass
class ReceiveOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = events_body()
        accepted = Schema(
            type=OpenAPIType.OBJECT,
            properties={
                "accepted": Schema(type=OpenAPIType.INTEGER),
                "ids": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.STRING)),
                "duplicates": Schema(type=OpenAPIType.INTEGER),
            },
        )
        self.responses = {
            "200": _json(accepted, "Committed to the queue"),
            "400": _json(_ERROR, f"Not JSON, duplicate keys, or nested deeper than {MAX_DEPTH}"),
            "401": _json(_ERROR, "Missing or wrong token"),
            "403": _json(_ERROR, "Client address not allowed"),
            "408": _json(_ERROR, "Head or body not received in time (server.*_timeout)"),
            "413": _json(_ERROR, "Body too large"),
            "422": _json(_REPORT, "Not a Pushwoosh event; `errors` names the field paths"),
            "503": _json(_ERROR, "Queue unavailable or too many connections; nothing accepted"),
        }
