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

from drivers.voice.cache import Engine, PromptCache
from drivers.voice.engines import PYTTSX3_VOICES, VOICES, RenderError, wav_duration
from drivers.voice.sim import SimSpeaker, SpokenPrompt
from drivers.voice.speaker import Speaker

__all__ = ["PYTTSX3_VOICES", "VOICES", "Engine", "PromptCache", "RenderError", "SimSpeaker",
           "Speaker", "SpokenPrompt", "wav_duration"]
