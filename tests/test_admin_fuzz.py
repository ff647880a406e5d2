"""Hostile requests to the admin API, generated from its own OpenAPI description.

schemathesis sends valid and invalid parameters and bodies to every /api/v1
operation with the admin token: none may answer 5xx.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from relay.app import create_app
from relay.config import parse_config

from .test_admin_api import BEARER, config_for

_tmp = Path(tempfile.mkdtemp())
_app = create_app(
    parse_config(config_for(_tmp / "q.db", "http://127.0.0.1:9"), str(_tmp / "relay.yaml"), {}),
    run_workers=False,
)
schema = schemathesis.openapi.from_asgi("/schema/openapi.json", _app)


@schema.include(path_regex="^/api/v1/").parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_admin_request_makes_a_5xx(case: Any) -> None:
    response = case.call(headers=BEARER)
    assert response.status_code < 500, response.text
    if response.status_code != 204:  # OPTIONS: no body at all
        [kind] = response.headers.get("content-type", ["(none)"])
        assert kind.startswith("application/json"), (case.path, response.status_code, kind)
