"""Voice prompts: render text to WAV with espeak-ng, cache the WAVs on disk, play them.

The driver knows nothing of passes or policy: it is handed a key (for logs and
simulation records), the text and its language, and it speaks that text.

Rendering goes through pyttsx3 (in-process libespeak-ng, no fork per prompt) with
the ``espeak-ng`` CLI as a fallback. Both drive the same libespeak-ng with the same
voice, rate and amplitude, so the cache key does not name the engine: a process's
first pyttsx3 render is byte-identical to the CLI's; later ones come out up to a
few tens of milliseconds longer or shorter (libespeak keeps some state between
utterances), which no one hears.
"""
from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from drivers.base import Counters, FaultCallback, Progress, no_fault

log = logging.getLogger(__name__)

# Language -> espeak-ng voice. Debian 12's `cmn`/`zh` turn characters into pinyin
# and read that as English; `cmn-latn-pinyin` speaks Mandarin with tones and takes
# Chinese characters directly.
VOICES: Mapping[str, str] = MappingProxyType({"zh": "cmn-latn-pinyin", "en": "en"})

# The same voices as pyttsx3's espeak driver lists them (lower-cased voice file ids).
PYTTSX3_VOICES: Mapping[str, str] = MappingProxyType(
    {"zh": "sit/cmn-latn-pinyin", "en": "gmw/en"}
)

Engine = Literal["pyttsx3", "espeak"]

# libespeak-ng is one instance per process (pyttsx3 initialises it once and shares
# the synth callback), so pyttsx3 renders from two caches must not interleave.
_LIBESPEAK = threading.Lock()

_TEMP_PREFIX = ".render-"
_TEMP_SUFFIX = ".tmp"
_STALE_TEMP_S = 600.0  # far longer than any render takes


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


# --------------------------------------------------------------------------- cache


class PromptCache:
    """WAVs of rendered prompts in ``directory``, keyed by (text, voice, rate, volume).

    A hit costs a ``stat``; a miss renders with pyttsx3 (or the espeak-ng CLI once
    pyttsx3 has failed or hung, or when ``engine="espeak"``). Safe to call from
    several threads; misses are rendered one at a time.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        rate: int = 160,
        volume: float = 1.0,
        engine: Engine = "pyttsx3",
        timeout_s: float = 5.0,
        voices: Mapping[str, str] | None = None,
    ) -> None:
        # A site may prefer another espeak-ng voice for a language (`voice.voices`);
        # those are rendered by the CLI, which takes any voice name espeak-ng knows.
        self.voices: dict[str, str] = {**VOICES, **(voices or {})}
        self._custom = {lang for lang, v in self.voices.items() if VOICES.get(lang) != v}
        if self._custom:
            _check_espeak_voices({self.voices[lang] for lang in self._custom})
        if engine not in ("pyttsx3", "espeak"):
            raise ValueError(f"engine must be 'pyttsx3' or 'espeak', not {engine!r}")
        if not 0.0 <= volume <= 1.0:
            raise ValueError(f"volume must be within 0..1, not {volume}")
        if rate <= 0 or timeout_s <= 0:
            raise ValueError("rate and timeout_s must be positive")
        self.directory = Path(directory)
        self.rate = int(rate)
        # espeak takes an integer amplitude; both engines get exactly this one.
        self.amplitude = round(volume * 100)
        self.engine: Engine = engine
        self.timeout_s = timeout_s
        self.counters = Counters()
        self._lock = threading.Lock()  # one miss rendered at a time
        self._owner: _Pyttsx3Owner | None = None
        self._pyttsx3_broken = False
        self._closed = False
        self.directory.mkdir(parents=True, exist_ok=True)
        self._sweep_temps()

    # stats -------------------------------------------------------------------
    @property
    def hits(self) -> int:
        return self.counters.get("hits")

    @property
    def misses(self) -> int:
        return self.counters.get("misses")

    @property
    def fallbacks(self) -> int:
        """Renders done by the CLI because pyttsx3 failed or hung."""
        return self.counters.get("fallbacks")

    @property
    def pyttsx3_broken(self) -> bool:
        return self._pyttsx3_broken

    def stats(self) -> dict[str, int]:
        return {"hits": 0, "misses": 0, "fallbacks": 0, **self.counters.snapshot()}

    # rendering ----------------------------------------------------------------
    def path_for(self, text: str, lang: str) -> Path:
        """Where the WAV for this prompt lives (whether or not it is rendered yet)."""
        _voice_for(lang)
        voice = self.voices[lang]
        key = json.dumps([text, voice, self.rate, self.amplitude], ensure_ascii=False)
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]
        return self.directory / f"{voice}-{digest}.wav"

    def render(self, text: str, lang: str) -> Path:
        """Path of the WAV speaking ``text`` in ``lang``; renders it on a miss."""
        _check_prompt(text, lang)
        if self._closed:
            raise RuntimeError("PromptCache is closed")
        path = self.path_for(text, lang)
        if path.exists():
            self.counters.inc("hits")
            return path
        with self._lock:
            if path.exists():  # rendered by another thread while we waited
                self.counters.inc("hits")
                return path
            self.counters.inc("misses")
            tmp = self._render_to_temp(text, lang)
            try:
                # fsync before rename: after a power cut the name never points at
                # a WAV whose data did not reach the SD card.
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        return path

    def prerender(self, items: Iterable[tuple[str, str]]) -> list[Path]:
        """Render (text, lang) pairs ahead of time, e.g. at start-up."""
        return [self.render(text, lang) for text, lang in items]

    def close(self) -> None:
        self._closed = True
        if self._owner is not None:
            self._owner.close()
            self._owner = None

    def __enter__(self) -> PromptCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sweep_temps(self) -> None:
        """Remove temp files left by a crash or a hung pyttsx3 render. They are never
        served anyway; only old ones go, as another process (a prerender script)
        may be writing into the same directory right now."""
        cutoff = time.time() - _STALE_TEMP_S
        for temp in self.directory.glob(f"{_TEMP_PREFIX}*{_TEMP_SUFFIX}"):
            try:
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
            except FileNotFoundError:
                pass  # its writer renamed or removed it meanwhile

    def _new_temp(self) -> Path:
        fd, name = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=self.directory)
        os.close(fd)
        return Path(name)

    def _render_to_temp(self, text: str, lang: str) -> Path:
        """A complete, checked WAV in a fresh temp file of the cache directory."""
        voice = self.voices[lang]
        if self.engine == "pyttsx3" and not self._pyttsx3_broken and lang not in self._custom:
            tmp = self._new_temp()
            try:
                self._render_pyttsx3(text, lang, tmp)
                return tmp
            except FutureTimeout:
                reason = f"no result within {self.timeout_s}s"
            except Exception as exc:  # noqa: BLE001 - any failure means: use the CLI
                reason = f"{type(exc).__name__}: {exc}"
            # A hung render may still write this file later: the CLI gets its own.
            tmp.unlink(missing_ok=True)
            self._pyttsx3_broken = True
            log.warning("pyttsx3 failed (%s); rendering prompts with the espeak-ng CLI "
                        "from now on", reason)
        if self.engine == "pyttsx3":
            self.counters.inc("fallbacks")
        tmp = self._new_temp()
        try:
            _espeak_cli(text, voice, self.rate, self.amplitude, tmp, self.timeout_s)
            _check_wav(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _render_pyttsx3(self, text: str, lang: str, out: Path) -> None:
        if self._owner is None:
            self._owner = _Pyttsx3Owner(f"pyttsx3-{self.directory.name}", self.timeout_s)
        job = _Job(text, PYTTSX3_VOICES[lang], self.rate, self.amplitude / 100, out,
                   self.timeout_s)
        self._owner.render(job, self.timeout_s)
        _check_wav(out)


# --------------------------------------------------------------------------- speakers


@dataclass(frozen=True)
class _Prompt:
    key: str
    text: str
    lang: str


@dataclass(frozen=True)
class SpokenPrompt:
    """What a SimSpeaker would have played."""

    key: str
    text: str
    lang: str
    wav: Path
    duration_s: float


class Speaker:
    """Plays prompts through a player subprocess (``aplay``) on one worker thread.

    ``say()`` never blocks. Only the newest prompt matters at a gate: a new one cuts
    the one playing short and replaces any not yet started. ``on_fault`` is called
    from the worker thread when playback starts failing and when it works again.
    """

    _POLL_S = 0.1  # how often a playing worker looks for a cut
    _KILL_AFTER_S = 1.0  # grace for a player that ignores SIGTERM

    def __init__(
        self,
        cache: PromptCache,
        *,
        player: Sequence[str] = ("aplay", "-q"),
        device: str | None = None,
        on_fault: FaultCallback = no_fault,
    ) -> None:
        self.cache = cache
        # `-D DEVICE` is aplay's (and sox play's) syntax for the ALSA device.
        self._cmd = [*player, *(["-D", device] if device else [])]
        self._on_fault = on_fault
        self.counters = Counters()
        self.progress = Progress()  # prompts finished with: played, cut, dropped or failed
        self._cond = threading.Condition()
        self._pending: _Prompt | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._cut = False
        self._submitted = 0
        self._closing = False
        self._play_failing = False  # log/report once per outage, not per prompt
        self._render_failing = False
        self._worker = threading.Thread(target=self._run, name="speaker", daemon=True)
        self._worker.start()

    @property
    def play_errors(self) -> int:
        return self.counters.get("play_errors")

    def say(self, key: str, text: str, lang: str) -> None:
        _check_prompt(text, lang)
        with self._cond:
            if self._closing:
                raise RuntimeError("Speaker is closed")
            self._submitted += 1
            if self._pending is not None:
                self.counters.inc("dropped")
                self.progress.advance()
            self._pending = _Prompt(key, text, lang)
            if self._proc is not None:
                self._cut = True
                self._proc.terminate()  # just a signal; the worker reaps it
            self._cond.notify()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every prompt said so far is played, cut, dropped or failed."""
        with self._cond:
            target = self._submitted
        return self.progress.wait_for(target, timeout)

    def close(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._closing = True
            if self._pending is not None:
                self._pending = None
                self.counters.inc("dropped")
                self.progress.advance()
            if self._proc is not None:
                self._cut = True
                self._proc.terminate()
            self._cond.notify()
        self._worker.join(timeout)

    def __enter__(self) -> Speaker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closing)
                if self._closing:
                    return
                prompt, self._pending = self._pending, None
            try:
                self._speak(prompt)
            except Exception:  # noqa: BLE001 - the worker must outlive any prompt
                log.exception("speaker: prompt %r failed", prompt.key)
            finally:
                self.progress.advance()

    def _speak(self, prompt: _Prompt) -> None:
        try:
            wav = self.cache.render(prompt.text, prompt.lang)
        except Exception as exc:  # noqa: BLE001
            self.counters.inc("render_errors")
            if not self._render_failing:
                log.warning("speaker: cannot render %r: %s", prompt.key, exc)
            self._render_failing = True
            return
        self._render_failing = False
        cmd = [*self._cmd, str(wav)]
        with self._cond:
            if self._pending is not None or self._closing:
                self.counters.inc("dropped")  # superseded while rendering
                return
        # Started outside the lock so say() never waits for a fork.
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as exc:
            self._play_failed(prompt, f"cannot run {cmd[0]}: {exc}")
            return
        with self._cond:
            self._proc = proc
            # A say() while the player started could not cut it yet; do it now.
            self._cut = self._pending is not None or self._closing
            if self._cut:
                proc.terminate()
        stderr = self._wait(proc)
        with self._cond:
            self._proc = None
            cut = self._cut
        if cut:
            self.counters.inc("interrupted")
        elif proc.returncode == 0:
            self.counters.inc("played")
            if self._play_failing:
                self._play_failing = False
                log.info("speaker: playback works again")
                self._on_fault("speaker", True, "playing")
        else:
            lines = stderr.decode("utf-8", "replace").strip().splitlines()
            self._play_failed(prompt, f"{cmd[0]} exited {proc.returncode}: "
                                      f"{lines[-1] if lines else 'no message'}")

    def _wait(self, proc: subprocess.Popen[bytes]) -> bytes:
        """Wait for the player; kill it if a cut's SIGTERM is ignored."""
        kill_at: float | None = None
        while True:
            try:
                return proc.communicate(timeout=self._POLL_S)[1] or b""
            except subprocess.TimeoutExpired:
                with self._cond:
                    cut = self._cut or self._closing
                if cut and kill_at is None:
                    kill_at = time.monotonic() + self._KILL_AFTER_S
                if kill_at is not None and time.monotonic() >= kill_at:
                    proc.kill()

    def _play_failed(self, prompt: _Prompt, detail: str) -> None:
        self.counters.inc("play_errors")
        if self._play_failing:
            log.debug("speaker: %r not played: %s", prompt.key, detail)
            return
        self._play_failing = True
        log.warning("speaker: cannot play prompts (%s); carrying on silently", detail)
        self._on_fault("speaker", False, detail)


class SimSpeaker:
    """Speaker for simulation: renders through the same cache, records instead of
    playing. Keeps every prompt (no cutting), up to the last ``max_kept``, so a drill
    can assert what was said."""

    def __init__(self, cache: PromptCache, *, max_kept: int = 1000) -> None:
        self.cache = cache
        # The latest prompts only: a simulated lane runs for months in the demo.
        self.spoken: collections.deque[SpokenPrompt] = collections.deque(maxlen=max_kept)
        self.counters = Counters()
        self.progress = Progress()  # prompts rendered (or failed)
        self._jobs: queue.SimpleQueue[_Prompt | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._submitted = 0
        self._closing = False
        self._worker = threading.Thread(target=self._run, name="sim-speaker", daemon=True)
        self._worker.start()

    def say(self, key: str, text: str, lang: str) -> None:
        _check_prompt(text, lang)
        with self._lock:
            if self._closing:
                raise RuntimeError("SimSpeaker is closed")
            self._submitted += 1
            self._jobs.put(_Prompt(key, text, lang))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything said so far is rendered and recorded."""
        with self._lock:
            target = self._submitted
        return self.progress.wait_for(target, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Finish what is queued, then stop."""
        with self._lock:
            if not self._closing:
                self._closing = True
                self._jobs.put(None)
        self._worker.join(timeout)

    def __enter__(self) -> SimSpeaker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while (prompt := self._jobs.get()) is not None:
            try:
                wav = self.cache.render(prompt.text, prompt.lang)
                self.spoken.append(SpokenPrompt(prompt.key, prompt.text, prompt.lang,
                                                wav, wav_duration(wav)))
            except Exception as exc:  # noqa: BLE001 - a drill reads render_errors
                self.counters.inc("render_errors")
                log.warning("sim speaker: cannot render %r: %s", prompt.key, exc)
            finally:
                self.progress.advance()
