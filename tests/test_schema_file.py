"""The schema file editors read is the one `relay schema` prints, and the shipped config fits it."""

from __future__ import annotations

import json

import jsonschema
import yaml

from relay.config import json_schema

from .conftest import ROOT


def test_shipped_schema_file_is_current() -> None:
    shipped = json.loads((ROOT / "config" / "relay.schema.json").read_text())
    assert shipped == json_schema(), "regenerate: relay schema > config/relay.schema.json"


def test_shipped_config_points_editors_at_the_schema_and_validates() -> None:
    text = (ROOT / "config" / "relay.yaml").read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=./relay.schema.json"
    jsonschema.validate(yaml.safe_load(text), json_schema())
