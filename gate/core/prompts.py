"""What the gate says, in Chinese and English, and which prompt goes with which outcome."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    zh: str
    en: str

    def text(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en


PROMPTS: dict[str, Prompt] = {
    "welcome": Prompt("欢迎回家", "Welcome home."),
    "welcome_visitor": Prompt("欢迎来访，请通行", "Welcome. Please go ahead."),
    "welcome_staff": Prompt("您好，请通行", "Hello. Please go ahead."),
    "go_ahead": Prompt("请通行", "Please go ahead."),
    "goodbye": Prompt("请通行，注意安全", "Please go ahead. Take care."),
    "measure": Prompt("请测量体温", "Please measure your temperature."),
    "swipe_card": Prompt("请刷门禁卡", "Please swipe your door card."),
    "second_factor": Prompt("纸质通行证需同时刷门禁卡", "A printed pass needs your door card too."),
    "retest": Prompt("体温偏高，请重新测量", "Your temperature is high. Please measure again."),
    "fever": Prompt("体温异常，请稍候，工作人员马上处理", "Your temperature is too high. Please wait for the guard."),
    "no_temperature": Prompt("未测到体温，请重新扫码并测温", "No temperature was taken. Please scan again and measure."),
    "out_of_range": Prompt("未测到有效体温，请靠近重新测量", "Could not read your temperature. Please come closer and measure again."),
    "invalid_pass": Prompt("无效通行证", "This is not a valid pass."),
    "code_replayed": Prompt("二维码已失效，请出示手机上实时的通行码", "This code is no longer valid. Please show the live code on your phone."),
    "pass_expired": Prompt("通行证已失效，请联系工作人员", "This pass is no longer valid. Please see the guard."),
    "not_yet_valid": Prompt("通行证尚未生效", "This pass is not valid yet."),
    "courier": Prompt("快递外卖请勿进入，请将物品放在指定位置", "Couriers and deliveries may not enter. Please leave parcels at the drop point."),
    "category_refused": Prompt("您的通行证不能进入", "This pass may not enter."),
    "outside_hours": Prompt("当前时段不能通行", "This pass is not valid at this hour."),
    "observation": Prompt("居家观察期未满，请勿外出", "Your home observation has not ended. Please do not go out."),
    "pcr_required": Prompt("请出示有效的核酸检测证明", "A recent negative test is required."),
    "health_code": Prompt("健康码异常，请联系工作人员", "Your health code does not allow entry. Please see the guard."),
    "guard_check": Prompt("请稍候，工作人员核验身份", "Please wait. The guard will check your pass."),
    "guard_rejected": Prompt("核验未通过，不能进入", "The guard has refused entry."),
    "passback_refused": Prompt("此通行证已在小区内，不能重复进入", "This pass is already inside. It cannot enter again."),
    "fever_hold": Prompt("体温异常尚未处理，请联系工作人员", "Your high temperature has not been cleared yet. Please see the guard."),
    "rule_refused": Prompt("不符合本小区的通行规定", "This pass does not meet the community's entry rules."),
    "reminder": Prompt("请出示通行证并测量体温", "Please show your pass and measure your temperature."),
    "close_door": Prompt("请随手关门", "Please close the door."),
}

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
