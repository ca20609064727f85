"""What the gate says, in Chinese and English, and which prompt goes with which outcome."""
from __future__ import annotations

from dataclasses import dataclass

from gate.core import words


@dataclass(frozen=True)
class Prompt:
    zh: str
    en: str

    def text(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en


# The words themselves are in the one vocabulary (gate/core/words.toml, [prompts]).
PROMPTS: dict[str, Prompt] = {key: Prompt(zh, en) for key, (zh, en) in words.PROMPTS.items()}

_DENY_PROMPT = {
    "malformed": "invalid_pass",
    "forged": "invalid_pass",
    "unknown_pass": "invalid_pass",
    "unknown_card": "invalid_pass",
    "replayed": "code_replayed",
    "second_factor": "second_factor",
    "revoked": "pass_expired",
    "expired": "pass_expired",
    "not_yet_valid": "not_yet_valid",
    "fever": "fever",
    "no_temperature": "no_temperature",
    "observation": "observation",
    "outside_hours": "outside_hours",
    "pcr_required": "pcr_required",
    "health_code": "health_code",
    # A hard refusal: no guard is coming, so the prompt must not promise one.
    "passback": "passback_refused",
    "guard_rejected": "guard_rejected",
    "fever_hold": "fever_hold",
    "rule": "rule_refused",  # the lane speaks the rule's own text when it has one
}

# "Welcome home" is for people who live here; the rest are greeted as what they are.
_WELCOME = {
    "resident": "welcome",
    "renter": "welcome",
    "returnee": "welcome",
    "visitor": "welcome_visitor",
    "staff": "welcome_staff",
}


def for_decision(decision: str, reason: str, direction: str, category: str | None) -> str | None:
    """The prompt key to speak for a decision."""
    if decision == "allow":
        if direction == "out" or reason == "exit_button":
            return "goodbye"
        return _WELCOME.get(category or "", "go_ahead")
    if decision == "retest":
        return "retest"
    if decision == "challenge":
        return "guard_check"
    if reason == "category_refused":
        return "courier" if category == "courier" else "category_refused"
    return _DENY_PROMPT.get(reason, "invalid_pass")


def spoken(key: str, languages: list[str]) -> list[tuple[str, str]]:
    """(lang, text) pairs to speak for a key, in the configured order."""
    p = PROMPTS[key]
    return [(lang, p.text(lang)) for lang in languages]
