"""docs/openapi.json and docs/asyncapi.json, made from the code:

- the HTTP API (OpenAPI 3.1) from gate/web/api.py's route table (``ROUTES``), the
  blueprint being built from the same table;
- the MQTT surface (AsyncAPI 3.0) from every topic of sync/topics.py (``Topics``, the
  gate's view: site-wide topics and its own), each payload a ``$ref`` to its JSON Schema
  in sync/schemas/ (not copied).

    python -m gate.cli.api_docs            # write both into docs/
    python -m gate.cli.api_docs --check    # exit 1 if the committed files are not what the code makes

tests/test_api_docs.py fails when they differ. It lives with the CLI because it reads
sync (only the entry points bring sync into gate: .importlinter).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gate.web import api
from sync import codec
from sync.topics import DEFAULT_PREFIX, Topics

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SCHEMAS = "../sync/schemas"  # from docs/ to the schemas, as the documents reference them

# ---------------------------------------------------------------- OpenAPI

STATUS_TEXT = {200: "OK", 202: "Accepted: the lane has been told", 400: "Bad request: query or body",
               401: "No token, or not a token known here", 403: "The token lacks the right this needs",
               404: "No such lane", 409: "The lane has no door relay, or its door mode is locked", 429: "Too many wrong tokens from this address",
               503: "Not ok: a lane or service is down"}


def _error_response(status: int, *, challenge: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"description": STATUS_TEXT[status],
                           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if challenge:
        out["headers"] = {"WWW-Authenticate": {"description": 'Bearer realm="gate" (with error="invalid_token" or '
                                               'error="insufficient_scope")', "schema": {"type": "string"}}}
    if status == 429:
        out["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return out


def _operation(route: api.Route) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.endpoint, "summary": route.summary, "description": route.description}
    if route.params:
        op["parameters"] = [{"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                             "description": p.description, "schema": p.schema} for p in route.params]
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": route.body}}}
    responses: dict[str, Any] = {
        str(route.ok_status): {"description": STATUS_TEXT[route.ok_status],
                               "content": {"application/json": {"schema": route.ok_schema}}}}
    if route.right is None:
        op["security"] = []
    else:
        op["x-gate-right"] = route.right
        responses["401"] = _error_response(401, challenge=True)
        if route.right != "any":
            responses["403"] = _error_response(403, challenge=True)
        responses["429"] = _error_response(429)
    for status in route.errors:
        if status == 503:  # the health check's "not ok" is its own body
            responses["503"] = {"description": STATUS_TEXT[503],
                                "content": {"application/json": {"schema": route.ok_schema}}}
        else:
            responses[str(status)] = _error_response(status)
    op["responses"] = dict(sorted(responses.items()))
    return op


def openapi() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in api.ROUTES:
        path = api.PREFIX + route.rule
        for p in route.params:
            if p.where == "path":
                path = path.replace(f"<{p.name}>", "{" + p.name + "}")
        paths.setdefault(path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gate: the local HTTP API of one gate",
            "version": "1.0.0",
            "summary": "See the lanes, read the events and open a door from an intercom, Home Assistant or Node-RED.",
            "description": (
                "Served by the gate's guard page server when `[guard] api = true`, on `guard.listen`, answering only "
                "to the Host names the page answers to. Every call but /api/v1/health sends `Authorization: Bearer "
                "<token>`; a token is made with `gate tokens add NAME --can open,read` (printed once, kept hashed) and "
                "refused at once after `gate tokens remove NAME`. Rights: any token lists the lanes, `read` reads "
                "events, `open` opens a door (recorded as an override event with who = api:NAME). No cookies: the "
                "guard page's session authorizes nothing here. Wrong tokens are throttled per client address. "
                "Generated by `python -m gate.cli.api_docs` from gate/web/api.py."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "http://127.0.0.1:8080", "description": "guard.listen (default)"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "a token from `gate tokens add` (gt1.<id>.<secret>)"}},
            "schemas": {"Error": api.ERROR, "Event": {"$ref": f"{SCHEMAS}/event.schema.json"}},
        },
    }


# ---------------------------------------------------------------- AsyncAPI

# Per topic of sync/topics.py: who sends it, the payload kind (sync/schemas/KIND.schema.json),
# retained or not. Every topic must be here (the generator fails otherwise); the kinds of what
# central sends are the ones sync/downstream.py decodes them as.
TOPICS: dict[str, tuple[str, str, bool]] = {
    "events": ("send", "event", False),
    "status": ("send", "status", True),
    "report": ("send", "report", False),
    "snapshot_request": ("send", "snapshot_request", False),
    "presence_request": ("send", "presence_request", False),
    "passes": ("receive", "passes", True),
    "policy": ("receive", "policy", True),
    "keys": ("receive", "keylist", True),
    "gatekeys": ("receive", "gatekeys", True),
    "presence": ("receive", "presence", False),
    "presence_head": ("receive", "presence", True),
    "cmd": ("receive", "cmd", False),
    "snapshot": ("receive", "snapshot_chunk", False),
    "presence_reply": ("receive", "presence", False),
    "receipt": ("receive", "receipt", True),
    "available": ("send", "available", True),
}

# Payloads that are not JSON documents of sync/schemas/: Home Assistant's plain words.
PLAIN: dict[str, dict[str, Any]] = {
    "available": {
        "name": "available", "title": "available",
        "summary": "online / offline: the Home Assistant connection's state, `offline` by its last will",
        "contentType": "text/plain",
        "payload": {"type": "string", "enum": ["online", "offline"]},
    },
}


class DocsError(Exception):
    pass


def topic_names() -> list[str]:
    """Every topic property of sync.topics.Topics (the gate's: its own and the site's)."""
    return sorted(n for c in Topics.__mro__ for n, v in vars(c).items() if isinstance(v, property))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(r.title() for r in rest)


def asyncapi() -> dict[str, Any]:
    names = topic_names()
    missing, stale = sorted(set(names) - set(TOPICS)), sorted(set(TOPICS) - set(names))
    if missing or stale:
        raise DocsError(f"gate/cli/api_docs.py TOPICS: add {missing or '-'}, drop {stale or '-'} (sync/topics.py)")
    topics = Topics.for_gate("{site}", "{gate}", DEFAULT_PREFIX)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for name in sorted(TOPICS, key=lambda n: (TOPICS[n][0] != "send", n)):
        action, kind, retained = TOPICS[name]
        address = getattr(topics, name)
        if kind in PLAIN:
            messages[kind] = PLAIN[kind]
        elif kind not in codec.KINDS or not (ROOT / "sync" / "schemas" / f"{kind}.schema.json").exists():
            raise DocsError(f"topic {name}: no payload kind {kind!r} in sync/codec.py KINDS / sync/schemas/")
        if kind not in messages:
            schema = codec.schema(kind)
            messages[kind] = {
                "name": kind,
                "title": kind,
                "summary": schema.get("title", kind),
                "contentType": "application/json",
                "payload": {"schemaFormat": "application/schema+json;version=draft-07",
                            "schema": {"$ref": f"{SCHEMAS}/{kind}.schema.json"}},
            }
            if kind in codec.SIGNED:
                messages[kind]["description"] = ("Signed by central with Ed25519 over the canonical JSON without "
                                                 "`sig` (`kid`, `sig`); the gate trusts the signature, never the topic.")
        params = {"site": {"description": "[gate] site"}}
        if "{gate}" in address:
            params["gate"] = {"description": "[gate] id (also the gate's MQTT user name)"}
        channel_id = _camel(name)
        channels[channel_id] = {
            "address": address,
            "title": f"{name}: {('gate → Home Assistant' if kind in PLAIN else 'gate → central') if action == 'send' else 'central → ' + ('this gate' if '{gate}' in address else 'every gate')}",
            "messages": {kind: {"$ref": f"#/components/messages/{kind}"}},
            "parameters": params,
        }
        operations[("send" if action == "send" else "receive") + channel_id[0].upper() + channel_id[1:]] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{kind}"}],
            "bindings": {"mqtt": {"qos": 1, "retain": retained, "bindingVersion": "0.2.0"}},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "gate: MQTT between a gate and central",
            "version": "1.0.0",
            "description": (
                "The MQTT v5 surface of one gate, as the gate sees it (`send`: the gate publishes, `receive`: it "
                "subscribes); central is the mirror. The prefix is `[sync] prefix` (default "
                f"`{DEFAULT_PREFIX}`). Payloads are one UTF-8 JSON object each, checked against the JSON Schemas in "
                "sync/schemas/ (written as draft 2020-12 with only the keywords draft-07 also has, hence the schemaFormat). docs/mqtt.md tells the rest (receipts, snapshots, the ACL). "
                "Generated by `python -m gate.cli.api_docs` from sync/topics.py and sync/schemas/."
            ),
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "broker": {"host": "{broker}", "protocol": "mqtt", "protocolVersion": "5",
                       "description": "[sync] broker (mqtt:// or mqtts://)",
                       "variables": {"broker": {"default": "127.0.0.1:1883", "description": "host:port"}}},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": dict(sorted(messages.items()))},
    }


# ---------------------------------------------------------------- files


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def documents() -> dict[str, str]:
    """file name in docs/ -> its text as the code makes it now."""
    return {"openapi.json": render(openapi()), "asyncapi.json": render(asyncapi())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gate.cli.api_docs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/ differs from what the code makes")
    ap.add_argument("--out", type=Path, default=DOCS, help="the folder to write into (default: docs/)")
    args = ap.parse_args(argv)
    stale = []
    for name, text in documents().items():
        path = args.out / name
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old == text:
            continue
        if args.check:
            stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}: run python -m gate.cli.api_docs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
