// The community map's script: choosing a status shows the map at once (the Show button
// does the same without a script), and the days box only matters for "not seen".
"use strict";
(function () {
  const form = document.getElementById("map-choice");
  if (!form) return;
  const status = document.getElementById("status");
  const days = document.getElementById("days-label");
  const sync = () => { days.hidden = status.value !== "unseen"; };
  sync();
  status.addEventListener("change", () => { sync(); form.submit(); });
})();
