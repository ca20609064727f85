"""Voice: from a decision to the first audio sample, for a prompt rendered at
start-up (the cache) against rendering it with pyttsx3 at the moment it is needed.

The player is a stand-in for aplay that notes when it starts reading the WAV (this
machine has no sound card); everything before it is the real Speaker path."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.core import Context, Figure
from drivers.voice import PromptCache, Speaker

TITLE = "voice: decision → first audio sample"


def _player(stamp: Path) -> list[str]:
    # $1 is the WAV: note the moment the player opens it, then "play" it.
    return ["sh", "-c", f'date +%s.%N > "{stamp}"; exec cat "$1" > /dev/null', "player"]


def _first_sample(speaker: Speaker, stamp: Path, text: str) -> float:
    stamp.unlink(missing_ok=True)
    t0 = time.time()
    speaker.say("bench", text, "zh")
    deadline = time.monotonic() + 30
    while not stamp.exists() or not stamp.read_text().strip():
        if time.monotonic() > deadline:
            raise RuntimeError("the player never started")
        time.sleep(0.0005)
    return float(stamp.read_text()) - t0


def run(ctx: Context) -> list[Figure]:
    reps = ctx.reps(8, 30)
    with tempfile.TemporaryDirectory(prefix="bench-voice-") as tmp:
        d = Path(tmp)
        stamp = d / "stamp"
        cache = PromptCache(d / "cache", engine="pyttsx3")
        speaker = Speaker(cache, player=_player(stamp))
        try:
            cache.prerender([("欢迎回家", "zh")])
            warm, cold = [], []
            for i in range(reps):  # A B A B
                warm.append(_first_sample(speaker, stamp, "欢迎回家"))
                speaker.flush(10)
                cold.append(_first_sample(speaker, stamp, f"欢迎回家，第{i}位"))  # a text never rendered before
                speaker.flush(10)
        finally:
            speaker.close()
            cache.close()
    w, c = statistics.median(warm), statistics.median(cold)
    ctx.implications.append(f"a pre-rendered prompt starts {w * 1e3:.0f} ms after the decision here, {c / w:.0f}× sooner than rendering it then ({c * 1e3:.0f} ms)")
    return [Figure("voice.first_sample_ms", w * 1e3, "ms", c * 1e3, w / c,
                   note="pre-rendered prompt (cache hit) vs pyttsx3 rendering at the moment; player start as first sample", pi4=True)]
