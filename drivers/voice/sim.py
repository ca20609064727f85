"""``SimSpeaker``: renders prompts through the same cache and records them instead of
playing, so a drill can assert what was said."""
from __future__ import annotations

import collections
import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

from drivers.base import Counters, Progress
from drivers.voice.cache import PromptCache
from drivers.voice.engines import _check_prompt, wav_duration
from drivers.voice.speaker import _Prompt

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class SpokenPrompt:
    """What a SimSpeaker would have played."""

    key: str
    text: str
    lang: str
    wav: Path
    duration_s: float


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
