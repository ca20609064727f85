"""The two ways a prompt becomes a WAV: pyttsx3 (in-process libespeak-ng, on the one
thread that may touch it) and the ``espeak-ng`` CLI; the voices and the checks both share."""
from __future__ import annotations

import logging
import queue
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

log = logging.getLogger(__name__)

# Language -> espeak-ng voice. Debian 12's `cmn`/`zh` turn characters into pinyin
# and read that as English; `cmn-latn-pinyin` speaks Mandarin with tones and takes
# Chinese characters directly.
VOICES: Mapping[str, str] = MappingProxyType({"zh": "cmn-latn-pinyin", "en": "en"})

# The same voices as pyttsx3's espeak driver lists them (lower-cased voice file ids).
PYTTSX3_VOICES: Mapping[str, str] = MappingProxyType(
    {"zh": "sit/cmn-latn-pinyin", "en": "gmw/en"}
)

# libespeak-ng is one instance per process (pyttsx3 initialises it once and shares
# the synth callback), so pyttsx3 renders from two caches must not interleave.
_LIBESPEAK = threading.Lock()


class RenderError(RuntimeError):
    """No usable WAV came out of the engine."""


class _Cancelled(RenderError):
    """pyttsx3 cancelled its own utterance (see _wait_espeak_idle); worth one retry."""


def wav_duration(path: Path | str) -> float:
    """Length of a PCM WAV in seconds, from its header."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def _voice_for(lang: str) -> str:
    try:
        return VOICES[lang]
    except KeyError:
        raise ValueError(f"no voice for language {lang!r} (have {sorted(VOICES)})") from None


def _check_espeak_voices(names: set[str]) -> None:
    """Refuse, at start-up, a voice espeak-ng does not have (it would speak English)."""
    try:
        listing = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"cannot list espeak-ng voices: {exc}") from None
    known = set()
    for line in listing.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5:
            known.add(parts[1].lower())  # language name, e.g. en-us
            known.add(parts[4].split("/")[-1].lower())  # file, e.g. en-US → en-us
    missing = sorted(n for n in names if n.lower() not in known)
    if missing:
        raise ValueError(f"espeak-ng has no voice {', '.join(missing)} (see `espeak-ng --voices`)")


def _check_prompt(text: str, lang: str) -> str:
    """Fail in the caller's thread, not later in a worker's log."""
    if not text.strip():
        raise ValueError("empty prompt text")
    return _voice_for(lang)


def _check_wav(path: Path) -> None:
    try:
        with wave.open(str(path), "rb") as w:
            frames = w.getnframes()
    except (wave.Error, EOFError, OSError) as exc:
        raise RenderError(f"not a WAV: {exc}") from exc
    if frames == 0:
        raise RenderError("WAV has no audio")


# --------------------------------------------------------------------------- engines


def _espeak_cli(text: str, voice: str, rate: int, amplitude: int, out: Path,
                timeout_s: float) -> None:
    """Render with the espeak-ng CLI (11-14 ms for a short prompt)."""
    # Text on stdin, not argv: a prompt starting with "-" must not parse as an option.
    cmd = ["espeak-ng", "-b", "1", "-v", voice, "-s", str(rate), "-a", str(amplitude),
           "-w", str(out), "--stdin"]
    try:
        proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True,
                              timeout=timeout_s, check=False)
    except FileNotFoundError as exc:
        raise RenderError("espeak-ng is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise RenderError(f"espeak-ng took longer than {timeout_s}s") from exc
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip()
        raise RenderError(f"espeak-ng exited {proc.returncode}: {detail}")


def _wait_espeak_idle(timeout_s: float) -> None:
    """Block until libespeak's command queue is empty.

    pyttsx3's runAndWait ends in driver.stop(), which calls espeak_Cancel whenever
    that queue is busy; Cancel drops queued SetParameter commands and resets rate
    and volume. Measured under CPU load: about 1 process in 10 rendered every prompt
    at pyttsx3's default rate 200 instead of ours, or wrote an empty WAV. Letting the
    queue drain after setting properties means stop() nearly always has nothing to
    cancel. IsPlaying() is briefly false between queueing a command and libespeak's
    thread taking it, so about 1 render in 500 still gets cancelled; that one is
    noticed ("finished-utterance" with completed=False) and retried.
    """
    from pyttsx3.drivers import _espeak  # pyttsx3's ctypes binding; no public way

    deadline = time.monotonic() + timeout_s
    while _espeak.IsPlaying():
        if time.monotonic() > deadline:
            raise RenderError(f"libespeak stayed busy for {timeout_s}s")
        time.sleep(0.001)


def _pyttsx3_render(engine: Any, text: str, voice_id: str, rate: int, volume: float,
                    out: Path, timeout_s: float) -> None:
    """One pyttsx3 render; only ever called on the owner thread."""
    finished = threading.Event()
    errors: list[BaseException] = []

    def on_finished(completed: bool = True, **_: object) -> None:
        if not completed:
            errors.append(_Cancelled("pyttsx3 cancelled the utterance"))
        finished.set()

    def on_error(exception: BaseException | None = None, **_: object) -> None:
        # Commands run inside pyttsx3's pump, which swallows their exceptions
        # (a bad voice would just keep the old one) and only notifies them.
        errors.append(exception or RenderError("pyttsx3 reported an error"))
        finished.set()

    tokens = [engine.connect("finished-utterance", on_finished),
              engine.connect("error", on_error)]
    try:
        engine.setProperty("voice", voice_id)
        engine.setProperty("rate", rate)
        engine.setProperty("volume", volume)
        _wait_espeak_idle(timeout_s)
        engine.save_to_file(text, str(out))
        engine.runAndWait()
        # libespeak synthesises on its own thread and calls back; the driver writes
        # the WAV then says "finished-utterance". Until 2.99's runAndWait has run
        # once it returns after one 10 ms tick, before the WAV exists.
        if not finished.wait(timeout_s):
            raise RenderError(f"pyttsx3 did not finish within {timeout_s}s")
    finally:
        for token in tokens:
            engine.disconnect(token)
    if errors:
        raise errors[0]


def _driver_print(*args: object, **_: object) -> None:
    log.debug("pyttsx3: %s", " ".join(map(str, args)))


def _open_pyttsx3(timeout_s: float) -> tuple[Any, frozenset[str]]:
    import pyttsx3  # here: engine="espeak" never pays for the import

    engine = pyttsx3.init("espeak")
    # The espeak driver print()s "Audio saved to ..." for every file. Shadow print in
    # that module only: redirect_stdout would swallow every thread's output.
    driver_module = sys.modules.get("pyttsx3.drivers.espeak")
    if driver_module is not None:
        driver_module.print = _driver_print  # type: ignore[attr-defined]
    voice_ids = frozenset(v.id for v in engine.getProperty("voices"))
    # A new engine queues its setProperty calls until its first runAndWait; run an
    # empty one so ours reach libespeak at once (and can drain, see above). Only on
    # a new engine (pyttsx3.init shares one per process): once an engine has run,
    # an empty runAndWait never returns.
    if engine.proxy.isBusy():
        engine.runAndWait()
    _wait_espeak_idle(timeout_s)
    return engine, voice_ids


@dataclass(frozen=True)
class _Job:
    text: str
    voice_id: str
    rate: int
    volume: float
    out: Path
    timeout_s: float
    done: Future[None] = field(default_factory=Future, compare=False)


class _Pyttsx3Owner:
    """The one thread that touches pyttsx3: it hangs after the first utterance and
    when used across threads (pyttsx3 #126, #131)."""

    def __init__(self, name: str, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # Daemon: a hung engine must not keep the process from exiting.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def render(self, job: _Job, timeout_s: float) -> None:
        """Raises the engine's exception, or concurrent.futures.TimeoutError."""
        self._jobs.put(job)
        try:
            job.done.result(timeout_s)
        except FutureTimeout:
            job.done.cancel()  # still queued behind a hung job: never start it
            raise

    def close(self, timeout_s: float = 1.0) -> None:
        self._jobs.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            with _LIBESPEAK:
                engine, voice_ids = _open_pyttsx3(self._timeout_s)
            failure: Exception | None = None
        except Exception as exc:  # noqa: BLE001 - reported to every job instead
            engine, voice_ids, failure = None, frozenset(), exc
        while (job := self._jobs.get()) is not None:
            if not job.done.set_running_or_notify_cancel():
                continue
            try:
                if failure is not None:
                    raise failure
                # An unknown id is silently ignored and the previous voice kept
                # (English reading Chinese as "Chinese letter"); refuse instead.
                if job.voice_id not in voice_ids:
                    raise RenderError(f"pyttsx3 has no voice {job.voice_id!r}")
                with _LIBESPEAK:
                    try:
                        _pyttsx3_render(engine, job.text, job.voice_id, job.rate,
                                        job.volume, job.out, job.timeout_s)
                    except _Cancelled:
                        log.debug("pyttsx3 cancelled its own utterance; retrying once")
                        _pyttsx3_render(engine, job.text, job.voice_id, job.rate,
                                        job.volume, job.out, job.timeout_s)
            except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
                job.done.set_exception(exc)
            else:
                job.done.set_result(None)
