"""A recorded week at the gate, for policy replays: seven mornings of the same
people run through the real lanes (gate.drill.runner.Rehearsal) into a store, under a
policy with the fever line at 37.3 °C and a 72-hour nucleic-acid test window.

Who comes, day d = 0..6 (2026-11-02 .. 2026-11-08, 08:00 Beijing time):

- w1, every day, 36.5 °C; tested day 0 07:00 (so older than 72 h from day 3 on)
- w2, every day, 36.5 °C; tested day 3 07:00 (in the future on days 0-2)
- w3, every day, 36.5 °C; never tested
- one person a day with a temperature story, each tested that morning at 07:00:
  day 0 f_ok 37.4 then 37.2; day 1 f_twice 37.4 then 37.4; day 2 f_high 37.8
  then 37.9; day 3 f_walk 37.4 and walks away; day 4 f_edge 37.5 then 37.0
- day 0, someone leaves by the exit button (a decision recorded without inputs)
"""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from gate.drill.runner import Rehearsal
from gate.drill.file import Drill

TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 2, 8, 0, tzinfo=TZ)
DAYS = 7
POLICY = {"fever_c": 37.3, "pcr_within_h": 72}
STORIES = {0: ("f_ok", [37.4, 37.2]), 1: ("f_twice", [37.4, 37.4]), 2: ("f_high", [37.8, 37.9]),
           3: ("f_walk", [37.4]), 4: ("f_edge", [37.5, 37.0])}


def _iso(dt: datetime) -> str:
    return dt.isoformat()


def week_drill() -> Drill:
    day = timedelta(days=1)
    tested = lambda d: _iso(START + d * day - timedelta(hours=1))  # noqa: E731  (07:00 on day d)
    passes = [
        {"id": "w1", "holder": "王一", "unit": "1-1-101", "category": "resident", "pcr_at": tested(0)},
        {"id": "w2", "holder": "王二", "unit": "1-1-102", "category": "resident", "pcr_at": tested(3)},
        {"id": "w3", "holder": "王三", "unit": "1-1-103", "category": "renter"},
    ]
    passes += [{"id": pid, "holder": pid, "unit": f"2-1-{100 + d}", "category": "resident", "pcr_at": tested(d)}
               for d, (pid, _) in STORIES.items()]
    steps = []
    for d in range(DAYS):
        t = d * 86400.0
        for i, pid in enumerate(("w1", "w2", "w3")):
            steps += [{"at": t + 20 * i, "lane": "in", "qr": pid}, {"at": t + 20 * i + 1, "lane": "in", "temperature": 36.5}]
        if d in STORIES:
            pid, temps = STORIES[d]
            steps.append({"at": t + 60, "lane": "in", "qr": pid})
            steps += [{"at": t + 61 + 2 * k, "lane": "in", "temperature": x} for k, x in enumerate(temps)]
        if d == 0:
            steps.append({"at": t + 200, "lane": "out", "exit_button": True})
    return Drill.model_validate({"name": "a recorded week", "start": _iso(START), "config": {"policy": POLICY},
                                 "passes": passes, "steps": steps})


def record_week(store_path: Path) -> list[dict]:
    """Run the week into store_path; the decision lines the lanes printed."""
    with Rehearsal(week_drill(), store_path=store_path) as r:
        r.run()
        return [line for line in r.lines if line["type"] == "decision"]
