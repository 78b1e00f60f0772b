// The call takers' page, live: the calls' changes over Server-Sent Events, the elapsed
// time each second, and the recording forms sent with fetch (the page answers with the
// API's JSON; the new state comes back at once and over the events too).  Without this
// script the page still works: the forms post and the page reloads.
"use strict";

const list = document.getElementById("calls");
const noCalls = document.getElementById("no-calls");
const feedStatus = document.getElementById("feed-status");
const dialog = document.getElementById("confirm-delete");
let pending = null; // the form and reason waiting for the deletion's confirmation

function two(n) { return String(n).padStart(2, "0"); }

function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll("time.elapsed[data-started]")) {
    const secs = Math.max(0, Math.floor((now - Date.parse(el.dataset.started)) / 1000));
    const h = Math.floor(secs / 3600), m = Math.floor((secs % 3600) / 60), s = secs % 60;
    el.textContent = h ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
  }
}

function applyState(item, state) {
  item.dataset.recording = state;
  item.querySelector('[data-field="recording"]').textContent = state;
  const form = item.querySelector("form.switch");
  if (!form) return;
  let shown = 0;
  for (const button of form.querySelectorAll("button[data-when]")) {
    button.hidden = !button.dataset.when.split(" ").includes(state);
    if (!button.hidden) shown += 1;
  }
  form.hidden = shown === 0;
}

function showError(form, message) {
  const input = form.querySelector('input[name="reason"]');
  form.querySelector('[data-field="error"]').textContent = message;
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

function upsert(data) {
  let item = document.getElementById(`call-${data.id}`);
  if (!item) {
    list.insertAdjacentHTML("beforeend", data.html);
    item = document.getElementById(`call-${data.id}`);
    wire(item);
  }
  applyState(item, data.recording);
  if (data.note) item.querySelector('[data-field="note"]').textContent = data.note;
  noCalls.hidden = list.children.length > 0;
}

function ended(data) {
  const item = document.getElementById(`call-${data.id}`);
  if (item) item.remove();
  noCalls.hidden = list.children.length > 0;
  feedStatus.textContent = data.note || "";
}

async function send(form, action, reason, confirmed) {
  const body = new URLSearchParams();
  body.set("csrf_token", form.querySelector('input[name="csrf_token"]').value);
  body.set("action", action);
  body.set("reason", reason);
  if (confirmed) body.set("confirm", "yes");
  const answer = await fetch(form.getAttribute("action"), {  // form.action: its "action" buttons
    method: "POST",
    body,
    headers: { Accept: "application/json" },
    credentials: "same-origin",
  });
  const result = await answer.json().catch(() => ({}));
  if (!answer.ok) {
    showError(form, result.detail || "Not done: reload the page and try again.");
    form.querySelector('input[name="reason"]').focus();
    return;
  }
  showError(form, "");
  form.querySelector('input[name="reason"]').value = "";
  applyState(form.closest("li.call"), result.recording);
}

function wire(item) {
  const form = item.querySelector("form.switch");
  if (!form) return;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const action = event.submitter ? event.submitter.value : "stop";
    const reason = form.querySelector('input[name="reason"]').value;
    if (action === "discard") {
      if (!reason.trim()) {  // said at the field before anything is confirmed
        showError(form, "a reason is required");
        form.querySelector('input[name="reason"]').focus();
        return;
      }
      pending = { form, reason, opener: event.submitter };
      dialog.showModal();
      return;
    }
    send(form, action, reason, false);
  });
}

document.getElementById("confirm-delete-yes").addEventListener("click", () => {
  dialog.close();
  if (pending) send(pending.form, "discard", pending.reason, true);
  pending = null;
});
document.getElementById("confirm-delete-no").addEventListener("click", () => {
  dialog.close();
  if (pending && pending.opener) pending.opener.focus();
  pending = null;
});

for (const item of list.querySelectorAll("li.call")) wire(item);
tick();
setInterval(tick, 1000);

const source = new EventSource("/console/events");
for (const kind of ["started", "bridged", "transferred", "recording", "dtmf"]) {
  source.addEventListener(kind, (event) => upsert(JSON.parse(event.data)));
}
source.addEventListener("ended", (event) => ended(JSON.parse(event.data)));
// on (re)connecting: the calls there are now; any other row ended while the page was away
source.addEventListener("snapshot", (event) => {
  const ids = new Set(JSON.parse(event.data).ids);
  for (const item of list.querySelectorAll("li.call")) {
    if (!ids.has(item.id.replace(/^call-/, ""))) item.remove();
  }
  noCalls.hidden = list.children.length > 0;
});
source.addEventListener("open", () => { list.dataset.live = "yes"; feedStatus.textContent = ""; });
source.addEventListener("error", () => { feedStatus.textContent = "Reconnecting to live updates…"; });
