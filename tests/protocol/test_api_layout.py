"""The server's layout: one blueprint per resource, and an HTTP layer that leaves the device (torch) to the engine."""

from __future__ import annotations

import ast

from protocol_helpers import REPO
from sourcecheck import foreign_imports

from stylelayer.api import create_app

API = REPO / "server" / "stylelayer" / "api"
RESOURCES = {
    "health": ("/v1/health", "/v1/info"),
    "estimate": ("/v1/estimate",),
    "jobs": ("/v1/jobs", "/v1/stylize"),
    "styles": ("/v1/styles",),
}


def test_api_modules_import_no_torch() -> None:
    """Out-of-memory and every other device matter is the engine's: it raises engine exceptions the API maps."""
    files = sorted(API.glob("*.py"))
    assert len(files) > 5
    assert foreign_imports(files, {"flask", "werkzeug", "waitress", "PIL", "ray"}) == []


def test_the_core_imports_nothing_above_it() -> None:
    """core/ is the engine and its maths: HTTP, the CLI and the installers depend on it, never the other way."""
    core = sorted((REPO / "server" / "stylelayer" / "core").glob("*.py"))
    assert len(core) > 8
    upward = [
        f"{path.name}: {'.' * node.level}{node.module}"
        for path in core
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        and node.module
        and (node.level >= 2 or node.module.startswith("stylelayer"))
        and node.module not in {"limits", "stylelayer.limits"}
        and not node.module.startswith("stylelayer.core")
    ]
    assert upward == []


def test_every_route_belongs_to_its_resources_blueprint(fake_engine) -> None:
    app = create_app({}, engine=fake_engine)
    app.extensions["stylelayer"].queue.stop()
    assert set(app.blueprints) == set(RESOURCES)
    routes = [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/v1/")]
    for rule in routes:
        blueprint = rule.endpoint.split(".")[0]
        assert rule.rule.startswith(RESOURCES[blueprint]), (rule.rule, rule.endpoint)
    assert {rule.endpoint.split(".")[0] for rule in routes} == set(RESOURCES)
