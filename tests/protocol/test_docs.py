"""docs/openapi.yaml describes exactly the routes and parameters the server has (no YAML library needed)."""

from __future__ import annotations

import dataclasses
import re

from protocol_helpers import REPO

from stylelayer.api import create_app
from stylelayer.core.params import StyleParams

SPEC = (REPO / "docs" / "openapi.yaml").read_text()


def spec_operations() -> set[tuple[str, str]]:
    operations, path = set(), None
    for line in SPEC.splitlines():
        if match := re.fullmatch(r"  (/v1/\S*):", line):
            path = match.group(1)
        elif re.fullmatch(r"\S.*", line):
            path = None
        elif path and (match := re.fullmatch(r"    (get|post|put|delete|patch):", line)):
            operations.add((match.group(1).upper(), path))
    return operations


def test_openapi_lists_every_route_and_nothing_else(fake_engine) -> None:
    app = create_app({}, engine=fake_engine)
    routes = {
        (method, re.sub(r"<(\w+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/v1/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    app.extensions["stylelayer"].queue.stop()
    assert spec_operations() == routes


def test_openapi_params_schema_matches_style_params() -> None:
    block = SPEC.split("    Params:\n", 1)[1].split("\n    Job:\n", 1)[0]
    documented = set(re.findall(r"^        (\w+):", block, re.MULTILINE))
    assert documented == {f.name for f in dataclasses.fields(StyleParams)}


def test_api_doc_mentions_every_route() -> None:
    text = (REPO / "docs" / "api.md").read_text()
    for method, path in spec_operations():
        assert f"{method} {path}" in text, f"{method} {path} missing from docs/api.md"
