"""The character LCD: the HD44780 driver's I2C bytes, decoded by the emulator, and
what the gate shows on it."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from drivers.display import Hd44780, Hd44780Emulator, SimDisplay, make_display, open_hd44780, to_rom
from gate.core.records import AckRecord, AlarmRecord, DecisionRecord, PromptRecord
from gate.web.lcd import LcdPresenter

TZ = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 11, 22, 8, 0, 1, tzinfo=TZ)


def test_rom_mapping() -> None:
    assert to_rom("36.4°C") == b"36.4\xdfC"
    assert to_rom("王芳 ok") == b"?? ok"
    assert to_rom("a~b") == b"a?b"  # 0x7E is an arrow in the A00 ROM


def test_the_driver_speaks_4_bit_hd44780_over_the_pcf8574() -> None:
    emu = Hd44780Emulator(cols=16, rows=2)
    lcd = Hd44780(emu, cols=16, rows=2, sleep=lambda s: None)
    assert emu.four_bit and emu.display_on and emu.backlight
    lcd.show(["IN  ALLOW  36.4°", "ok 3-2-501"])
    assert emu.lines() == ["IN  ALLOW  36.4°", "ok 3-2-501      "]
    writes = emu.writes
    lcd.show(["IN  ALLOW  36.4°", "ok 3-2-501"])
    assert emu.writes == writes  # nothing changed: nothing sent (I2C is slow)
    lcd.show(["a very long line that does not fit", ""])
    assert emu.lines() == ["a very long line", " " * 16]
    lcd.close()
    assert emu.closed and not emu.backlight and emu.lines() == [" " * 16] * 2


def test_20x4_rows_and_wrong_address() -> None:
    d = SimDisplay(cols=20, rows=4)
    d.show(["one", "two", "three", "four"])
    assert [l.rstrip() for l in d.lines()] == ["one", "two", "three", "four"]
    with pytest.raises(OSError):
        Hd44780(Hd44780Emulator(address=0x3F), address=0x27, sleep=lambda s: None)
    with pytest.raises(ValueError):
        SimDisplay(cols=40, rows=1)
    assert isinstance(make_display("sim", cols=16, rows=2), SimDisplay)
    with pytest.raises(ValueError):
        make_display("oled")


def test_real_backend_is_imported_lazily() -> None:
    try:
        import smbus2  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="smbus2"):
            open_hd44780(port=99)
    else:
        with pytest.raises((RuntimeError, OSError, FileNotFoundError)):
            open_hd44780(port=99)  # no /dev/i2c-99 here


def decision(**kw: object) -> DecisionRecord:
    base = dict(at=AT, lane="in", pass_id="r1", credential="qr", category="resident", decision="allow",
                reason="ok", temperature_c=36.44, holder="王芳", unit="3-2-501")
    base.update(kw)
    return DecisionRecord(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("cols, rows", [(16, 2), (20, 4)])
def test_the_lcd_shows_the_last_decision_then_an_alarm_until_acknowledged(cols: int, rows: int) -> None:
    d = SimDisplay(cols=cols, rows=rows)
    lcd = LcdPresenter(d, TZ)
    lcd.start()
    n = 0

    def feed(rec: object) -> None:
        nonlocal n
        lcd.sink(rec)  # type: ignore[arg-type]
        n += 1
        assert lcd.wait_handled(n)

    try:
        assert d.lines()[0].startswith("gate")
        feed(decision())
        lines = [l.rstrip() for l in d.lines()]
        assert lines[0].startswith("IN  ALLOW") and "36.4°" in lines[0]
        assert "王" not in "".join(lines)  # no names on the LCD (and no Chinese in its ROM)
        assert ("ok 3-2-501" if rows == 2 else "3-2-501  resident") in lines
        alarm = AlarmRecord(at=AT, lane="in", kind="fever", detail="37.8 °C", pass_id="n1")
        feed(alarm)
        assert d.lines()[0].rstrip() == "!FEVER"
        assert d.lines()[1].rstrip() == "IN 37.8 °C"
        feed(decision(decision="deny", reason="unknown_card", pass_id=None, unit=None, temperature_c=None))
        assert d.lines()[0].rstrip() == "!FEVER"  # the alarm stays until acknowledged
        feed(PromptRecord(at=AT, lane="in", key="welcome", text="x"))
        feed(AckRecord(at=AT, lane="in", alarm_id=alarm.id, kind="fever", who="guard"))
        assert d.lines()[0].startswith("IN  DENY")
        feed(decision(decision="challenge", reason="holder_check", challenge_id="in-1"))
        assert d.lines()[0].rstrip() == "CHECK IN"
        feed(decision(reason="guard_confirmed", challenge_id="in-1"))
        assert d.lines()[0].startswith("IN  ALLOW")
    finally:
        lcd.stop()


def test_daemon_starts_the_configured_lcd_and_it_follows_the_lanes() -> None:
    """`[guard] lcd = {driver = "sim", ...}` in the config: `gate run` shows decisions on it."""
    import textwrap

    from gate.drill import file as drill_file
    from gate.cli.run import _start_lcd
    from gate.drill.runner import Rehearsal
    from gate.drill.file import Step

    d = drill_file.parse(textwrap.dedent("""
        name: lcd
        start: "2026-11-22T10:00:00+08:00"
        config: {guard: {lcd: {driver: sim, cols: 20, rows: 4}}}
        passes: [{id: r1, holder: 王芳, unit: 3-2-501, category: resident}]
        """))
    with Rehearsal(d) as r:
        presenter = _start_lcd(r.config, r.app)
        assert presenter is not None and (presenter.cols, presenter.rows) == (20, 4)
        try:
            r.step(Step(at=0, lane="in", qr="r1"))
            r.step(Step(at=0.5, lane="in", temperature=36.5))
            assert presenter.wait_handled(3, 5)
            assert presenter.last is not None and presenter.last.decision == "allow"
            text = " ".join(presenter.lines())
        finally:
            presenter.stop()
    assert "ALLOW" in text.upper() or "OK" in text.upper()
