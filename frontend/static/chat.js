// Streams an answer from POST /api/chat (Server-Sent Events read with fetch, not EventSource,
// which cannot POST and would reconnect on its own, paying for a second answer).
"use strict";

const form = document.getElementById("ask");
const input = document.getElementById("question");
const sendButton = document.getElementById("send");
const statusLine = document.getElementById("status");
const answerBox = document.getElementById("answer");
const sourcesBox = document.getElementById("sources-box");
const sourcesList = document.getElementById("sources");
let conversationId = null; // follow-up questions continue the same conversation

const STATUS = {
  validating: "Checking the answer against the sources before showing it…",
  retrying: "The model had a problem; trying again…",
  fallback: "The model is unavailable; asking another one…",
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

function renderAnswer(text, sourceCount) {
  // Text nodes only; [n] markers become links to their source.
  answerBox.replaceChildren();
  const parts = text.split(/(\[\d{1,3}\])/);
  for (const part of parts) {
    const m = part.match(/^\[(\d{1,3})\]$/);
    if (m && Number(m[1]) >= 1 && Number(m[1]) <= sourceCount) {
      const a = document.createElement("a");
      a.href = "#source-" + m[1];
      a.className = "cite";
      a.textContent = part;
      answerBox.append(a);
    } else {
      answerBox.append(document.createTextNode(part));
    }
  }
}

function renderSources(sources) {
  sourcesList.replaceChildren();
  for (const s of sources) {
    const li = document.createElement("li");
    li.id = "source-" + s.n;
    const title = document.createElement("strong");
    title.textContent = s.title + (s.page ? " — page " + s.page : "");
    const snippet = document.createElement("p");
    snippet.textContent = s.snippet;
    li.append(title, snippet);
    sourcesList.append(li);
  }
  sourcesBox.hidden = sources.length === 0;
}

async function ask(question) {
  sendButton.disabled = true;
  statusLine.textContent = "Searching your documents…";
  answerBox.replaceChildren();
  renderSources([]);
  let text = "";
  let sourceCount = 0;
  try {
    const response = await fetch("/api/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "text/event-stream" },
      body: JSON.stringify({ question, conversation_id: conversationId }),
    });
    if (!response.ok || !response.body) {
      let message = "The server could not answer (HTTP " + response.status + "). Try again.";
      try { message = (await response.json()).message || message; } catch (_) { /* not JSON */ }
      throw new Error(message);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const [events, rest] = parseEvents(buffer);
      buffer = rest;
      for (const ev of events) {
        if (ev.name === "meta") {
          conversationId = ev.data.conversation_id || conversationId;
        } else if (ev.name === "status") {
          statusLine.textContent = ev.data.message || STATUS[ev.data.state] || "";
        } else if (ev.name === "reset") {
          text = "";
          answerBox.replaceChildren();
          statusLine.textContent = "The model stopped mid-answer; writing a new one…";
        } else if (ev.name === "sources") {
          sourceCount = ev.data.sources.length;
          renderSources(ev.data.sources);
          statusLine.textContent = "Writing the answer…";
        } else if (ev.name === "delta") {
          text += ev.data.text;
          answerBox.textContent = text;
        } else if (ev.name === "done") {
          renderAnswer(ev.data.text, sourceCount);
          const cache = ev.data.cache || {};
          statusLine.textContent = cache.status === "hit" || cache.status === "fallback"
            ? "Answered from an earlier checked answer, written " + ago(cache.age_s) + "."
            : "";
        } else if (ev.name === "error") {
          statusLine.textContent = ev.data.message;
        }
      }
    }
  } catch (err) {
    statusLine.textContent = err.message || "The connection to Docent was lost. Try again.";
  } finally {
    sendButton.disabled = false;
  }
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  const q = input.value.trim();
  if (q) ask(q);
});
