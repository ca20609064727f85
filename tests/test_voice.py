"""Voice driver against the real espeak-ng: every assertion is about a WAV a
resident would hear, or about a prompt that was (not) played."""
from __future__ import annotations

import array
import logging
import os
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import pytest

from drivers.voice import engines as voice
from drivers.voice import (
    VOICES,
    PromptCache,
    SimSpeaker,
    Speaker,
    wav_duration,
)

ZH = "请出示通行证并测量体温"
EN = "Please show your pass"

# Generous limits for waiting on threads/processes; they only end a broken test.
WAIT_S = 10.0


def cli_wav(tmp_path: Path, text: str, voice_name: str, name: str, rate: int = 160) -> Path:
    out = tmp_path / name
    subprocess.run(["espeak-ng", "-v", voice_name, "-s", str(rate), "-a", "100",
                    "-w", str(out), text], check=True, capture_output=True)
    return out


def peak(path: Path) -> int:
    with wave.open(str(path), "rb") as w:
        samples = array.array("h", w.readframes(w.getnframes()))
    return max(abs(s) for s in samples)


def assert_speech_wav(path: Path) -> None:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 22050)
        assert w.getnframes() > 0
    assert peak(path) > 1000  # not silence


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def cache(tmp_path: Path):
    c = PromptCache(tmp_path / "cache")
    yield c
    c.close()
    assert c.fallbacks == 0, "pyttsx3 failed and the test quietly ran on the CLI"


# --------------------------------------------------------------------------- voices


FRESH_RENDER = """\
import sys
from drivers.voice import PromptCache
cache = PromptCache(sys.argv[1])
path = cache.render(sys.argv[2], sys.argv[3])
assert cache.fallbacks == 0, "pyttsx3 was not used"
print(path)
"""


@pytest.mark.parametrize("lang", sorted(VOICES))
def test_pyttsx3_voice_is_the_cli_voice(lang: str, tmp_path: Path) -> None:
    # A process's first pyttsx3 render equals the CLI's byte for byte, so this shows
    # both mappings name one voice (pyttsx3 silently keeps its old voice on a bad
    # id). The long English reading of Chinese also catches pyttsx3 2.99 returning
    # from runAndWait before the WAV is written.
    done = subprocess.run([sys.executable, "-c", FRESH_RENDER, str(tmp_path / "c"), ZH, lang],
                          check=True, capture_output=True, text=True,
                          cwd=Path(voice.__file__).parents[2])
    assert "Audio saved" not in done.stdout
    rendered = Path(done.stdout.strip())
    assert rendered.read_bytes() == cli_wav(tmp_path, ZH, VOICES[lang], "cli.wav").read_bytes()


def test_zh_voice_reads_characters_as_mandarin_not_english() -> None:
    # espeak marks a switch to English phonemes as "(en)"; the broken `cmn` voice
    # does that for most characters of this prompt.
    def phonemes(voice_name: str) -> str:
        return subprocess.run(["espeak-ng", "-q", "-x", "-v", voice_name, ZH],
                              check=True, capture_output=True, text=True).stdout

    assert "(en)" in phonemes("cmn")
    assert "(en)" not in phonemes(VOICES["zh"])


def test_chinese_prompt_is_plausible_mandarin_speech(cache: PromptCache, tmp_path: Path,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    wav = cache.render(ZH, "zh")
    assert wav.parent == cache.directory
    assert_speech_wav(wav)
    seconds = wav_duration(wav)
    assert 1.0 < seconds < 6.0  # 11 syllables
    # Ear-proxy: the broken voice spells it English-ish and takes longer (4.67 s vs 4.01 s
    # here); the English voice says "Chinese letter" per character (8.6 s).
    assert seconds < 0.9 * wav_duration(cli_wav(tmp_path, ZH, "cmn", "broken.wav"))
    assert seconds < 0.6 * wav_duration(cli_wav(tmp_path, ZH, "en", "english.wav"))
    assert cache.fallbacks == 0  # pyttsx3 did it ...
    assert "Audio saved" not in capfd.readouterr().out  # ... without chatter on stdout


def test_english_prompt_renders(cache: PromptCache) -> None:
    wav = cache.render(EN, "en")
    assert_speech_wav(wav)
    assert 0.5 < wav_duration(wav) < 4.0


def test_two_caches_in_one_process_both_use_pyttsx3(tmp_path: Path) -> None:
    # pyttsx3 shares one engine per process; the second cache's owner thread gets an
    # engine that has already spoken (where an empty runAndWait would never return).
    with PromptCache(tmp_path / "a") as first, PromptCache(tmp_path / "b") as second:
        a = first.render(ZH, "zh")
        b = second.render(ZH, "zh")
        assert first.fallbacks == second.fallbacks == 0
        assert abs(wav_duration(a) - wav_duration(b)) < 0.1


def test_unknown_language_or_empty_text_is_refused(cache: PromptCache) -> None:
    with pytest.raises(ValueError):
        cache.render(ZH, "fr")
    with pytest.raises(ValueError):
        cache.render("  ", "en")


# --------------------------------------------------------------------------- cache


def test_cache_hit_returns_same_wav_without_rendering(cache: PromptCache, monkeypatch) -> None:
    first = cache.render(ZH, "zh")
    before = first.read_bytes()

    def no_render(*args, **kwargs):
        raise AssertionError("a cache hit must not render")

    monkeypatch.setattr(voice, "_pyttsx3_render", no_render)
    monkeypatch.setattr(voice, "_espeak_cli", no_render)
    assert cache.render(ZH, "zh") == first
    assert first.read_bytes() == before
    assert (cache.hits, cache.misses) == (1, 1)

    # A restart (new cache object on the same directory) still hits.
    again = PromptCache(cache.directory)
    assert again.render(ZH, "zh") == first
    assert (again.hits, again.misses) == (1, 0)


@pytest.mark.parametrize("engine", ["pyttsx3", "espeak"])
def test_text_voice_rate_and_volume_each_get_their_own_wav(tmp_path: Path, engine) -> None:
    base = PromptCache(tmp_path / "c", engine=engine)
    fast = PromptCache(tmp_path / "c", engine=engine, rate=260)
    quiet = PromptCache(tmp_path / "c", engine=engine, volume=0.3)
    wavs = {
        "base": base.render(EN, "en"),
        "text": base.render("Welcome home", "en"),
        "voice": base.render(EN, "zh"),
        "rate": fast.render(EN, "en"),
        "volume": quiet.render(EN, "en"),
    }
    assert len(set(wavs.values())) == 5
    assert all(p.exists() for p in wavs.values())
    assert base.misses == 3 and fast.misses == 1 and quiet.misses == 1
    # ... and they sound different, the way the setting says.
    assert wav_duration(wavs["rate"]) < 0.8 * wav_duration(wavs["base"])
    assert peak(wavs["volume"]) < 0.5 * peak(wavs["base"])
    assert base.render(EN, "en") == wavs["base"] and base.hits == 1
    assert base.fallbacks == fast.fallbacks == quiet.fallbacks == 0
    for c in (base, fast, quiet):
        c.close()


def test_prerender_fills_the_cache(cache: PromptCache) -> None:
    paths = cache.prerender([(ZH, "zh"), (EN, "en")])
    assert [p.exists() for p in paths] == [True, True]
    assert cache.misses == 2
    cache.render(EN, "en")
    assert cache.hits == 1


def test_crash_mid_render_leaves_no_wav(tmp_path: Path, monkeypatch) -> None:
    directory = tmp_path / "c"
    real_cli = voice._espeak_cli

    def dies_half_way(text, voice_name, rate, amplitude, out, timeout_s):
        real_cli(text, voice_name, rate, amplitude, out, timeout_s)
        data = out.read_bytes()
        out.write_bytes(data[: len(data) // 2])
        raise OSError("SD card went away")

    cache = PromptCache(directory, engine="espeak")
    monkeypatch.setattr(voice, "_espeak_cli", dies_half_way)
    with pytest.raises(OSError):
        cache.render(EN, "en")
    assert not cache.path_for(EN, "en").exists()
    assert list(directory.iterdir()) == []

    # A hard crash (kill -9) can leave a temp file behind: never served, swept on a
    # later start once old; a fresh one may belong to another process still writing.
    stale, fresh = directory / ".render-abc123.tmp", directory / ".render-def456.tmp"
    stale.write_bytes(b"RIFF half")
    fresh.write_bytes(b"RIFF half")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    monkeypatch.setattr(voice, "_espeak_cli", real_cli)
    cache = PromptCache(directory, engine="espeak")
    assert not stale.exists() and fresh.exists()
    assert_speech_wav(cache.render(EN, "en"))


# --------------------------------------------------------------------------- fallback


@pytest.fixture
def cli_spy(monkeypatch) -> list[tuple[str, str]]:
    """Record the espeak-ng CLI renders (still running the real CLI)."""
    calls: list[tuple[str, str]] = []
    real_cli = voice._espeak_cli

    def spy(text, voice_name, rate, amplitude, out, timeout_s):
        calls.append((text, voice_name))
        real_cli(text, voice_name, rate, amplitude, out, timeout_s)

    monkeypatch.setattr(voice, "_espeak_cli", spy)
    return calls


def test_hung_pyttsx3_falls_back_to_cli(tmp_path: Path, monkeypatch, cli_spy, caplog) -> None:
    release = threading.Event()
    hung_calls: list[str] = []

    def hangs(engine, text, *args):
        hung_calls.append(text)
        release.wait()  # like pyttsx3 #126: runAndWait never returns

    monkeypatch.setattr(voice, "_pyttsx3_render", hangs)
    cache = PromptCache(tmp_path / "c", timeout_s=2.0)  # (the CLI fallback has as long: a busy machine starts it slowly)
    try:
        with caplog.at_level(logging.WARNING, logger="drivers.voice"):
            wav = cache.render(ZH, "zh")
            assert_speech_wav(wav)
            # Made by the espeak-ng CLI: byte-identical to running it by hand.
            assert wav.read_bytes() == cli_wav(tmp_path, ZH, VOICES["zh"], "ref.wav").read_bytes()
            assert cli_spy == [(ZH, "cmn-latn-pinyin")]
            assert cache.pyttsx3_broken and cache.fallbacks == 1

            # Later renders go straight to the CLI, the hung engine is left alone.
            assert_speech_wav(cache.render(EN, "en"))
            assert hung_calls == [ZH]
            assert cache.fallbacks == 2
        assert len([r for r in caplog.records if "pyttsx3 failed" in r.message]) == 1
        assert not [p for p in cache.directory.iterdir() if p.suffix != ".wav"]
    finally:
        release.set()
        cache.close()


def test_failing_pyttsx3_falls_back_to_cli(tmp_path: Path, monkeypatch, cli_spy) -> None:
    def fails(*args):
        raise RuntimeError("could not initialize espeak")

    monkeypatch.setattr(voice, "_pyttsx3_render", fails)
    with PromptCache(tmp_path / "c") as cache:
        assert_speech_wav(cache.render(EN, "en"))
        assert cli_spy == [(EN, "en")]
        assert cache.fallbacks == 1


# --------------------------------------------------------------------------- Speaker


PLAYER = """\
import pathlib, signal, sys, time
log = pathlib.Path(sys.argv[1])
wav = sys.argv[-1]
def note(what):
    with log.open("a") as f:
        f.write(f"{what} {wav}\\n")
def on_term(*_):
    note("term")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
note(" ".join(["start", *sys.argv[2:-1]]))
time.sleep(60)  # a prompt far longer than any test
note("end")
"""


@pytest.fixture
def player(tmp_path: Path) -> tuple[list[str], Path]:
    script, log = tmp_path / "player.py", tmp_path / "player.log"
    script.write_text(PLAYER)
    log.touch()
    return [sys.executable, str(script), str(log)], log


def log_lines(log: Path) -> list[str]:
    return log.read_text().splitlines()


def test_newer_prompt_cuts_the_playing_one(cache: PromptCache, player) -> None:
    cmd, log = player
    speaker = Speaker(cache, player=cmd, device="plughw:1,0")
    try:
        first, second = cache.path_for(ZH, "zh"), cache.path_for(EN, "en")
        speaker.say("show_pass", ZH, "zh")  # returns although playback would take 60 s
        wait_until(lambda: log_lines(log), "first prompt")
        speaker.say("welcome", EN, "en")
        wait_until(lambda: len(log_lines(log)) >= 3, "second prompt")
        assert log_lines(log) == [
            f"start -D plughw:1,0 {first}",
            f"term {first}",
            f"start -D plughw:1,0 {second}",
        ]
    finally:
        speaker.close()
    assert log_lines(log)[-1] == f"term {second}"  # close() stops playback
    assert speaker.counters.get("interrupted") == 2 and speaker.play_errors == 0


def test_say_does_not_wait_and_only_the_newest_queued_prompt_plays(
        cache: PromptCache, player, monkeypatch) -> None:
    cmd, log = player
    rendering = threading.Event()
    release = threading.Event()
    real_render = cache.render

    def slow_render(text, lang):
        rendering.set()
        release.wait()
        return real_render(text, lang)

    monkeypatch.setattr(cache, "render", slow_render)
    speaker = Speaker(cache, player=cmd)
    try:
        caller = threading.Thread(target=lambda: [speaker.say(f"p{i}", f"Prompt {i}", "en")
                                                  for i in range(4)])
        caller.start()
        caller.join(WAIT_S)
        assert not caller.is_alive()  # four say() calls returned while rendering is stuck
        assert rendering.wait(WAIT_S)
        release.set()
        wait_until(lambda: log_lines(log), "a prompt to play")
        last = cache.path_for("Prompt 3", "en")
        assert log_lines(log) == [f"start {last}"]  # p0 superseded mid-render, p1, p2 dropped
        assert speaker.counters.get("dropped") == 3
    finally:
        release.set()
        speaker.close()


def test_missing_player_is_counted_not_raised(cache: PromptCache, tmp_path: Path, caplog) -> None:
    faults: list[tuple[str, bool, str]] = []
    speaker = Speaker(cache, player=[str(tmp_path / "no-such-player")],
                      on_fault=lambda *f: faults.append(f))
    try:
        with caplog.at_level(logging.WARNING, logger="drivers.voice"):
            speaker.say("a", ZH, "zh")
            assert speaker.flush(WAIT_S)
            speaker.say("b", EN, "en")
            assert speaker.flush(WAIT_S)
        assert speaker.play_errors == 2
        assert len([r for r in caplog.records if "cannot play" in r.message]) == 1
        assert [(name, ok) for name, ok, _ in faults] == [("speaker", False)]
        assert cache.path_for(EN, "en").exists()  # it still rendered
    finally:
        speaker.close()


def test_player_that_fails_then_recovers(cache: PromptCache, tmp_path: Path) -> None:
    broken = tmp_path / "no-card"
    broken.touch()
    script = tmp_path / "flaky.py"
    script.write_text("import pathlib, sys\n"
                      f"sys.exit(1 if pathlib.Path({str(broken)!r}).exists() else 0)\n")
    faults: list[tuple[str, bool, str]] = []
    speaker = Speaker(cache, player=[sys.executable, str(script)],
                      on_fault=lambda *f: faults.append(f))
    try:
        speaker.say("a", EN, "en")
        assert speaker.flush(WAIT_S)
        broken.unlink()
        speaker.say("b", EN, "en")
        assert speaker.flush(WAIT_S)
    finally:
        speaker.close()
    assert speaker.play_errors == 1 and speaker.counters.get("played") == 1
    assert [(name, ok) for name, ok, _ in faults] == [("speaker", False), ("speaker", True)]


# --------------------------------------------------------------------------- SimSpeaker


def test_sim_speaker_records_rendered_prompts(cache: PromptCache) -> None:
    sim = SimSpeaker(cache)
    try:
        sim.say("show_pass", ZH, "zh")
        sim.say("show_pass_en", EN, "en")
        sim.say("show_pass", ZH, "zh")  # repeated prompts are all recorded, from the cache
        assert sim.flush(WAIT_S)
    finally:
        sim.close()
    assert [(s.key, s.lang) for s in sim.spoken] == [
        ("show_pass", "zh"), ("show_pass_en", "en"), ("show_pass", "zh")]
    zh, en, zh_again = sim.spoken
    assert zh.wav == zh_again.wav == cache.path_for(ZH, "zh") and zh.text == ZH
    assert zh.duration_s == wav_duration(zh.wav) and 1.0 < zh.duration_s < 6.0
    assert 0.5 < en.duration_s < 4.0
    assert (cache.misses, cache.hits) == (2, 1)


def test_sim_speaker_say_does_not_wait_for_rendering(cache: PromptCache, monkeypatch) -> None:
    release = threading.Event()
    real_render = cache.render

    def blocked_render(text: str, lang: str) -> Path:
        release.wait()
        return real_render(text, lang)

    monkeypatch.setattr(cache, "render", blocked_render)
    sim = SimSpeaker(cache)
    try:
        sim.say("welcome", EN, "en")  # returns while the render is blocked
        assert list(sim.spoken) == []
        assert not sim.flush(0.05)
        release.set()
        assert sim.flush(WAIT_S)
        assert [s.key for s in sim.spoken] == ["welcome"]
    finally:
        release.set()
        sim.close()


# --------------------------------------------------------------------------- helper


def test_wav_duration_reads_the_header(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 24000)
    assert wav_duration(path) == 1.5


def test_a_configured_voice_is_used_and_an_unknown_one_refused(tmp_path: Path) -> None:
    default = PromptCache(tmp_path / "a", engine="espeak")
    us = PromptCache(tmp_path / "b", engine="pyttsx3", voices={"en": "en-us"})
    try:
        a = default.render("Please show your pass.", "en")
        b = us.render("Please show your pass.", "en")
        assert a.name != b.name and "en-us" in b.name
        assert a.read_bytes() != b.read_bytes()
        # The Chinese voice keeps its default (and pyttsx3) where nothing was configured.
        assert "cmn-latn-pinyin" in us.render("欢迎回家", "zh").name
    finally:
        default.close()
        us.close()
    with pytest.raises(ValueError, match="no voice"):
        PromptCache(tmp_path / "c", voices={"en": "klingon-xx"})
