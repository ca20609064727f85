// The roster job page: while the job runs, its progress is polled and shown; when it is
// done the page is loaded again (the server renders the diff).
"use strict";
(function () {
  const job = document.getElementById("job");
  if (!job) return;
  const bar = document.getElementById("job-progress");
  const count = document.getElementById("job-count");
  const state = (window.rosterJob = { polls: 0 });
  const running = ["waiting", "reading", "comparing", "applying"];
  async function poll() {
    try {
      const r = await fetch(job.dataset.api, { headers: { "X-Requested-With": "XMLHttpRequest" } });
      const p = await r.json();
      state.polls += 1;
      if (bar) { bar.max = Math.max(1, p.total); bar.value = p.done; }
      if (count) count.textContent = p.done + " / " + p.total;
      if (!running.includes(p.state)) { window.location.reload(); return; }
    } catch (e) { /* a lost poll: the next one tries again */ }
    setTimeout(poll, 400);
  }
  setTimeout(poll, 200);
})();
