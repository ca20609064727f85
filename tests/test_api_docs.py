"""docs/openapi.json and docs/asyncapi.json are what `python -m gate.cli.api_docs` makes
from the code now; every route the API serves is documented; both documents hold together."""
from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from flask import Flask

from gate.cli import api_docs
from gate.web import api
from sync.downstream import Downstream
from sync.topics import Topics
from tests.conftest import ROOT

DOCS = ROOT / "docs"


def committed(name: str) -> dict[str, Any]:
    return json.loads((DOCS / name).read_text(encoding="utf-8"))


def api_app() -> Flask:
    app = Flask("probe")
    app.register_blueprint(api.make_blueprint(None, None))
    return app


def undocumented(app: Flask, doc: dict[str, Any]) -> list[tuple[str, str]]:
    documented = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    return [r for r in api.served_routes(app) if r not in documented]


def test_the_committed_documents_are_what_the_generator_makes() -> None:
    for name, text in api_docs.documents().items():
        path = DOCS / name
        assert path.exists(), f"docs/{name} is missing: run python -m gate.cli.api_docs"
        assert path.read_text(encoding="utf-8") == text, f"docs/{name} is out of date: run python -m gate.cli.api_docs"
    assert api_docs.main(["--check"]) == 0


def test_every_route_the_api_serves_is_in_openapi_and_nothing_else() -> None:
    doc = committed("openapi.json")
    app = api_app()
    served = api.served_routes(app)
    assert ("POST", "/api/v1/lanes/{lane}/open") in served and ("GET", "/api/v1/health") in served
    assert undocumented(app, doc) == []
    documented = sorted((m.upper(), path) for path, ops in doc["paths"].items() for m in ops)
    assert documented == served  # nor a documented route that is not served


def test_a_route_added_to_the_blueprint_alone_is_caught() -> None:
    app = Flask("probe")
    bp = api.make_blueprint(None, None)
    bp.add_url_rule("/doors/<lane>/mode", "sneaky", lambda lane: "", methods=["PUT"])
    app.register_blueprint(bp)
    assert undocumented(app, committed("openapi.json")) == [("PUT", "/api/v1/doors/{lane}/mode")]


def test_openapi_is_a_valid_openapi_3_1_document() -> None:
    from openapi_spec_validator import validate

    path = DOCS / "openapi.json"
    doc = committed("openapi.json")
    assert doc["openapi"].startswith("3.1.")
    validate(doc, base_uri=path.resolve().as_uri())  # resolves the event schema's $ref too
    ops = {(m, p): op for p, item in doc["paths"].items() for m, op in item.items()}
    assert ops[("get", "/api/v1/health")]["security"] == []
    assert ops[("post", "/api/v1/lanes/{lane}/open")]["x-gate-right"] == "open"
    assert {"401", "403", "404", "400", "429"} <= set(ops[("post", "/api/v1/lanes/{lane}/open")]["responses"])


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_asyncapi_has_every_topic_with_its_schema_referenced() -> None:
    doc = committed("asyncapi.json")
    assert doc["asyncapi"] == "3.0.0"
    topics = Topics.for_gate("{site}", "{gate}")
    addresses = {c["address"] for c in doc["channels"].values()}
    for name in api_docs.topic_names():
        assert getattr(topics, name) in addresses, f"topic {name} of sync/topics.py is not in docs/asyncapi.json"
    assert len(addresses) == len(api_docs.topic_names())
    for ref in _refs(doc):
        if ref.startswith("#/"):
            _resolve(doc, ref)  # a KeyError names a dangling reference
        else:
            assert ref.startswith("../sync/schemas/") and (DOCS / ref).resolve().is_file(), ref
    for op in doc["operations"].values():
        assert op["action"] in ("send", "receive")
        channel = _resolve(doc, op["channel"]["$ref"])
        for m in op["messages"]:
            assert m["$ref"].startswith(op["channel"]["$ref"] + "/messages/")
            _resolve(doc, _resolve(doc, m["$ref"])["$ref"])
        assert channel["address"].count("{") == len(channel["parameters"])
    # No keyword draft-07 lacks (the payloads say schemaFormat draft-07).
    for path in (ROOT / "sync" / "schemas").glob("*.json"):
        text = path.read_text(encoding="utf-8")
        for keyword in ("prefixItems", "$defs", "unevaluated", "dependentRequired", "dependentSchemas", "$dynamic"):
            assert keyword not in text, (path.name, keyword)


def test_what_the_gate_receives_is_decoded_as_the_documented_kind() -> None:
    topics = Topics.for_gate("{site}", "{gate}")
    hooks = SimpleNamespace(site=None, now=None)
    decoded = Downstream(None, None, topics, None, hooks)._kinds  # type: ignore[arg-type]
    doc = committed("asyncapi.json")
    received = {}
    for op in doc["operations"].values():
        channel = _resolve(doc, op["channel"]["$ref"])
        kind = _resolve(doc, _resolve(doc, op["messages"][0]["$ref"])["$ref"])["name"]
        if op["action"] == "receive":
            received[channel["address"]] = kind
    # Receipts go to the outbox's publisher instead (sync/service.py), decoded as "receipt".
    assert received.pop(topics.receipt) == "receipt"
    assert received == decoded
