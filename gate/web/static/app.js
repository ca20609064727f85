// The guard's page. Everything arrives over one server-sent event stream
// (/events): a snapshot first, then each change. Nothing is polled.
"use strict";

const BOOT = JSON.parse(document.getElementById("boot").textContent);
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const W = BOOT.words;
const L = BOOT.lang === "en" ? 1 : 0; // primary language index in the (zh, en) pairs
const S = 1 - L;                     // the other one

const state = { recent: [], challenges: [], alarms: [], doors: {}, health: null, today: null, connected: false };
window.gateState = state;                       // for tests
window.gateTone = { active: false, beeps: 0 };  // for tests: is the alarm tone sounding?

// ------------------------------------------------------------ words

function esc(s) {
  return String(s == null ? "" : s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function pair(table, code) { return (table && table[code]) || [code || "", code || ""]; }
function t(key, vars) {
  let s = pair(W.ui, key)[L];
  for (const k in (vars || {})) s = s.replace("{" + k + "}", vars[k]);
  return s;
}
function t2(key, vars) {
  let p = pair(W.ui, key).slice();
  for (const k in (vars || {})) p = p.map(s => s.replace("{" + k + "}", vars[k]));
  return p;
}
// Primary language large, the other below it.
function both(p, cls) { return `<span class="${cls || ""}">${esc(p[L])}<span class="sub">${esc(p[S])}</span></span>`; }
function cat(code) {
  const c = BOOT.categories[code];
  return c ? { colour: c.colour, p: [c.zh, c.en] } : { colour: "#546e7a", p: [t("no_pass"), t("no_pass")] };
}
function laneName(name) {
  const lane = BOOT.lanes.find(l => l.name === name);
  if (!lane) return name || "";
  if (lane.label) return lane.label;  // the lane's display name (lanes[].label)
  return `${t("lane")} ${name} · ${t(lane.direction === "out" ? "lane_out" : "lane_in")}`;
}
function fmtAge(sec) {
  if (sec == null) return t("unknown");
  const m = Math.round(sec / 60);
  let s;
  if (m < 60) s = L === 0 ? `${m} 分钟` : `${m} min`;
  else if (m < 48 * 60) s = L === 0 ? `${Math.floor(m / 60)} 小时` : `${Math.floor(m / 60)} h`;
  else s = L === 0 ? `${Math.floor(m / 1440)} 天` : `${Math.floor(m / 1440)} days`;
  return t("ago", { t: s });
}
function fmtBytes(n) {
  if (n == null) return t("unknown");
  const g = n / (1 << 30);
  return g >= 1 ? `${g.toFixed(1)} GB` : `${Math.round(n / (1 << 20))} MB`;
}

function applyStaticWords() {
  document.querySelectorAll("[data-t]").forEach(el => { el.innerHTML = both(pair(W.ui, el.dataset.t)); });
  document.getElementById("gate-id").textContent = BOOT.gate;
  document.getElementById("search-q").placeholder = t("search_hint");
}

// ------------------------------------------------------------ the live tile and the list

function tileHTML(d) {
  if (d.kind === "override") {
    return `<div class="meta"><span class="cat">${esc(t("override"))}</span><span>${esc(laneName(d.lane))} · ${esc(d.time)}</span></div>
      <div class="verdict override"><div class="word">${both(t2("open_done"))}</div>
      <div class="why">${esc(d.reason)} · ${esc(t("by"))} ${esc(d.who)}</div></div>`;
  }
  const c = d.reason === "exit_button" ? { colour: "#546e7a", p: pair(W.reasons, "exit_button") } : cat(d.category);
  const dec = pair(W.decisions, d.decision), why = pair(W.reasons, d.reason);
  const mark = { allow: "✔ ", deny: "✖ ", retest: "↻ ", challenge: "? " }[d.decision] || "";
  const temp = d.temperature_c == null ? "" : `<span class="temp ${d.decision === "retest" || d.reason === "fever" ? "hot" : ""}">${d.temperature_c.toFixed(1)} °C</span>`;
  const who = d.reason === "exit_button" ? t("exit_opened")
    : d.holder || (d.pass_id ? d.pass_id : (d.card ? `${pair(W.credentials, "card")[L]} ${d.card}` : t("no_pass")));
  return `<div class="meta"><span class="cat">${both(c.p)}</span><span>${esc(laneName(d.lane))} · ${esc(d.time)}</span></div>
    <div class="who">${esc(who)}</div>
    <div class="meta"><span class="unit">${esc(d.unit || "")}</span>${temp}</div>
    <div class="verdict ${esc(d.decision)}"><div class="word">${esc(mark)}${esc(dec[L])} <span class="sub" style="display:inline;font-size:0.45em">${esc(dec[S])}</span></div>
    <div class="why">${both(why)}</div>${d.presence === "stale" ? `<div class="why stale-presence">⚠ ${both(t2("presence_stale"))}</div>` : ""}</div>`;
}

function renderTile() {
  const el = document.getElementById("tile");
  const d = state.recent[state.recent.length - 1];
  if (!d) {
    el.className = "tile idle";
    el.style.removeProperty("--cat");
    el.innerHTML = both(t2("waiting"));
    return;
  }
  el.className = `tile ${d.kind === "override" ? "override" : "d-" + d.decision}`;
  el.style.setProperty("--cat", d.kind === "override" ? "#0d47a1" : cat(d.category).colour);
  el.innerHTML = tileHTML(d);
  el.dataset.id = d.id;
}

function renderRecent() {
  const ol = document.getElementById("recent");
  const rows = state.recent.slice().reverse().map(d => {
    if (d.kind === "override") {
      return `<li data-id="${esc(d.id)}"><span class="t">${esc(d.time)}<br>${esc(d.lane)}</span><span class="chip" style="--cat:#0d47a1"></span>
        <span class="n">${esc(d.reason)}<small>${esc(t("by"))} ${esc(d.who)}</small></span><span class="d override">${esc(t("override"))}</span></li>`;
    }
    const c = cat(d.category);
    const name = d.reason === "exit_button" ? t("exit_opened")
      : [d.holder || d.pass_id || (d.card ? "#" + d.card : t("no_pass")), d.unit].filter(Boolean).join("  ");
    return `<li data-id="${esc(d.id)}"><span class="t">${esc(d.time)}<br>${esc(d.lane)}</span><span class="chip" style="--cat:${esc(c.colour)}"></span>
      <span class="n">${esc(name)}<small>${esc(pair(W.reasons, d.reason)[L])}${d.temperature_c == null ? "" : " · " + esc(d.temperature_c.toFixed(1)) + "°C"}</small></span>
      <span class="d ${esc(d.decision)}">${esc(pair(W.decisions, d.decision)[L])}</span></li>`;
  });
  ol.innerHTML = rows.join("");
}

// ------------------------------------------------------------ needs you

let busy = {}; // id -> true while an answer is on its way
let parked = null; // id of the waiting item the guard put aside by opening another tab

function renderNeeds() {
  const box = document.getElementById("needs"), card = document.getElementById("needs-card");
  // Alarms that sound come first, then checks, oldest first within each.
  const items = state.alarms.filter(a => a.tone).map(a => ({ kind: "alarm", v: a }))
    .concat(state.challenges.map(c => ({ kind: "challenge", v: c })))
    .concat(state.alarms.filter(a => !a.tone).map(a => ({ kind: "alarm", v: a })));
  const bar = document.getElementById("needs-bar");
  if (!items.length) {
    box.hidden = true; bar.hidden = true; parked = null;
    card.innerHTML = ""; card.dataset.id = ""; document.body.classList.remove("needs-on"); updateTone(); return;
  }
  const first = items[0];
  document.body.classList.add("needs-on");
  if (parked !== null && parked !== first.v.id) parked = null; // something new: it comes to the front again
  if (parked !== null) {
    // The guard went to another tab (to open the door, say): a bar says what waits, the tone goes on.
    box.hidden = true; bar.hidden = false;
    bar.className = first.kind;
    bar.innerHTML = "⚠ " + both(first.kind === "alarm" ? pair(W.alarms, first.v.kind) : t2("check_person")) + (items.length > 1 ? ` (${items.length})` : "");
    updateTone(); return;
  }
  box.hidden = false; bar.hidden = true;
  if (card.dataset.id !== first.v.id + first.kind + (busy[first.v.id] ? "b" : "")) {
    card.dataset.id = first.v.id + first.kind + (busy[first.v.id] ? "b" : "");
    card.innerHTML = first.kind === "alarm" ? alarmHTML(first.v) : challengeHTML(first.v);
    card.className = first.kind === "alarm" ? "card-alarm" : "card-challenge";
    card.dataset.kind = first.kind;
    card.dataset.item = first.v.id;
  }
  const more = items.length - 1;
  document.getElementById("needs-more").innerHTML = more > 0 ? both(t2("more_waiting", { n: more })) : "";
  updateTone();
}

function challengeHTML(c) {
  const k = cat(c.category);
  const why = pair(W.reasons, c.reason);
  const phone = c.phone_masked ? esc(c.phone_masked) : esc(t("phone_unknown"));
  const dis = busy[c.challenge_id] ? "disabled" : "";
  return `<div class="card-head"><span class="card-title">${esc(t2("check_person")[0 + L])} <small>${esc(t2("check_person")[S])}</small></span><span>${esc(laneName(c.lane))} · ${esc(c.time)}</span></div>
    <div class="card-why"><span class="cat-chip" style="--cat:${esc(k.colour)}">${esc(k.p[L])} ${esc(k.p[S])}</span> <b>${esc(why[L])}</b> <small>${esc(why[S])}</small></div>
    <div class="card-person">
      <span class="k">${esc(t("name"))}</span><span class="v name">${esc(c.holder || c.pass_id || "—")}</span>
      <span class="k">${esc(t("unit"))}</span><span class="v">${esc(c.unit || "—")}</span>
      <span class="k">${esc(t("phone"))}</span><span class="v" id="challenge-phone">${phone}</span>
      <div class="card-ask">${both(t2("ask_phone"))}</div>
    </div>
    <div class="card-buttons">
      <button class="big confirm" id="btn-confirm" data-challenge="${esc(c.challenge_id)}" ${dis}>✔ ${both(t2("confirm"))}</button>
      <button class="big reject" id="btn-reject" data-challenge="${esc(c.challenge_id)}" ${dis}>✖ ${both(t2("reject"))}</button>
    </div>`;
}

function alarmHTML(a) {
  const k = pair(W.alarms, a.kind);
  const dis = busy[a.id] ? "disabled" : "";
  return `<div class="card-head"><span>${esc(laneName(a.lane))}</span><span>${esc(a.time)}</span></div>
    <div class="card-title">⚠ ${esc(k[L])}<span class="sub">${esc(k[S])}</span></div>
    <div class="card-detail">${esc([a.holder, a.unit].filter(Boolean).join("  "))}  ${esc(a.detail || "")}</div>
    <div class="card-advice">${both(pair(W.advice, a.kind))}</div>
    <div class="card-buttons one"><button class="big ack" id="btn-ack" data-alarm="${esc(a.id)}" ${dis}>${both(t2("acknowledge"))}</button></div>`;
}

document.getElementById("needs-card").addEventListener("click", async ev => {
  const b = ev.target.closest("button");
  if (!b || b.disabled) return;
  if (b.dataset.challenge) {
    const id = b.dataset.challenge;
    busy[id] = true; renderNeeds();
    const ok = await act("/api/challenge", { challenge_id: id, answer: b.id === "btn-confirm" ? "confirm" : "reject" });
    if (!ok) { delete busy[id]; renderNeeds(); }
  } else if (b.dataset.alarm) {
    const id = b.dataset.alarm;
    busy[id] = true; renderNeeds();
    const ok = await act("/api/ack", { alarm_id: id });
    if (!ok) { delete busy[id]; renderNeeds(); }
  }
});

// ------------------------------------------------------------ the alarm tone (WebAudio, made here)

let audio = null, toneTimer = null;
function audioCtx() {
  if (!audio) {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return null;
    audio = new AC();
  }
  return audio;
}
function beep() {
  const ctx = audioCtx();
  if (!ctx) return;
  const now = ctx.currentTime;
  // Two falling tones, loud enough to hear across a gatehouse, then a pause.
  [[988, 0], [740, 0.28]].forEach(([f, at]) => {
    const o = ctx.createOscillator(), g = ctx.createGain();
    o.type = "square"; o.frequency.value = f;
    g.gain.setValueAtTime(0.0001, now + at);
    g.gain.exponentialRampToValueAtTime(0.35, now + at + 0.02);
    g.gain.exponentialRampToValueAtTime(0.0001, now + at + 0.25);
    o.connect(g).connect(ctx.destination);
    o.start(now + at); o.stop(now + at + 0.27);
  });
  window.gateTone.beeps++;
}
function updateTone() {
  const want = state.alarms.some(a => a.tone && !busy[a.id]);
  window.gateTone.active = want;
  if (want && !toneTimer) { beep(); toneTimer = setInterval(beep, 1200); }
  if (!want && toneTimer) { clearInterval(toneTimer); toneTimer = null; }
  const ctx = want ? audioCtx() : audio;
  const hint = document.getElementById("sound-hint");
  hint.hidden = !(want && ctx && ctx.state === "suspended");
  if (!hint.hidden) hint.innerHTML = both(t2("sound_hint"));
}
// Browsers keep sound off until the page is touched (the kiosk flag lifts this; see README).
document.addEventListener("pointerdown", () => { if (audio && audio.state === "suspended") audio.resume().then(updateTone); }, true);

// ------------------------------------------------------------ actions (CSRF + password/PIN)

let pinResolve = null;
async function post(url, data) {
  const r = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
    body: JSON.stringify(data),
  });
  let body = {};
  try { body = await r.json(); } catch (e) { /* empty */ }
  return { status: r.status, body };
}
// Post an action; ask for the PIN when the page is locked. Resolves to the body or null.
async function act(url, data) {
  let res = await post(url, data);
  while (res.status === 401 && res.body.error === "locked") {
    const secret = await askPin(res.body.wrong, res.body.locked_for);
    if (secret == null) return null;
    res = await post(url, Object.assign({}, data, { secret }));
  }
  if (res.status >= 200 && res.status < 300) { refreshLock(true); return res.body; }
  if (res.status === 409) return null; // already answered elsewhere: the stream will tell
  showError(res.body.message || t("error"), res.body.field);
  return null;
}
function askPin(wrong, lockedFor) {
  const box = document.getElementById("pin"), input = document.getElementById("pin-value"), err = document.getElementById("pin-error");
  input.value = "";
  err.hidden = !wrong;
  err.textContent = wrong ? t("pin_wrong") + (lockedFor ? ` (${lockedFor} s)` : "") : "";
  box.hidden = false;
  input.focus();
  return new Promise(resolve => { pinResolve = resolve; });
}
function closePin(value) {
  document.getElementById("pin").hidden = true;
  const r = pinResolve; pinResolve = null;
  if (r) r(value);
}
function buildKeys(el, keys, onKey) {
  el.innerHTML = keys.map(k => `<button type="button" data-k="${esc(k[0])}" class="${k[2] || ""}">${esc(k[1])}</button>`).join("");
  el.addEventListener("click", ev => { const b = ev.target.closest("button"); if (b) onKey(b.dataset.k); });
}
const DIGITS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"].map(d => [d, d]);
buildKeys(document.getElementById("pin-keys"),
  DIGITS.concat([["back", "⌫"], ["clear", t("clear")], ["cancel", t("cancel"), "cancel"], ["ok", t("pin_ok"), "ok"]]),
  k => {
    const input = document.getElementById("pin-value");
    if (k === "ok") closePin(input.value);
    else if (k === "cancel") closePin(null);
    else if (k === "back") input.value = input.value.slice(0, -1);
    else if (k === "clear") input.value = "";
    else input.value += k;
  });
document.getElementById("pin-form").addEventListener("submit", ev => { ev.preventDefault(); closePin(document.getElementById("pin-value").value); });
document.getElementById("pin-value").addEventListener("keydown", ev => { if (ev.key === "Escape") closePin(null); });

let unlockedHere = false;
function refreshLock(unlocked) {
  if (unlocked !== undefined) unlockedHere = unlocked;
  const b = document.getElementById("lock-btn");
  b.hidden = !(BOOT.auth_required && unlockedHere);
  b.textContent = L === 0 ? "🔒 锁定" : "🔒 Lock";
}
document.getElementById("lock-btn").addEventListener("click", async () => { await post("/api/lock", {}); refreshLock(false); });

let errorTimer = null;
function showError(msg, field) {
  const view = currentView === "visitor" ? document.getElementById("visitor-error") : document.getElementById("open-done");
  view.className = "notice bad"; view.textContent = msg; view.hidden = false;
  document.querySelectorAll("input.bad").forEach(i => i.classList.remove("bad"));
  if (field) { const i = document.querySelector(`#visitor-form [name="${field}"]`); if (i) i.classList.add("bad"); }
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { view.hidden = true; }, 8000);
}

// ------------------------------------------------------------ tabs

let currentView = "live";
function show(view) {
  currentView = view;
  // The tabs stay within reach while something needs the guard: another tab parks it behind a bar.
  const waiting = document.getElementById("needs-card").dataset.item;
  parked = view === "live" ? null : (parked || (document.body.classList.contains("needs-on") ? waiting || null : null));
  renderNeeds();
  document.querySelectorAll(".view").forEach(v => { v.hidden = v.id !== "view-" + view; });
  document.querySelectorAll(".tab").forEach(b => b.classList.toggle("active", b.dataset.view === view));
  if (view === "today") renderToday();
  if (view === "health") renderHealthDetail();
}
document.getElementById("needs-bar").addEventListener("click", () => show("live"));
document.getElementById("tabs").addEventListener("click", ev => { const b = ev.target.closest("button"); if (b) show(b.dataset.view); });

// ------------------------------------------------------------ on-screen keypad for digits

let padTarget = null;
const PADS = {
  digits: DIGITS,
  idx: DIGITS.concat([["X", "X"]]),
  unit: DIGITS.concat([["-", "-"]]),
};
function openPad(input) {
  padTarget = input;
  const keys = PADS[input.dataset.keypad].concat([["back", "⌫"], ["clear", t("clear")], ["kbd", "⌨", "cancel"], ["ok", t("pin_ok"), "ok"]]);
  const el = document.getElementById("keypad-keys");
  const fresh = el.cloneNode(false); el.replaceWith(fresh);
  buildKeys(fresh, keys, k => {
    if (k === "ok") { closePad(); return; }
    if (k === "kbd") { const i = padTarget; closePad(); i.dataset.kbd = "1"; i.focus(); return; }
    if (k === "back") padTarget.value = padTarget.value.slice(0, -1);
    else if (k === "clear") padTarget.value = "";
    else if (padTarget.value.length < (padTarget.maxLength > 0 ? padTarget.maxLength : 32)) padTarget.value += k;
    document.getElementById("keypad-value").textContent = padTarget.value;
  });
  document.getElementById("keypad-label").textContent = input.closest("label") ? input.closest("label").querySelector("span").textContent : t("search_hint");
  document.getElementById("keypad-value").textContent = input.value;
  document.getElementById("keypad").hidden = false;
}
function closePad() { document.getElementById("keypad").hidden = true; padTarget = null; }
document.querySelectorAll("input[data-keypad]").forEach(i => {
  i.addEventListener("pointerdown", ev => { if (!i.dataset.kbd) { ev.preventDefault(); openPad(i); } });
  i.addEventListener("blur", () => { delete i.dataset.kbd; });
});

// ------------------------------------------------------------ visitor registration

function renderVisitorLengths() {
  // 2 h, half a day, today: big choices, the config's default ([visitors] default_length) preselected.
  const box = document.getElementById("visitor-length");
  for (const len of BOOT.visitor_lengths) {
    const label = document.createElement("label");
    label.className = "choice";
    const input = document.createElement("input");
    input.type = "radio"; input.name = "length"; input.value = len; input.required = true;
    input.defaultChecked = input.checked = len === BOOT.visitor_default_length;
    const span = document.createElement("span");
    span.innerHTML = both(t2("visit_" + len));
    label.append(input, span);
    box.append(label);
  }
}
function renderVisitorReady() {
  const nokey = document.getElementById("visitor-nokey");
  nokey.hidden = BOOT.visitor_ready;
  if (!BOOT.visitor_ready) {
    nokey.innerHTML = both(t2("visitor_nokey")) + `<div class="sub">${esc(BOOT.visitor_note)}</div>`;
    document.querySelector("#visitor-form button[type=submit]").disabled = true;
  }
}
document.getElementById("visitor-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  const f = ev.target, btn = f.querySelector("button[type=submit]");
  const data = Object.fromEntries(new FormData(f).entries());
  document.getElementById("visitor-error").hidden = true;
  document.querySelectorAll("input.bad").forEach(i => i.classList.remove("bad"));
  btn.disabled = true;
  const res = await act("/api/visitor", data);
  btn.disabled = !BOOT.visitor_ready;
  if (!res) return;
  const c = cat("visitor");
  document.getElementById("visitor-qr").src = res.qr;
  document.getElementById("visitor-qr").dataset.pass = res.pass_id;
  const chip = document.getElementById("visitor-cat");
  chip.style.setProperty("--cat", c.colour); chip.textContent = `${c.p[L]} ${c.p[S]}`;
  document.getElementById("visitor-who").textContent = res.holder;
  document.getElementById("visitor-unit").textContent = `${t("visitor_unit")} ${res.unit}`;
  document.getElementById("visitor-valid").textContent = `${t("visitor_valid")} ${res.valid_until_local}`;
  f.hidden = true;
  document.getElementById("visitor-result").hidden = false;
});
document.getElementById("visitor-again").addEventListener("click", () => {
  const f = document.getElementById("visitor-form");
  f.reset(); f.hidden = false;
  document.getElementById("visitor-result").hidden = true;
  document.getElementById("visitor-qr").removeAttribute("src");
});
document.getElementById("visitor-print").addEventListener("click", () => window.print());

// ------------------------------------------------------------ manual open

let openLane = null;
function renderOpen() {
  const lanes = BOOT.lanes.filter(l => l.relay);
  if (!openLane && lanes.length) openLane = lanes[0].name;
  document.getElementById("open-lanes").innerHTML = lanes.map(l =>
    `<button data-lane="${esc(l.name)}" class="${l.name === openLane ? "chosen" : ""}">${esc(laneName(l.name))}</button>`).join("");
  document.getElementById("open-reasons").innerHTML = BOOT.open_reasons.map(r =>
    `<button data-reason="${esc(r)}">${esc(r)}</button>`).join("");
}
document.getElementById("open-lanes").addEventListener("click", ev => {
  const b = ev.target.closest("button"); if (!b) return;
  openLane = b.dataset.lane; chosenMode = null; renderOpen(); renderModes();
});
document.getElementById("open-reasons").addEventListener("click", async ev => {
  const b = ev.target.closest("button"); if (!b || !openLane) return;
  b.disabled = true;
  const res = await act("/api/open", { lane: openLane, reason: b.dataset.reason });
  b.disabled = false;
  if (res) {
    const done = document.getElementById("open-done");
    done.className = "notice ok"; done.innerHTML = both(t2("open_done")) + ` ${esc(laneName(openLane))} · ${esc(b.dataset.reason)}`;
    done.hidden = false;
    clearTimeout(errorTimer); errorTimer = setTimeout(() => { done.hidden = true; }, 6000);
  }
});

// ------------------------------------------------------------ door mode (normal, held open, locked)

let chosenMode = null;
function laneMode(name) {
  const l = state.health && (state.health.lanes || []).find(x => x.name === name);
  return (l && l.door && l.door.mode) || "normal";
}
function renderModes() {
  const now = openLane ? laneMode(openLane) : "normal";
  document.getElementById("mode-choices").innerHTML = ["normal", "open", "locked"].map(m =>
    `<button data-mode="${m}" class="${m === (chosenMode || now) ? "chosen" : ""}">${both(t2("mode_" + m))}</button>`).join("");
  const reasons = document.getElementById("mode-reasons");
  reasons.hidden = !chosenMode;
  reasons.innerHTML = `<p>${both(t2("mode_reason"))}</p>` + BOOT.mode_reasons.map(r =>
    `<button data-reason="${esc(r)}">${esc(r)}</button>`).join("");
}
document.getElementById("mode-choices").addEventListener("click", ev => {
  const b = ev.target.closest("button"); if (!b || !openLane) return;
  chosenMode = b.dataset.mode; renderModes();
});
document.getElementById("mode-reasons").addEventListener("click", async ev => {
  const b = ev.target.closest("button[data-reason]"); if (!b || !openLane || !chosenMode) return;
  b.disabled = true;
  const res = await act("/api/mode", { lane: openLane, mode: chosenMode, reason: b.dataset.reason });
  b.disabled = false;
  if (res) {
    const done = document.getElementById("open-done");
    done.className = "notice ok"; done.innerHTML = both(t2("mode_done")) + ` ${esc(laneName(openLane))} · ${both(t2("mode_" + chosenMode))} · ${esc(b.dataset.reason)}`;
    done.hidden = false;
    chosenMode = null; renderModes();
    clearTimeout(errorTimer); errorTimer = setTimeout(() => { done.hidden = true; }, 6000);
  }
});

// ------------------------------------------------------------ shifts: a named guard takes over

function showDuty(name) {
  const d = document.getElementById("duty");
  d.hidden = !name; if (name) d.innerHTML = `${esc(t("on_duty"))} ${esc(name)}`;
}
document.getElementById("shift-btn").hidden = !BOOT.named_guards;
showDuty(BOOT.on_duty);
document.getElementById("shift-btn").addEventListener("click", async () => {
  const res = await act("/api/shift", {});
  if (!res) return;
  showDuty(res.guard);
  const none = `<li>${both(t2("handover_none"))}</li>`;
  document.getElementById("handover-title").innerHTML = both(t2("handover_title")) + (res.previous ? ` · ${esc(res.previous)} → ${esc(res.guard)}` : ` · ${esc(res.guard)}`);
  document.getElementById("handover-alarms").innerHTML = res.alarms.map(a =>
    `<li>${esc(a.time)} ${esc(laneName(a.lane))} ${both(pair(W.alarms, a.kind))} ${esc(a.detail || "")}</li>`).join("") || none;
  document.getElementById("handover-visitors").innerHTML = res.visitors.map(v =>
    `<li>${esc(v.holder || "")} · ${esc(v.unit || "")} · ${esc(v.since || "")}–${esc(v.until || "")}</li>`).join("") || none;
  document.getElementById("handover").hidden = false;
});
document.getElementById("handover-ok").addEventListener("click", () => { document.getElementById("handover").hidden = true; });

// ------------------------------------------------------------ today

function renderToday() {
  const d = state.today;
  if (!d) return;
  const sum = o => Object.values(o).reduce((a, b) => a + b, 0);
  document.getElementById("today-totals").innerHTML =
    `<div>${esc(pair(W.decisions, "allow")[L])}<b class="ok-t">${sum(d.allowed)}</b></div>` +
    `<div>${esc(pair(W.decisions, "deny")[L])}<b class="bad-t">${sum(d.denied)}</b></div>` +
    `<div>${esc(t("today_fevers"))}<b>${d.fevers}</b></div>` +
    `<div>${esc(t("today_challenges"))}<b>${d.challenges}</b></div><div>${esc(d.date)}</div>`;
  const allowed = Object.entries(d.allowed).sort((a, b) => b[1] - a[1]);
  document.getElementById("today-allowed").innerHTML = allowed.length ? allowed.map(([k, n]) => {
    const c = cat(k === "none" ? null : k);
    const label = k === "none" ? pair(W.reasons, "exit_button") : c.p;
    return `<li><span><span class="chip" style="--cat:${esc(c.colour)}"></span>${esc(label[L])} <small>${esc(label[S])}</small></span><b>${n}</b></li>`;
  }).join("") : `<li>${esc(t("none"))}</li>`;
  const denied = Object.entries(d.denied).sort((a, b) => b[1] - a[1]);
  document.getElementById("today-denied").innerHTML = denied.length ? denied.map(([k, n]) => {
    const p = pair(W.reasons, k);
    return `<li><span>${esc(p[L])} <small>${esc(p[S])}</small></span><b>${n}</b></li>`;
  }).join("") : `<li>${esc(t("none"))}</li>`;
  const max = Math.max(1, ...d.by_hour);
  const hourNow = new Date().getHours();
  document.getElementById("today-chart").innerHTML = d.by_hour.map((n, h) =>
    `<div class="bar ${h === hourNow ? "now" : ""}" title="${h}:00 ${n}"><span>${n || ""}</span><i style="height:${Math.round(100 * n / max)}%"></i><span>${h}</span></div>`).join("");
}

// ------------------------------------------------------------ search

document.getElementById("search-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  const q = document.getElementById("search-q").value.trim();
  const out = document.getElementById("search-results");
  if (!q) { out.innerHTML = ""; return; }
  const r = await fetch("/api/search?q=" + encodeURIComponent(q), { credentials: "same-origin" });
  const body = await r.json();
  if (!body.results || !body.results.length) { out.innerHTML = `<p class="notice bad">${esc(t("search_empty"))}</p>`; return; }
  out.innerHTML = `<table class="results">` + body.results.map(x => {
    const c = cat(x.category);
    const what = x.type === "registration" ? `<td>${esc(t("registered"))}</td>`
      : `<td class="${esc(x.decision)}">${esc(pair(W.decisions, x.decision)[L])}</td>`;
    return `<tr><td>${esc(x.date)} ${esc(x.time)}</td><td>${esc(x.lane || "")}</td>
      <td><span class="cat-chip" style="--cat:${esc(c.colour)};font-size:1.125rem">${esc(c.p[L])}</span></td>
      <td>${esc(x.holder || x.pass_id || "")}</td><td>${esc(x.unit || "")}</td><td>${esc(x.card || "")}</td>
      ${what}<td>${esc(x.reason ? pair(W.reasons, x.reason)[L] : "")}</td>
      <td>${x.temperature_c == null ? "" : esc(Number(x.temperature_c).toFixed(1)) + "°"}</td></tr>`;
  }).join("") + `</table>`;
});

// ------------------------------------------------------------ health

function renderHealthPill() {
  const h = state.health, pill = document.getElementById("health-pill"), banner = document.getElementById("stale-banner");
  if (!h) { pill.hidden = true; return; }
  pill.hidden = false;
  const faults = [];
  h.lanes.forEach(l => {
    if (!l.alive) faults.push(`${l.name}: ${t("health_engine")}`);
    l.devices.forEach(d => { if (d.ok === false) faults.push(`${l.name}: ${pair(W.devices, d.device)[L]}`); });
  });
  // One plain phrase: the worst thing first.
  let cls = "", text = L === 0 ? "设备正常" : "All devices OK";
  if (faults.length) { cls = "bad"; text = `${t("health_bad")}: ${faults.join(", ")}`; }
  else if (h.stale.stale) { cls = "warn"; text = L === 0 ? "数据过期" : "Stale data"; }
  else if (h.disk.low) { cls = "warn"; text = L === 0 ? "存储空间不足" : "Disk nearly full"; }
  else if (h.upstream.configured && !h.upstream.connected) { cls = "warn"; text = L === 0 ? "上级平台未连接" : "Upstream offline"; }
  pill.className = "pill " + cls;
  pill.textContent = text;
  banner.hidden = !h.stale.stale;
  if (h.stale.stale) banner.innerHTML = "⚠ " + both(t2("stale", { h: h.stale.after_h }));
  if (currentView === "health") renderHealthDetail();
}

// Both languages on the health tab: the one who services the gate may read only one.
const tb = key => both(t2(key));
function renderHealthDetail() {
  const h = state.health, el = document.getElementById("health-detail");
  if (!h) return;
  const okWord = ok => ok === true ? `<span class="ok-t">${tb("health_ok")}</span>`
    : ok === false ? `<span class="bad-t">${tb("health_bad")}</span>` : `<span class="unk-t">${tb("health_unreported")}</span>`;
  const lanes = h.lanes.map(l => {
    const door = l.door ? `<div class="hline"><span>${tb("health_door")}</span><span>${l.door.relay ? esc(t(l.door.unlocked ? "door_unlocked" : "door_locked")) : ""}${l.door.contact ? " · " + esc(t(l.door.open ? "door_open" : "door_closed")) : ""}</span></div>` : "";
    return `<div class="hbox"><h3>${esc(laneName(l.name))}</h3>
      <div class="hline"><span>${tb("health_engine")}</span>${okWord(l.alive)}</div>
      ${l.devices.map(d => `<div class="hline"><span>${both(pair(W.devices, d.device))}</span><span>${d.reports || d.ok !== null ? okWord(d.ok) : '<span class="unk-t">—</span>'} <small>${esc(d.ok === false ? d.detail : "")}</small></span></div>`).join("")}
      ${door}</div>`;
  }).join("");
  const up = h.upstream.configured ? (h.upstream.connected ? `<span class="ok-t">${tb("connected")}</span>` : `<span class="bad-t">${tb("disconnected")}</span> <small>${esc(h.upstream.detail)}</small>`)
    : `<span class="unk-t">${tb("not_configured")}</span>`;
  const passesAge = h.passes.synced_at ? `<span class="${h.stale.what.includes("passes") ? "warn-t" : ""}">${esc(fmtAge(h.passes.age_s))}</span>` : `<span class="unk-t">${tb("unknown")}</span>`;
  const polAge = h.policy.applied_at ? `<span class="${h.stale.what.includes("policy") ? "warn-t" : ""}">${esc(fmtAge(h.policy.age_s))}</span>` : `<span class="unk-t">${tb("unknown")}</span>`;
  const disk = h.disk.free_bytes == null ? `<span class="bad-t">${tb("unknown")}</span>` :
    `<span class="${h.disk.low ? "bad-t" : ""}">${esc(fmtBytes(h.disk.free_bytes))} (${h.disk.free_pct}%)</span>`;
  el.innerHTML = `<div class="hgrid">${lanes}<div class="hbox"><h3>${tb("health_data")}</h3>
      <div class="hline"><span>${tb("passes_age")}</span>${passesAge}</div>
      <div class="hline"><span>${tb("passes_count")}</span><span>${h.passes.count}${h.passes.version ? " · v" + esc(h.passes.version) : ""}</span></div>
      <div class="hline"><span>${tb("policy")}</span><span>${esc(h.policy.version)}${h.policy.source === "config" ? " <small>(" + tb("local_config") + ")</small>" : ""}</span></div>
      <div class="hline"><span>${tb("policy_applied")}</span>${polAge}</div>
      <div class="hline"><span>${tb("upstream")}</span><span>${up}</span></div>
      <div class="hline"><span>${tb("outbox")}</span><span>${h.outbox.backlog}</span></div>
      <div class="hline"><span>${tb("disk")}</span>${disk}</div></div></div>`;
}

// ------------------------------------------------------------ the stream

function connect() {
  const es = new EventSource("/events");
  const on = (name, fn) => es.addEventListener(name, ev => { fn(JSON.parse(ev.data)); });
  on("snapshot", s => {
    state.recent = s.recent || []; state.challenges = s.challenges || []; state.alarms = s.alarms || [];
    state.doors = s.doors || {}; state.health = s.health || null; state.today = s.today || null;
    busy = {};
    renderTile(); renderRecent(); renderNeeds(); renderHealthPill(); if (currentView === "today") renderToday();
  });
  on("decision", d => {
    state.recent.push(d);
    if (state.recent.length > 20) state.recent.splice(0, state.recent.length - 20);
    renderTile(); renderRecent();
  });
  on("challenges", list => {
    state.challenges = list;
    const open = new Set(list.map(c => c.challenge_id));
    Object.keys(busy).forEach(id => { if (!open.has(id) && !state.alarms.some(a => a.id === id)) delete busy[id]; });
    renderNeeds();
  });
  on("alarms", list => {
    state.alarms = list;
    const open = new Set(list.map(a => a.id));
    Object.keys(busy).forEach(id => { if (!open.has(id) && !state.challenges.some(c => c.challenge_id === id)) delete busy[id]; });
    renderNeeds();
  });
  on("door", d => { state.doors[d.lane] = d; });
  on("health", h => { state.health = h; renderHealthPill(); if (!chosenMode) renderModes(); });
  on("today", d => { state.today = d; if (currentView === "today") renderToday(); });
  es.onopen = () => { state.connected = true; document.getElementById("conn").hidden = true; };
  es.onerror = () => {
    state.connected = false;
    const c = document.getElementById("conn");
    c.textContent = t("offline"); c.hidden = false;
    // A refused stream (every stream taken: 503) is not retried by the browser itself.
    if (es.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
  };
}

function tick() {
  const d = new Date();
  // The gate's time zone, whatever the kiosk's is set to: the times on the page are the gate's.
  let text;
  try { text = d.toLocaleTimeString(L === 0 ? "zh-CN" : "en-GB", { hour12: false, timeZone: BOOT.timezone }); }
  catch (e) { text = d.toLocaleTimeString(L === 0 ? "zh-CN" : "en-GB", { hour12: false }); }
  document.getElementById("clock").textContent = text;
}

applyStaticWords();
renderVisitorLengths();
renderVisitorReady();
renderOpen();
renderModes();
renderTile();
refreshLock(false);
tick(); setInterval(tick, 1000);
connect();
