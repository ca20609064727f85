"""Words on the guard's page, in Chinese and English.

Every code the lane can produce (decision, reason, alarm kind, device) has a short
plain phrase in both languages. The page shows the configured language large and
the other one smaller below it, so a guard who reads only one is never lost.
"""
from __future__ import annotations

from typing import Any

# code: (zh, en)
DECISIONS: dict[str, tuple[str, str]] = {
    "allow": ("通过", "Allowed"),
    "deny": ("禁止通行", "Denied"),
    "retest": ("请复测体温", "Measure again"),
    "challenge": ("请核验", "Guard check"),
}

REASONS: dict[str, tuple[str, str]] = {
    "ok": ("正常", "OK"),
    "guard_confirmed": ("保安已确认", "confirmed by the guard"),
    "exit_button": ("出门按钮", "exit button"),
    "high_temperature": ("体温偏高", "temperature high"),
    "passback": ("已在小区内（一证多人？）", "pass already inside"),
    "holder_check": ("抽查：核对本人", "random holder check"),
    "malformed": ("不是通行证", "not a pass"),
    "forged": ("伪造的通行证", "forged pass"),
    "unknown_pass": ("未登记的通行证", "pass not on the list"),
    "revoked": ("通行证已注销", "pass revoked"),
    "expired": ("通行证已过期", "pass expired"),
    "not_yet_valid": ("通行证尚未生效", "pass not valid yet"),
    "fever": ("发热", "fever"),
    "no_temperature": ("没有测体温", "no temperature taken"),
    "observation": ("居家观察期未满", "home observation not over"),
    "category_refused": ("此类人员不能进入", "may not enter"),
    "outside_hours": ("不在通行时段", "outside allowed hours"),
    "pcr_required": ("缺核酸证明", "no recent test"),
    "health_code": ("健康码异常", "health code not green"),
    "unknown_card": ("未登记的门卡", "unknown card"),
    "guard_rejected": ("保安已拒绝", "refused by the guard"),
    "fever_hold": ("发热未解除", "fever not cleared"),
    "door_locked": ("门已锁定，需保安放行", "door locked: the guard opens"),
    "rule": ("不符合小区规定", "community rule"),
    "replayed": ("过期的动态码", "replayed code"),
    "second_factor": ("缺门禁卡", "door card needed"),
}

ALARMS: dict[str, tuple[str, str]] = {
    "fever": ("发热报警", "Fever"),
    "door_forced": ("门被强行打开", "Door forced open"),
    "door_held": ("门没有关", "Door left open"),
    "sensor_fault": ("设备故障", "Device fault"),
    "passback": ("一证多人？", "Pass already inside"),
    "sync_backlog": ("事件上传积压", "Events not uploading"),
    "night_presence": ("夜间有人未扫码", "Someone at the gate at night"),
    "card_sweep": ("有人在试卡号", "Card numbers being tried"),
    "disk_full": ("存储已满", "Storage full"),
    "fire": ("火警：所有门已打开", "Fire alarm: every door open"),
}

# What the guard should do, under the alarm's name.
ALARM_ADVICE: dict[str, tuple[str, str]] = {
    "fever": ("请对方在旁等候，用手持测温枪复测，联系社区医生", "Ask the person to wait aside, re-check by hand, call the community doctor"),
    "door_forced": ("有人强行开门，请马上查看门口", "Someone forced the door open: go and look"),
    "door_held": ("门开着没关，请把门关好", "The door is left open: please close it"),
    "sensor_fault": ("设备故障：请人工核验每一位，并报修", "A device failed: check each person by hand and report it"),
    "passback": ("这张通行证已在小区内，请核对本人", "This pass is already inside: check the person"),
    "sync_backlog": ("与上级平台的连接可能断了，闸机照常工作，请报修", "The link to central may be down; the gate still works. Report it"),
    "night_presence": ("门口有人停留但没有扫码，请查看", "Someone is at the gate without showing a pass: go and look"),
    "card_sweep": ("短时间内多张未登记门卡或伪造码，请查看门口；确认后恢复正常速度",
                   "Many unknown cards or forged codes in a minute: go and look; acknowledge to restore normal speed"),
    "disk_full": ("存储空间已满，事件暂存内存，请报修", "The storage is full; events are held in memory. Report it"),
    "fire": ("火警：所有门已打开，请协助疏散；火警解除后门恢复原来的模式", "Fire alarm: every door is open; help people out. The doors go back when it clears"),
}

DEVICES: dict[str, tuple[str, str]] = {
    "camera": ("扫码摄像头", "camera"),
    "thermometer": ("测温仪", "thermometer"),
    "card_reader": ("读卡器", "card reader"),
    "relay": ("门锁", "door lock"),
    "door_contact": ("门磁", "door contact"),
    "exit_button": ("出门按钮", "exit button"),
    "pir": ("人体感应", "presence sensor"),
    "speaker": ("喇叭", "speaker"),
}

CREDENTIALS: dict[str, tuple[str, str]] = {
    "qr": ("扫码", "QR"),
    "card": ("刷卡", "card"),
}

UI: dict[str, tuple[str, str]] = {
    "title": ("门岗值守", "Gate guard"),
    "tab_live": ("现场", "Live"),
    "mode_title": ("门的模式（此通道）", "Door mode (this lane)"),
    "shift_start": ("交接班", "Start my shift"),
    "sound_hint": ("点一下屏幕开启报警声音", "Tap the screen to enable alarm sound"),
    "exit_opened": ("出门按钮开门", "Opened by the exit button"),
    "on_duty": ("值班", "On duty"),
    "handover_title": ("接班：上一班留下的事项", "Handover: what the last shift leaves open"),
    "handover_alarms": ("未处理的报警", "Alarms not yet acknowledged"),
    "handover_visitors": ("仍在小区内的访客", "Visitors still inside"),
    "handover_none": ("无", "None"),
    "handover_ok": ("接班", "Take over"),
    "mode_normal": ("正常：刷码开门", "Normal: a pass opens it"),
    "mode_open": ("常开", "Held open"),
    "mode_locked": ("锁定：保安放行", "Locked: the guard opens"),
    "mode_reason": ("请选择原因", "Choose the reason"),
    "mode_done": ("已切换", "Changed"),
    "tab_visitor": ("访客登记", "Visitor"),
    "tab_open": ("开门", "Open door"),
    "tab_today": ("今日", "Today"),
    "tab_search": ("查询", "Search"),
    "tab_health": ("设备状态", "Health"),
    "waiting": ("等待通行…", "Waiting for people…"),
    "recent": ("最近通行", "Recent"),
    "no_pass": ("无有效通行证", "No valid pass"),
    "lane": ("通道", "Lane"),
    "lane_in": ("进", "in"),
    "lane_out": ("出", "out"),
    "needs_you": ("请处理", "Needs you"),
    "check_person": ("请核对本人", "Check this person"),
    "ask_phone": ("请问对方手机尾号", "Ask for the last 4 digits of their phone"),
    "name": ("姓名", "Name"),
    "phone": ("手机", "Phone"),
    "phone_unknown": ("无手机记录", "no phone on file"),
    "unit": ("单元", "Unit"),
    "confirm": ("确认放行", "Confirm"),
    "reject": ("拒绝", "Reject"),
    "acknowledge": ("知道了", "Acknowledge"),
    "more_waiting": ("还有 {n} 项等待处理", "{n} more waiting"),
    "sending": ("正在发送…", "Sending…"),
    "open_door": ("开门", "Open the door"),
    "open_choose_lane": ("选择通道", "Choose the lane"),
    "open_choose_reason": ("选择开门原因", "Choose why"),
    "open_done": ("已开门", "Door opened"),
    "visitor_name": ("访客姓名", "Visitor's name"),
    "visitor_id4": ("身份证后4位", "ID card, last 4"),
    "visitor_phone4": ("手机后4位", "Phone, last 4"),
    "visitor_unit": ("被访单元", "Host unit"),
    "visitor_submit": ("登记并生成通行码", "Register and make the pass"),
    "visitor_show": ("请访客拍下此码", "Visitor: photograph this code"),
    "visitor_valid": ("有效至", "Valid until"),
    "visitor_print": ("打印", "Print"),
    "visitor_new": ("登记下一位", "Next visitor"),
    "visitor_nokey": ("本机没有签名密钥，不能登记访客（keys.signing）", "No signing key is configured (keys.signing): visitors cannot be registered here"),
    "today_allowed": ("通过（按类别）", "Allowed, by category"),
    "today_denied": ("拒绝（按原因）", "Denied, by reason"),
    "today_hours": ("每小时通行", "Traffic by hour"),
    "today_events": ("今日事件", "Events today"),
    "today_fevers": ("发热", "Fevers"),
    "today_challenges": ("核验", "Checks"),
    "none": ("无", "none"),
    "search_hint": ("输入单元、姓名或卡号", "Unit, name or card number"),
    "search_go": ("查询", "Search"),
    "search_empty": ("没有找到", "Nothing found"),
    "health_lanes": ("通道设备", "Lanes"),
    "health_data": ("数据", "Data"),
    "health_ok": ("正常", "OK"),
    "health_bad": ("故障", "FAULT"),
    "health_unreported": ("未报告", "no report yet"),
    "health_engine": ("通道程序", "lane engine"),
    "health_door": ("门", "door"),
    "door_locked": ("已锁", "locked"),
    "door_unlocked": ("已开锁", "unlocked"),
    "door_open": ("门开着", "open"),
    "door_closed": ("门关着", "closed"),
    "passes_age": ("通行证名单更新于", "Pass list updated"),
    "passes_count": ("通行证数量", "Passes"),
    "policy": ("通行规则版本", "Policy version"),
    "policy_applied": ("规则更新于", "Policy applied"),
    "upstream": ("上级平台连接", "Upstream"),
    "outbox": ("未经中心确认的事件", "Events not yet confirmed stored by central"),
    "disk": ("存储空间", "Disk"),
    "unknown": ("未知", "unknown"),
    "not_configured": ("未配置", "not configured"),
    "connected": ("已连接", "connected"),
    "disconnected": ("未连接", "not connected"),
    "ago": ("{t}前", "{t} ago"),
    "local_config": ("本机配置", "local config"),
    "stale": ("数据过期：通行证名单或规则已超过 {h} 小时未更新，闸机正在用旧数据判断", "Stale data: the pass list or policy is more than {h} h old. The gate is deciding on old data."),
    "offline": ("与闸机断开，正在重连…", "Lost the connection to the gate, reconnecting…"),
    "pin_title": ("请输入密码", "Enter the PIN"),
    "pin_wrong": ("密码不对，请再试", "Wrong PIN, try again"),
    "pin_ok": ("确定", "OK"),
    "cancel": ("取消", "Cancel"),
    "clear": ("清除", "Clear"),
    "sound_off": ("点一下屏幕开启报警声音", "Tap the screen to enable alarm sound"),
    "registered": ("访客登记", "visitor registered"),
    "override": ("手动开门", "manual open"),
    "by": ("操作人", "by"),
    "error": ("出错了", "Something went wrong"),
}


def pair(table: dict[str, tuple[str, str]], code: str | None) -> tuple[str, str]:
    if code is None:
        return ("", "")
    return table.get(code, (code, code))


def bundle() -> dict[str, Any]:
    """Everything the page's script needs to put words to codes, both languages."""
    return {
        "decisions": DECISIONS,
        "reasons": REASONS,
        "alarms": ALARMS,
        "advice": ALARM_ADVICE,
        "devices": DEVICES,
        "credentials": CREDENTIALS,
        "ui": UI,
    }
