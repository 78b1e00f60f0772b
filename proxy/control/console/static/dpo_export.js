// recproxy console: an export job's progress, polled from the API's job route once a
// second with the session cookie; when the job is no longer running the page is loaded
// again, so the download link and any error come from the server.  Without JavaScript
// the page's refresh link does the same.  Bounded: at most an hour of polling.
"use strict";
(function () {
  const box = document.getElementById("job");
  if (!box || box.dataset.jobState !== "running") return;
  const url = box.dataset.jobUrl;
  let polls = 0;
  const show = (id, value) => {
    const el = document.getElementById(id);
    if (el) el.textContent = String(value);
  };
  const poll = async () => {
    polls += 1;
    try {
      const answer = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (answer.ok) {
        const job = await answer.json();
        show("job-state", job.state);
        show("job-stage", job.stage);
        show("job-done", job.done);
        show("job-total", job.total);
        if (job.state !== "running") {
          window.location.reload();
          return;
        }
      }
    } catch (e) {
      // the next poll tries again
    }
    if (polls < 3600) window.setTimeout(poll, 1000);
  };
  window.setTimeout(poll, 1000);
})();
