"""``PromptCache``: WAVs of rendered prompts on disk, keyed by text, voice, rate and
volume; a miss renders with pyttsx3, or the espeak-ng CLI once pyttsx3 fails."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Literal

from drivers.base import Counters
from drivers.voice import engines
from drivers.voice.engines import (PYTTSX3_VOICES, VOICES, _check_espeak_voices, _check_prompt,
                                   _check_wav, _Job, _Pyttsx3Owner, _voice_for)

log = logging.getLogger(__name__)

Engine = Literal["pyttsx3", "espeak"]

_TEMP_PREFIX = ".render-"
_TEMP_SUFFIX = ".tmp"
_STALE_TEMP_S = 600.0  # far longer than any render takes


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
            # Through the module: the tests stand in for the engines there.
            engines._espeak_cli(text, voice, self.rate, self.amplitude, tmp, self.timeout_s)
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
