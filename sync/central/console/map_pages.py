"""The community map's pages (Flask routes), read-only: every signed-in account sees them.

    /map?status=...&days=N&b=B   the buildings' boards (三色牌), building B's floor plan
                                 (楼盘图) and the other units, coloured by the status
                                 chosen (四色图); the choice is kept for the session
    /map/unit/<unit>             a unit's people, their latest decision at every gate,
                                 and the visitors registered to it

Words: gate/core/words.toml [console_map], Chinese first, English beside it. The
queries are sync/central/console/community.py's; installed by server.py beside pages.py.
"""
from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, render_template, request, session
from markupsafe import Markup

from gate.core.words import CONSOLE_MAP
from sync.central.console import community
from sync.central.console.board import midnight
from sync.central.console.guard import Guard

# A unit's mark beside its colour (colour is never the only signal): a letter, and a
# pattern in map.css. The legend shows both.
MARKS = {"clear": "", "observation": "O", "fever": "F", "visitor": "V", "revoked": "R", "unseen": "N",
         "all": "✓", "some": "½", "none": "✗", "na": "–"}
RULE_STATES = ("all", "some", "none", "na")


def mw(key: str, **fill: Any) -> Markup:
    """Both languages from [console_map]: Chinese first, English beside it."""
    zh, en = CONSOLE_MAP.get(key, (key, key))
    if fill:
        zh, en = zh.format(**fill), en.format(**fill)
    return Markup('<span class="zh">{}</span> <span class="en">{}</span>').format(zh, en)


def mplain(key: str, **fill: Any) -> str:
    zh, en = CONSOLE_MAP.get(key, (key, key))
    if fill:
        zh, en = zh.format(**fill), en.format(**fill)
    return f"{zh} · {en}"


def pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}".rstrip("0").rstrip(".")


def install(app: Flask, console: Any, guard: Guard) -> None:
    cconf = console.cconf
    app.jinja_env.globals.update(mw=mw, mplain=mplain, pct=pct, marks=MARKS)

    def choose() -> community.Choice:
        """The status from the URL, else the one this session chose last, else home observation."""
        names = tuple(r["name"] for r in community.policy_rules(console.store()))
        if "status" in request.args:
            choice = community.Choice.parse(request.args.get("status"), request.args.get("days"), names)
            session["map_choice"] = [choice.key, choice.days]
            return choice
        kept = session.get("map_choice") or ["observation", community.DAYS]
        return community.Choice.parse(kept[0], kept[1], names)

    def compute(choice: community.Choice) -> dict[str, Any]:
        now = time.time()
        return community.community_map(console.store(), choice, now=now, tz=console.tz, midnight=midnight(now, console.tz),
                                       green=cconf.map_green_pct, yellow=cconf.map_yellow_pct)

    @app.get("/map")
    def community_map() -> str:
        t0 = time.perf_counter()
        choice = choose()
        m = compute(choice)
        wanted = request.args.get("b")
        shown = next((b for b in m["buildings"] if b.name == wanted), m["buildings"][0] if m["buildings"] else None)
        states = RULE_STATES if choice.kind == "rule" else ("clear", choice.kind)
        return render_template("map.html", m=m, choice=choice, shown=shown, plan=shown.plan() if shown else None,
                               rules=community.policy_rules(console.store()), states=states,
                               green=pct(cconf.map_green_pct), yellow=pct(cconf.map_yellow_pct),
                               ms=(time.perf_counter() - t0) * 1000)

    @app.get("/map/unit/<path:unit>")
    def map_unit(unit: str) -> Any:
        now = time.time()
        store = console.store()
        people = community.unit_people(store, unit, now=now)
        visitors = community.unit_visitors(store.db, unit, now)
        body = render_template("map_unit.html", unit=unit, place=community.parse_unit(unit), people=people, visitors=visitors)
        return Response(body, 200 if people or visitors else 404, mimetype="text/html")
