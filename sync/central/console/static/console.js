// The office console's script: the gates board follows the server's live stream
// (server-sent events); everything else is plain pages and forms.
"use strict";
(function () {
  const board = document.getElementById("board");
  if (!board || !window.EventSource) return;
  const live = document.getElementById("live");
  const lost = document.getElementById("lost");
  const state = (window.consoleState = { connected: false, updates: 0 });
  const es = new EventSource(board.dataset.live);
  es.onopen = () => { state.connected = true; live.classList.add("on"); lost.hidden = true; };
  es.onerror = () => { state.connected = false; live.classList.remove("on"); lost.hidden = false; };
  es.addEventListener("board", (e) => {
    board.innerHTML = JSON.parse(e.data).html;
    state.updates += 1;
  });
})();
