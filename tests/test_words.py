"""One vocabulary (gate/core/words.toml): every word the gate shows or says has both
languages, every code the lane produces has words, the same thing reads the same on the
guard page and in the daily report, and rendering a report loads no web framework."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gate.core import prompts, words
from gate.core.words import WordsError
from gate.drill import file as drill_file
from gate.drill import runner as drill
from gate.web import i18n

ROOT = Path(__file__).resolve().parents[1]
DENY_REASONS = sorted(prompts._DENY_PROMPT)


def test_every_entry_is_a_pair_of_words() -> None:
    for section, table in words.WORDS.items():
        assert table, section
        for key, (zh, en) in table.items():
            assert zh.strip() and en.strip(), (section, key)
            assert not any("\u4e00" <= ch <= "\u9fff" for ch in en), (section, key, en)  # the English column has no Chinese


def test_every_refusal_has_words_on_the_page_and_a_prompt_that_exists() -> None:
    for reason in DENY_REASONS:
        assert reason in words.REASONS, reason
    for decision in ("allow", "deny", "retest", "challenge"):
        for reason in [*DENY_REASONS, "ok", "exit_button", "category_refused", "high_temperature"]:
            for direction in ("in", "out"):
                for category in (None, "resident", "visitor", "staff", "courier", "renter", "returnee"):
                    key = prompts.for_decision(decision, reason, direction, category)
                    assert key in prompts.PROMPTS, (decision, reason, direction, category, key)


def test_every_alarm_has_a_name_and_advice_and_the_lcd_shows_only_known_alarms() -> None:
    assert set(words.ALARMS) == set(words.ALARM_ADVICE)
    assert set(words.LCD_ALARMS) <= set(words.ALARMS)
    # The LCD is an HD44780: its column must be plain ASCII.
    assert all(en.isascii() for _, en in [*words.LCD_ALARMS.values(), *words.LCD.values()])


def test_the_page_and_the_spoken_prompts_read_the_one_file() -> None:
    assert i18n.REASONS is words.REASONS and i18n.UI is words.UI
    assert prompts.PROMPTS["welcome"].text("zh") == words.PROMPTS["welcome"][0]
    assert prompts.PROMPTS["welcome"].text("en") == words.PROMPTS["welcome"][1]


@pytest.mark.parametrize("text, named", [
    ('[reasons]\nfever = ["发热"]\n', "[reasons] fever"),
    ('[ui]\ntitle = "门岗值守"\n', "[ui] title"),
    ('[ui]\ntitle = ["", "Gate guard"]\n', "[ui] title"),
    ("reasons = 3\n", "[reasons]"),
    ("[reasons\n", "words.toml"),
])
def test_a_malformed_entry_names_the_file_the_section_and_the_key(text: str, named: str) -> None:
    with pytest.raises(WordsError) as err:
        words.load(text)
    assert "gate/core/words.toml" in str(err.value) and named in str(err.value)


def test_the_exit_button_reads_the_same_on_the_page_and_in_the_report(tmp_path: Path) -> None:
    from gate.desk.report_doc import collect, figure, write_html

    d = drill_file.parse(textwrap.dedent("""
        name: someone goes out by the button
        start: "2026-11-22T08:00:00+08:00"
        config:
          lanes:
            - {name: out, direction: out, camera: {driver: sim}, exit_button: {driver: sim, pin: 23, debounce_ms: 0}, relay: {driver: sim, pin: 24}}
        steps:
          - {at: 0.0, lane: out, exit_button: true}
    """))
    with drill.Rehearsal(d) as r:
        r.run()
        store = r.app.open_store()
        try:
            details = collect(store, "2026-11-22", r.config.policy)
        finally:
            store.close()
    assert details.report["allowed"] == {"none": 1}
    zh, en = i18n.pair(i18n.REASONS, "exit_button")  # what the page's "Today" tab shows for it
    write_html(details, r.config.policy, tmp_path / "day.html")
    assert f"<td>{zh} {en}</td>" in (tmp_path / "day.html").read_text(encoding="utf-8")
    fig = figure(details, r.config.policy)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert f"{zh} {en}" in texts and not any("无通行证" in t for t in texts)


def test_rendering_a_report_and_pass_cards_loads_no_web_framework(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from gate.config import PolicyConfig
        from gate.desk.report_doc import collect, write_pdf
        from gate.store.database import Store
        store = Store(Path({str(tmp_path / "gate.db")!r}))
        write_pdf(collect(store, "2026-11-22", PolicyConfig()), PolicyConfig(), Path({str(tmp_path / "r.pdf")!r}))
        import gate.desk.printing
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("flask", "werkzeug", "waitress", "gate") and
                        (m.split(".")[0] != "gate" or m.startswith("gate.web")))
        print(",".join(loaded))
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "" and (tmp_path / "r.pdf").stat().st_size > 10_000
