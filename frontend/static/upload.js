"use strict";

// Requests that change something carry the session's CSRF token (app/web/auth.py).
const CSRF = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

const form = document.getElementById("upload-form");
const statusLine = document.getElementById("upload-status");
const tbody = document.querySelector("#documents tbody");

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

async function refresh() {
  const response = await fetch("/api/documents");
  if (!response.ok) return;
  const docs = await response.json();
  tbody.replaceChildren();
  for (const d of docs) {
    const tr = document.createElement("tr");
    const status = d.status + (d.error ? ": " + d.error : "");
    tr.append(cell(d.title), cell(d.collection), cell(status), cell(String(d.chunk_count)),
              cell(String(d.version)));
    const actions = document.createElement("td");
    const del = document.createElement("button");
    del.type = "button";
    del.textContent = "Delete";
    del.addEventListener("click", async () => {
      if (!confirm("Delete " + d.title + "?")) return;
      await fetch("/api/documents/" + encodeURIComponent(d.id), { method: "DELETE", headers: { "X-CSRF-Token": CSRF } });
      refresh();
    });
    actions.append(del);
    tr.append(actions);
    tbody.append(tr);
  }
  if (docs.some((d) => ["received", "parsed", "chunked"].includes(d.status))) {
    setTimeout(refresh, 1000);
  }
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = new FormData(form);
  statusLine.textContent = "Uploading…";
  const response = await fetch("/api/documents", { method: "POST", body, headers: { "X-CSRF-Token": CSRF } });
  if (response.ok) {
    const result = await response.json();
    const fresh = result.files.filter((f) => !f.duplicate).length;
    statusLine.textContent = fresh + " file(s) queued for indexing" +
      (result.files.length > fresh ? "; " + (result.files.length - fresh) + " unchanged." : ".");
    form.reset();
  } else {
    let message = "Upload failed (HTTP " + response.status + ").";
    try { message = (await response.json()).message || message; } catch (_) { /* not JSON */ }
    statusLine.textContent = message;
  }
  refresh();
});

refresh();
