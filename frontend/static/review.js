// The review queue (admins). Server text is set as text; the draft's HTML comes sanitised from
// the server (app/web/render.py).
"use strict";

const CSRF = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
const $ = (id) => document.getElementById(id);
let current = null;

function text(tag, value, className) {
  const el = document.createElement(tag);
  el.textContent = value == null ? "" : String(value);
  if (className) el.className = className;
  return el;
}

async function loadList() {
  const status = $("review-status").value;
  const response = await fetch("/api/review/?status=" + encodeURIComponent(status));
  const list = $("review-list");
  list.replaceChildren();
  if (!response.ok) {
    list.append(text("li", "The review queue could not be loaded. Reload the page."));
    return;
  }
  const items = await response.json();
  $("review-empty").hidden = items.length > 0;
  for (const item of items) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link";
    button.textContent = item.question;
    button.addEventListener("click", () => openItem(item.id));
    li.append(button, text("span", " · " + new Date(item.created_at).toLocaleString(), "muted"));
    list.append(li);
  }
}

async function openItem(id) {
  const response = await fetch("/api/review/" + encodeURIComponent(id));
  if (!response.ok) return;
  const item = await response.json();
  current = item;
  $("review-item").hidden = false;
  $("item-question").textContent = item.question;
  $("item-reason").textContent = "Why it was held: " + item.reason;
  $("item-draft").innerHTML = item.draft_html;
  const grounding = $("item-grounding");
  grounding.replaceChildren();
  for (const g of item.grounding) {
    if (g.claim === false) continue;
    const li = text("li", g.text);
    const verdict = text("span", " — " + g.verdict + (g.source ? " (source " + g.source + ")" : ""), "verdict verdict-" + g.verdict);
    li.append(verdict);
    if (g.reasons && g.reasons.length) li.append(text("p", g.reasons.join("; "), "muted"));
    grounding.append(li);
  }
  const sources = $("item-sources");
  sources.replaceChildren();
  for (const s of item.sources) {
    const li = document.createElement("li");
    li.append(text("strong", s.title + (s.page ? ", page " + s.page : "")), text("p", s.snippet, "muted"));
    sources.append(li);
  }
  $("edit-text").value = item.final_text || item.draft;
  const pending = item.status === "pending";
  $("decision").hidden = !pending;
  $("decided").hidden = pending;
  if (!pending) {
    $("decided-line").textContent = item.status + " by " + item.reviewer + " on " + new Date(item.decided_at).toLocaleString() + (item.curated_cache_entry ? "; served from the cache as a curated answer" : "");
    $("decided-before").textContent = item.draft;
    $("decided-after").textContent = item.final_text == null ? "(rejected)" : item.final_text;
  }
  $("decision-status").textContent = "";
}

async function decide(action) {
  if (!current) return;
  const body = { action, promote: $("promote").checked && action !== "reject" };
  if (action === "edit") body.text = $("edit-text").value;
  const response = await fetch("/api/review/" + encodeURIComponent(current.id) + "/decision", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
    body: JSON.stringify(body),
  });
  let data = {};
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    $("decision-status").textContent = data.message || "The decision could not be saved. Try again.";
    return;
  }
  $("decision-status").textContent = "Saved.";
  await loadList();
  await openItem(current.id);
}

for (const button of document.querySelectorAll("#decision button[data-action]")) {
  button.addEventListener("click", () => decide(button.dataset.action));
}
$("review-status").addEventListener("change", loadList);
loadList();
