// The retrieval playground: the same query through dense, BM25 (sparse) and hybrid search,
// side by side. Results are set as text.
"use strict";

const CSRF = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
const MODES = ["dense", "sparse", "hybrid"];

async function search(mode, query, topK, collection) {
  const response = await fetch("/api/search", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
    body: JSON.stringify({ query, top_k: topK, mode, collection: collection || null }),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.message || "The search failed.");
  return data;
}

function show(mode, data, everywhere) {
  const list = document.getElementById("col-" + mode);
  list.replaceChildren();
  for (const hit of data.hits) {
    const li = document.createElement("li");
    if (everywhere.has(hit.chunk_id)) li.className = "in-all";
    const head = document.createElement("p");
    head.className = "hit-head";
    head.textContent = hit.title + (hit.page ? ", page " + hit.page : "") + " · score " + hit.score.toFixed(4);
    const text = document.createElement("p");
    text.className = "hit-text";
    text.textContent = hit.text.length > 400 ? hit.text.slice(0, 399) + "…" : hit.text;
    li.append(head, text);
    if (everywhere.has(hit.chunk_id)) {
      const tag = document.createElement("span");
      tag.className = "badge badge-ok";
      tag.textContent = "found by all three";
      li.append(tag);
    }
    list.append(li);
  }
  if (!data.hits.length) list.append(Object.assign(document.createElement("li"), { textContent: "Nothing found." }));
}

document.getElementById("play").addEventListener("submit", async (e) => {
  e.preventDefault();
  const query = document.getElementById("query").value.trim();
  const topK = Number(document.getElementById("top-k").value) || 5;
  const collection = document.getElementById("play-collection").value.trim();
  const status = document.getElementById("play-status");
  if (!query) return;
  status.textContent = "Searching…";
  try {
    const results = await Promise.all(MODES.map((m) => search(m, query, topK, collection)));
    const sets = results.map((r) => new Set(r.hits.map((h) => h.chunk_id)));
    const everywhere = new Set([...sets[0]].filter((id) => sets[1].has(id) && sets[2].has(id)));
    MODES.forEach((m, i) => show(m, results[i], everywhere));
    status.textContent = MODES.map((m, i) => m + " " + results[i].took_ms + " ms").join(" · ");
  } catch (err) {
    status.textContent = err.message;
  }
});
