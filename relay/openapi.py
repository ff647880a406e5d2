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

from .model import EVENT_FIELDS


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


def _json(schema: Schema, description: str) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=description, content={"application/json": OpenAPIMediaType(schema=schema)}
    )


@dataclass
class ReceiveOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = RequestBody(
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
            "400": _json(_ERROR, "Not JSON"),
            "401": _json(_ERROR, "Missing or wrong token"),
            "403": _json(_ERROR, "Client address not allowed"),
            "413": _json(_ERROR, "Body too large"),
            "422": _json(_ERROR, "Not a Pushwoosh event; `errors` names each field path"),
            "503": _json(_ERROR, "Queue unavailable; nothing was accepted"),
        }
