"""The daily report as a self-contained HTML page (`gate report daily --html`): the
tables as text, the charts as embedded PNG images, the words from gate/core/words.toml."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from gate.config import PolicyConfig
from gate.core.words import CATEGORIES, REPORT, both
from gate.desk.report_doc import DayDetails, _histogram, _hourly, _r, chart_style, policy_note, reason_label


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def write_html(d: DayDetails, policy: PolicyConfig, out: Path) -> None:
    """A self-contained page: tables as text, the charts as embedded PNG images."""
    import matplotlib
    from matplotlib.figure import Figure

    rep = d.report
    with matplotlib.rc_context(chart_style()):
        f1 = Figure(figsize=(7.5, 2.6))
        _hourly(a1 := f1.add_subplot(), d)
        f2 = Figure(figsize=(5.5, 2.6))
        _histogram(a2 := f2.add_subplot(), d)
        a1.set_title("")  # the page's heading says it
        a2.set_title("")
        hourly, hist = _png(f1), _png(f2)
    e = html.escape

    def table(header: list[str], rows: list[list[Any]], empty: str) -> str:
        if not rows:
            return f'<p class="none">{e(empty)}</p>'
        head = "".join(f"<th>{e(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    allowed = [[d.labels.get(k, both(CATEGORIES, k)), v] for k, v in sorted(rep["allowed"].items(), key=lambda kv: -kv[1])]
    denied = [[reason_label(k), v] for k, v in sorted(rep["denied"].items(), key=lambda kv: -kv[1])]
    zero = f"<p><b>{e(REPORT['zero'][0])}</b> ({e(REPORT['zero'][1])})</p>" if not rep["events"] else ""
    w = {key: e(_r(key)) for key in REPORT}
    stale = f"<p id=\"presence-stale\">⚠ {w['presence_stale']}: <b>{rep['presence_stale']}</b></p>" if rep.get("presence_stale") else ""
    page = f"""<!doctype html>
<html lang="zh"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(REPORT['title'][0])} {e(rep['date'])} {e(rep['gate'])}</title>
<style>
body {{ font-family: "WenQuanYi Micro Hei", "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif; margin: 1.2em; max-width: 52em; color: #222; }}
h1 {{ font-size: 1.5em; margin-bottom: .2em; }} h2 {{ font-size: 1.1em; margin: 1.2em 0 .3em; }}
.sum span {{ display: inline-block; margin-right: 1.2em; }} .none {{ color: #777; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: .15em .8em .15em 0; border-bottom: 1px solid #ddd; }}
img {{ max-width: 100%; }} .cols {{ display: flex; flex-wrap: wrap; gap: 2em; }}
@media print {{ body {{ margin: 0; }} }}
</style></head><body>
<h1>{e(REPORT['title'][0])} {e(REPORT['title'][1])} — {e(rep['date'])}</h1>
<p class="sum"><span>{w['gate']} <b>{e(rep['gate'])}</b></span><span>{w['allowed']} <b>{sum(rep['allowed'].values())}</b></span>
<span>{w['denied']} <b>{sum(rep['denied'].values())}</b></span><span>{w['fevers']} <b>{rep['fevers']}</b></span>
<span>{w['checks']} <b>{rep['challenges']}</b></span><span>{w['events']} <b>{rep['events']}</b></span></p>
{zero}{stale}<p class="none">{e(policy_note(d))} · {w['generated']} {e(d.generated)}</p>
<div class="cols"><div><h2>{w['allowed_by_category']}</h2>{table([_r('category'), _r('count')], allowed, _r('none'))}</div>
<div><h2>{w['denied_by_reason']}</h2>{table([_r('reason'), _r('count')], denied, _r('none'))}</div></div>
<h2>{w['by_hour']}</h2><img id="hourly" alt="decisions by hour" src="{hourly}">
<h2>{w['temperatures']}</h2><img id="temperatures" alt="temperature histogram" src="{hist}">
<h2>{w['incidents']}</h2>
{table([_r('time'), _r('lane'), _r('what'), _r('detail')], [[i['time'], i['lane'], i['what'], i['detail']] for i in d.incidents], _r('none_today'))}
<h2>{w['new_cards']} ({len(d.new_cards)})</h2>
{table([_r('card'), _r('first_seen'), _r('unit')], [[c['number'], c['time'], c['unit'] or (_r('unknown_card') if any(u['number'] == c['number'] for u in d.unknown_cards) else _r('unbound'))] for c in d.new_cards], _r('no_new_cards'))}
<h2>{w['unknown_cards']} ({len(d.unknown_cards)})</h2>
{table([_r('card'), _r('first_seen'), _r('swipes')], [[u['number'], u['time'], u['swipes']] for u in d.unknown_cards], _r('no_unknown_cards'))}
</body></html>
"""
    Path(out).write_text(page, encoding="utf-8")
