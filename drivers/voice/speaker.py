"""``Speaker``: plays prompts through a player subprocess (``aplay``) on one worker
thread; a new prompt cuts the one playing short."""
from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.base import Counters, FaultCallback, Progress, no_fault
from drivers.voice.cache import PromptCache
from drivers.voice.engines import _check_prompt

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class _Prompt:
    key: str
    text: str
    lang: str


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
