// The web chat. Answers stream from POST /api/chat as Server-Sent Events, read with fetch (not
// EventSource, which cannot POST and would reconnect on its own, paying for a second answer).
//
// What is shown as HTML comes from the server, rendered from Markdown and sanitised there
// (app/web/render.py), under a Content-Security-Policy that runs no inline script. Everything
// else from the server (titles, snippets, passages, messages) is set as text, never as HTML.
"use strict";

// Requests that change something carry the session's CSRF token (app/web/auth.py).
const CSRF = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

const $ = (id) => document.getElementById(id);
const form = $("ask");
const input = $("question");
const sendButton = $("send");
const stopButton = $("stop");
const thread = $("thread");
const convList = $("conv-list");
const panel = $("source-panel");
const turnTemplate = $("turn-template");

let conversationId = null; // follow-up questions continue the same conversation
let running = null; // {controller, turn} while an answer streams

const STATE_TEXT = {
  searching: "Searching your documents…",
  writing: "Writing the answer…",
  validating: "Checking the answer against the sources before showing it. This takes a few seconds.",
  retrying: "The model had a problem; trying again…",
  fallback: "That model is unavailable; asking another one…",
  cache: "Docent cannot write a new answer right now; showing an earlier checked answer.",
};

// What a person can do about each error code (the server's message comes first).
const ERROR_HELP = {
  all_providers_unavailable: "Try again in a minute.",
  unavailable: "Try again in a minute.",
  interrupted: "Try again; the answer was cut off.",
  timeout: "Try again, or ask a shorter question.",
  invalid_request: "Change the question and send it again.",
  rate_limited: "Wait a moment, then try again.",
};

function ago(seconds) {
  if (seconds < 90) return "a minute ago";
  if (seconds < 5400) return Math.round(seconds / 60) + " minutes ago";
  if (seconds < 129600) return Math.round(seconds / 3600) + " hours ago";
  return Math.round(seconds / 86400) + " days ago";
}

function parseEvents(buffer) {
  // Returns [events, rest]: complete events and the unfinished tail of the buffer.
  const events = [];
  const blocks = buffer.split(/\r\n\r\n|\n\n/);
  const rest = blocks.pop();
  for (const block of blocks) {
    let name = "message";
    const data = [];
    for (const line of block.split(/\r\n|\n/)) {
      if (line.startsWith(":")) continue;
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (data.length && data.join("") !== "") events.push({ name, data: JSON.parse(data.join("\n")) });
  }
  return [events, rest];
}

// --- one question and its answer -------------------------------------------------------------

class Turn {
  constructor(question) {
    this.question = question;
    this.node = turnTemplate.content.firstElementChild.cloneNode(true);
    this.node.querySelector(".question").textContent = question;
    this.state = this.node.querySelector(".state");
    this.badges = this.node.querySelector(".badges");
    this.body = this.node.querySelector(".answer-body");
    this.actions = this.node.querySelector(".actions");
    this.about = this.node.querySelector(".about");
    this.sourcesBox = this.node.querySelector(".sources");
    this.feedback = this.node.querySelector(".feedback");
    this.text = "";
    this.html = "";
    this.upto = 0;
    this.sources = [];
    this.answerId = null;
    this.wire();
    thread.append(this.node);
  }

  wire() {
    this.actions.querySelector(".copy").addEventListener("click", () => this.copy());
    this.actions.querySelector(".regenerate").addEventListener("click", () => {
      if (!running) ask(this.question, { useCache: false });
    });
    for (const thumb of this.actions.querySelectorAll(".thumb")) {
      thumb.addEventListener("click", () => this.rate(thumb.dataset.rating));
    }
    this.feedback.addEventListener("submit", (e) => {
      e.preventDefault();
      this.sendFeedback(this.rating, this.feedback.elements.comment.value);
    });
    this.body.addEventListener("click", (e) => {
      const cite = e.target.closest("a.cite");
      if (cite) {
        e.preventDefault();
        openSource(this.sources[Number(cite.dataset.n) - 1], cite);
      }
    });
  }

  setState(kind, message) {
    this.state.className = "state " + (kind ? "state-" + kind : "");
    this.state.replaceChildren();
    if (message) {
      const p = document.createElement("p");
      p.textContent = message;
      this.state.append(p);
    }
  }

  showText() {
    // The settled part as sanitised HTML from the server; the paragraph being written as text.
    this.body.innerHTML = this.html;
    const tail = this.text.slice(this.upto);
    if (tail) {
      const p = document.createElement("p");
      p.className = "tail";
      p.textContent = tail;
      this.body.append(p);
    }
  }

  badge(text, kind, title) {
    const span = document.createElement("span");
    span.className = "badge badge-" + kind;
    span.textContent = text;
    if (title) span.title = title;
    this.badges.append(span);
  }

  handle(ev) {
    const d = ev.data;
    switch (ev.name) {
      case "meta":
        this.answerId = d.answer_id;
        conversationId = d.conversation_id || conversationId;
        this.meta = d;
        if (d.risk === "high") this.setState("validating", STATE_TEXT.validating);
        break;
      case "sources":
        this.sources = d.sources;
        this.showSources();
        if (this.meta && this.meta.risk !== "high") this.setState("working", STATE_TEXT.writing);
        break;
      case "status":
        this.setState(d.state === "validating" ? "validating" : "working",
          d.message || STATE_TEXT[d.state] || "");
        break;
      case "reset":
        this.text = ""; this.html = ""; this.upto = 0;
        this.showText();
        this.setState("working", "The model stopped mid-answer; writing a new one…");
        break;
      case "delta":
        this.text += d.text;
        if (this.meta && this.meta.risk !== "high") this.setState("working", STATE_TEXT.writing);
        this.showText();
        break;
      case "render":
        this.html = d.html; this.upto = d.upto;
        this.showText();
        break;
      case "done":
        this.finish(d);
        break;
      case "error":
        this.fail(d);
        break;
    }
  }

  finish(d) {
    this.text = d.text;
    this.html = d.html || "";
    this.upto = this.text.length;
    this.showText();
    this.setState("", "");
    const cache = d.cache || {};
    if (cache.status === "hit" || cache.status === "fallback") {
      const when = new Date(cache.created_at).toLocaleString();
      this.badge((cache.curated ? "Curated answer" : "Earlier checked answer") + ", " + ago(cache.age_s),
        "cache", "Served from the answer cache; written " + when + ".");
    }
    if (d.outcome === "queued") {
      this.badge("Held for review", "review", "The answer could not be checked against the sources; a person will review it.");
    }
    if (d.truncated) this.badge("Cut short", "warn", "The model stopped before it finished.");
    const unsupported = this.body.querySelectorAll(".mark-unsupported").length;
    if (unsupported) this.badge(unsupported + " not found in the sources", "warn", "Sentences marked ? are not supported by the sources shown.");
    this.fillAbout(d);
    this.actions.hidden = false;
  }

  fail(d) {
    const help = ERROR_HELP[d.code] || "";
    const message = (d.message || "Something went wrong.") + (help && !d.message.includes(help) ? " " + help : "");
    this.setState("error", message);
    if (d.retryable !== false) {
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "secondary retry";
      retry.textContent = "Try again";
      retry.addEventListener("click", () => { if (!running) ask(this.question); });
      this.state.append(retry);
    }
    if (this.text) this.badge("Incomplete", "warn", "The answer stopped before it finished.");
  }

  fillAbout(d) {
    const rows = [];
    const m = this.meta || {};
    if (d.provider) rows.push(["Model", (d.model ? d.model + " via " : "") + d.provider]);
    if (m.tier) rows.push(["Model tier", m.tier]);
    if (m.risk) rows.push(["Risk", m.risk + (m.risk === "high" ? " (checked before it was shown)" : "")]);
    if (m.prompt_version) rows.push(["Prompt", m.prompt_version]);
    if (d.timings && d.timings.first_token_ms != null) rows.push(["First words after", Math.round(d.timings.first_token_ms) + " ms"]);
    if (d.usage) rows.push(["Tokens", (d.usage.input_tokens || 0) + " in, " + (d.usage.output_tokens || 0) + " out"]);
    if (this.answerId) rows.push(["Answer id", this.answerId]);
    const dl = this.about.querySelector("dl");
    dl.replaceChildren();
    for (const [k, v] of rows) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = String(v);
      dl.append(dt, dd);
    }
    this.about.hidden = rows.length === 0;
  }

  showSources() {
    const list = this.sourcesBox.querySelector("ol");
    list.replaceChildren();
    for (const s of this.sources) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link source-link";
      button.textContent = s.title + (s.page ? ", page " + s.page : "");
      button.addEventListener("click", () => openSource(s, button));
      const snippet = document.createElement("p");
      snippet.textContent = s.snippet || "";
      li.append(button, snippet);
      list.append(li);
    }
    this.sourcesBox.hidden = this.sources.length === 0;
  }

  async copy() {
    const button = this.actions.querySelector(".copy");
    try {
      await navigator.clipboard.writeText(this.text);
      button.textContent = "Copied";
    } catch (_) {
      button.textContent = "Copy failed";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  }

  rate(rating) {
    this.rating = rating;
    for (const t of this.actions.querySelectorAll(".thumb")) {
      t.setAttribute("aria-pressed", String(t.dataset.rating === rating));
    }
    this.feedback.hidden = false;
    this.sendFeedback(rating, "");
  }

  async sendFeedback(rating, comment) {
    if (!this.answerId || !rating) return;
    const response = await fetch("/api/answers/" + encodeURIComponent(this.answerId) + "/feedback", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
      body: JSON.stringify({ rating, comment: comment || null }),
    });
    if (comment) {
      this.feedback.hidden = !response.ok;
      this.setState(response.ok ? "" : "error", response.ok ? "" : "Your feedback could not be saved. Try again.");
      if (response.ok) this.badge("Thanks for the feedback", "ok");
    }
  }
}

// --- the source panel ------------------------------------------------------------------------

let panelOpener = null;

async function openSource(source, opener) {
  if (!source) return;
  panelOpener = opener || null;
  $("source-title").textContent = source.title || "Source";
  $("source-meta").textContent = "Source " + source.n + (source.page ? " · page " + source.page : "") + " · loading…";
  const box = $("source-text");
  box.replaceChildren();
  panel.hidden = false;
  panel.focus();
  try {
    const response = await fetch("/api/passages/" + encodeURIComponent(source.chunk_id));
    if (!response.ok) throw new Error((await response.json()).message);
    const p = await response.json();
    $("source-meta").textContent = "Source " + source.n + " · " + p.filename + (p.page ? " · page " + p.page : "") + " · version " + p.version;
    const mark = document.createElement("mark");
    mark.textContent = p.passage;
    box.append(document.createTextNode(p.before), mark, document.createTextNode(p.after));
    mark.scrollIntoView({ block: "center" });
  } catch (err) {
    $("source-meta").textContent = "Source " + source.n;
    const fallback = document.createElement("mark");
    fallback.textContent = source.snippet || "";
    const note = document.createElement("p");
    note.className = "muted";
    note.textContent = (err.message || "The passage could not be loaded.") + " Showing the excerpt instead.";
    box.append(note, fallback);
  }
}

function closeSource() {
  panel.hidden = true;
  if (panelOpener) panelOpener.focus();
}

$("close-source").addEventListener("click", closeSource);
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !panel.hidden) closeSource();
});

// --- asking ----------------------------------------------------------------------------------

async function ask(question, options = {}) {
  const turn = new Turn(question);
  turn.setState("working", STATE_TEXT.searching);
  const controller = new AbortController();
  running = { controller, turn };
  sendButton.disabled = true;
  stopButton.hidden = false;
  turn.node.scrollIntoView({ block: "end" });
  try {
    const response = await fetch("/api/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "text/event-stream", "X-CSRF-Token": CSRF },
      body: JSON.stringify({
        question, conversation_id: conversationId, render: "html",
        use_cache: options.useCache !== false,
      }),
      signal: controller.signal,
    });
    if (!response.ok || !response.body) {
      let data = { message: "Docent could not answer (HTTP " + response.status + ").", retryable: true };
      try { data = await response.json(); } catch (_) { /* not JSON */ }
      turn.fail(data);
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let ended = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const [events, rest] = parseEvents(buffer);
      buffer = rest;
      for (const ev of events) {
        turn.handle(ev);
        ended = ended || ev.name === "done" || ev.name === "error";
      }
    }
    if (!ended) turn.fail({ message: "The connection to Docent was lost before the answer ended.", retryable: true });
  } catch (err) {
    if (err.name === "AbortError") {
      turn.setState("stopped", "Stopped. The model was told to stop writing.");
      if (turn.text) turn.actions.hidden = false;
    } else {
      turn.fail({ message: "The connection to Docent was lost.", retryable: true });
    }
  } finally {
    running = null;
    sendButton.disabled = false;
    stopButton.hidden = true;
    loadConversations();
  }
}

stopButton.addEventListener("click", () => { if (running) running.controller.abort(); });

form.addEventListener("submit", (e) => {
  e.preventDefault();
  const q = input.value.trim();
  if (q && !running) {
    input.value = "";
    ask(q);
  }
});

input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    form.requestSubmit();
  }
});

// --- conversations ---------------------------------------------------------------------------

async function loadConversations() {
  try {
    const response = await fetch("/api/conversations");
    if (!response.ok) return;
    const rows = await response.json();
    convList.replaceChildren();
    for (const c of rows) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link";
      button.textContent = c.title;
      if (c.id === conversationId) button.setAttribute("aria-current", "true");
      button.addEventListener("click", () => openConversation(c.id));
      li.append(button);
      convList.append(li);
    }
  } catch (_) { /* the list is a convenience; the chat works without it */ }
}

async function openConversation(id) {
  if (running) return;
  const response = await fetch("/api/conversations/" + encodeURIComponent(id));
  if (!response.ok) return;
  const conv = await response.json();
  conversationId = conv.id;
  thread.replaceChildren();
  let turn = null;
  for (const m of conv.messages) {
    if (m.role === "user") {
      turn = new Turn(m.content);
    } else if (turn) {
      turn.answerId = m.answer_id;
      turn.sources = m.sources || [];
      turn.showSources();
      turn.finish({ text: m.content, html: m.html, cache: {} });
    }
  }
  loadConversations();
  input.focus();
}

$("new-conv").addEventListener("click", () => {
  if (running) return;
  conversationId = null;
  thread.replaceChildren();
  loadConversations();
  input.focus();
});

loadConversations();
