// The documents console: drag-and-drop upload of many files, each with its own upload progress
// and ingestion status, and the documents table (delete, index again). Server text is set as
// text only (file names can be hostile).
"use strict";

// Requests that change something carry the session's CSRF token (app/web/auth.py).
const CSRF = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

const form = document.getElementById("upload-form");
const fileInput = document.getElementById("files");
const drop = document.getElementById("drop");
const statusLine = document.getElementById("upload-status");
const progressList = document.getElementById("progress");
const tbody = document.querySelector("#documents tbody");
const WORKING = ["received", "parsed", "chunked"];
let pendingFiles = [];

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function size(bytes) {
  if (bytes < 1024) return bytes + " B";
  if (bytes < 1048576) return (bytes / 1024).toFixed(1) + " KB";
  return (bytes / 1048576).toFixed(1) + " MB";
}

// Refreshes overlap (each finished job asks for one): only the latest started may draw, or a
// slow, older answer would put stale rows back and stop the polling.
let latestRefresh = 0;

async function refresh() {
  const mine = ++latestRefresh;
  const response = await fetch("/api/documents");
  if (!response.ok || mine !== latestRefresh) return;
  const docs = await response.json();
  if (mine !== latestRefresh) return;
  tbody.replaceChildren();
  for (const d of docs) {
    const tr = document.createElement("tr");
    const status = cell(d.status + (d.error ? ": " + d.error : ""));
    status.className = "doc-status status-" + d.status;
    tr.append(cell(d.title), cell(d.collection), status, cell(String(d.chunk_count)),
              cell(size(d.size_bytes)), cell(String(d.version)));
    const actions = document.createElement("td");
    const again = document.createElement("button");
    again.type = "button";
    again.className = "secondary";
    again.textContent = "Index again";
    again.addEventListener("click", async () => {
      const r = await fetch("/api/documents/" + encodeURIComponent(d.id) + "/reindex",
        { method: "POST", headers: { "X-CSRF-Token": CSRF } });
      let data = {};
      try { data = await r.json(); } catch (_) { /* not JSON */ }
      if (!r.ok) {
        statusLine.textContent = "Could not index " + d.title + " again: " +
          (data.message || "HTTP " + r.status) + ".";
        return;
      }
      // The current version serves (and the table shows it) until the new one is indexed:
      // follow the job, then show the new version.
      statusLine.textContent = "Indexing " + d.title + " again.";
      const job = await finishedJob(data.job_id);
      if (job) {
        statusLine.textContent = job.status === "indexed"
          ? d.title + " is indexed again (version " + data.version + ")."
          : "Indexing " + d.title + " again failed" + (job.error ? ": " + job.error : ".");
      }
      refresh();
    });
    const del = document.createElement("button");
    del.type = "button";
    del.className = "secondary";
    del.textContent = "Delete";
    del.addEventListener("click", async () => {
      if (!confirm("Delete " + d.title + "?")) return;
      await fetch("/api/documents/" + encodeURIComponent(d.id), { method: "DELETE", headers: { "X-CSRF-Token": CSRF } });
      refresh();
    });
    actions.append(again, del);
    tr.append(actions);
    tbody.append(tr);
  }
  if (docs.some((d) => WORKING.includes(d.status))) setTimeout(refresh, 1000);
}

// --- one file: upload progress, then the ingestion job's status ------------------------------

function row(file) {
  const li = document.createElement("li");
  const name = document.createElement("span");
  name.className = "file-name";
  name.textContent = file.name + " (" + size(file.size) + ")";
  const bar = document.createElement("progress");
  bar.max = 100;
  bar.value = 0;
  bar.setAttribute("aria-label", "Upload of " + file.name);
  const state = document.createElement("span");
  state.className = "file-state";
  state.textContent = "waiting";
  li.append(name, bar, state);
  progressList.append(li);
  return { li, bar, state };
}

function uploadOne(file, collection, view) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest(); // fetch cannot report upload progress
    const body = new FormData();
    body.append("files", file);
    body.append("collection", collection);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) view.bar.value = Math.round((e.loaded / e.total) * 100);
      view.state.textContent = "uploading";
    });
    xhr.addEventListener("load", () => {
      let data = {};
      try { data = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status === 202) {
        view.bar.value = 100;
        const f = data.files[0];
        view.state.textContent = f.duplicate ? "unchanged (already indexed)" : "queued";
        if (!f.duplicate) watchJob(f.job_id, view);
        resolve(true);
      } else {
        view.state.textContent = data.message || "upload failed (HTTP " + xhr.status + ")";
        view.li.classList.add("failed");
        resolve(false);
      }
    });
    xhr.addEventListener("error", () => {
      view.state.textContent = "the connection was lost; try again";
      view.li.classList.add("failed");
      resolve(false);
    });
    xhr.open("POST", "/api/documents");
    xhr.setRequestHeader("X-CSRF-Token", CSRF);
    xhr.send(body);
  });
}

// A job once it has ended (indexed or failed), or null if it cannot be read.
async function finishedJob(jobId) {
  for (;;) {
    const response = await fetch("/api/jobs/" + encodeURIComponent(jobId));
    if (!response.ok) return null;
    const job = await response.json();
    if (job.status === "indexed" || job.status === "failed") return job;
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function watchJob(jobId, view) {
  for (;;) {
    const response = await fetch("/api/jobs/" + encodeURIComponent(jobId));
    if (!response.ok) return;
    const job = await response.json();
    const counts = job.chunks_total ? " " + job.chunks_indexed + "/" + job.chunks_total + " passages" : "";
    view.state.textContent = job.status + counts + (job.error ? ": " + job.error : "");
    if (job.status === "indexed" || job.status === "failed") {
      view.li.classList.add(job.status);
      refresh();
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function uploadAll(files) {
  const collection = document.getElementById("collection").value || "default";
  if (!files.length) {
    statusLine.textContent = "Choose or drop at least one file.";
    return;
  }
  statusLine.textContent = "Uploading " + files.length + " file(s)…";
  const views = files.map((f) => [f, row(f)]);
  let ok = 0;
  for (const [file, view] of views) ok += (await uploadOne(file, collection, view)) ? 1 : 0;
  statusLine.textContent = ok + " of " + files.length + " file(s) uploaded" +
    (ok < files.length ? "; the others say why they were refused." : ".");
  form.reset();
  pendingFiles = [];
  refresh();
}

drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  pendingFiles = [...e.dataTransfer.files];
  uploadAll(pendingFiles);
});
drop.addEventListener("keydown", (e) => {
  if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); }
});
form.addEventListener("submit", (e) => {
  e.preventDefault();
  uploadAll(pendingFiles.length ? pendingFiles : [...fileInput.files]);
});

refresh();
