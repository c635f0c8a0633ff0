"use strict";
// The chat page: keeps the conversation, streams each answer from /v1/chat/completions (SSE),
// shows its time to first token and tokens/s, stops a generation on demand (aborting the fetch
// closes the connection, and the server cancels the generation) and shows errors readably.
// Each answer's element carries data-state: streaming, done, stopped or error. A server started
// with API keys serves the page to anyone but answers its API only with a key: the page sends
// the one entered in Settings (kept in this browser's localStorage) as a bearer token.

const $ = (id) => document.getElementById(id);
const turns = [];        // the conversation so far: {role, content}, system prompt excluded
let controller = null;   // aborts the answer being streamed
let modelId = "";

class ApiError extends Error {
  constructor(title, message, param) {
    super(message);
    this.title = title;
    this.param = param || "";
  }
}

const KEY_STORAGE = "ite-api-key";

function authHeaders() {
  const key = $("api_key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function loadModel() {
  try {
    const r = await fetch("/v1/models", { headers: authHeaders() });
    if (r.status === 401) {
      $("model").textContent = $("api_key").value.trim()
        ? "the API key was refused: check it in Settings"
        : "this server needs an API key: enter it in Settings";
      return;
    }
    const m = (await r.json()).data[0];
    modelId = m.id;
    $("model").textContent = `${m.id} · context ${m.max_model_len} tokens`;
  } catch (e) {
    $("model").textContent = "the server does not answer";
  }
}

function addMessage(role) {
  const div = document.createElement("div");
  div.className = `message ${role}`;
  const text = document.createElement("div");
  text.className = "text";
  div.append(text);
  $("conversation").append(div);
  return div;
}

function addLine(parent, cls, content) {
  const d = document.createElement("div");
  d.className = cls;
  d.textContent = content;  // never innerHTML: model output and server messages are text
  parent.append(d);
  scrollDown();
}

function scrollDown() {
  const c = $("conversation");
  c.scrollTop = c.scrollHeight;
}

// Shows an error inside `parent` (the answer it ended): a title, then the message.
function showError(parent, err) {
  const box = document.createElement("div");
  box.className = "error";
  parent.append(box);
  if (err instanceof ApiError) {
    addLine(box, "title", err.title);
    addLine(box, "detail", err.message + (err.param ? ` (parameter: ${err.param})` : ""));
  } else if (err instanceof TypeError) {  // what fetch throws when the connection fails
    addLine(box, "title", "Cannot reach the server");
    addLine(box, "detail", `${location.origin} did not answer; it may have stopped ` +
                           `(${err.message}).`);
  } else {
    addLine(box, "title", "Error");
    addLine(box, "detail", String((err && err.message) || err));
  }
}

// An HTTP error response as an ApiError (an OpenAI error body, or whatever text came).
async function responseError(r) {
  const body = await r.text();
  try {
    const e = JSON.parse(body).error;
    const hint = r.status === 401 ? " (enter the server's API key in Settings)" : "";
    return new ApiError(`Error ${r.status} (${e.type || "error"})`, e.message + hint, e.param);
  } catch (_) {
    return new ApiError(`Error ${r.status} ${r.statusText}`, body || "(no message)");
  }
}

// The sampling fields as the user set them; empty fields are left to the server's defaults.
function settings() {
  const out = {};
  for (const [id, parse] of [["temperature", parseFloat], ["top_p", parseFloat],
                             ["max_tokens", (v) => parseInt(v, 10)]]) {
    const raw = $(id).value.trim();
    if (raw === "") continue;
    const v = parse(raw);
    if (Number.isNaN(v)) throw new ApiError("Invalid setting", `${id}: "${raw}" is not a number`);
    out[id] = v;
  }
  return out;
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
}

// Reads an SSE response, calling onData with each data event's parsed JSON.
async function readEvents(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, end);
      buf = buf.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;  // ": keep-alive" comments
        const data = line.slice(5).trim();
        if (data !== "[DONE]") onData(JSON.parse(data));
      }
    }
  }
}

function describeStats(s) {
  const parts = [`${s.tokens} token${s.tokens === 1 ? "" : "s"}`];
  if (s.ttftMs !== null) parts.push(`TTFT ${s.ttftMs.toFixed(0)} ms`);
  // Speed after the first token: the decode rate, which TTFT (queue + prefill) does not blur.
  if (s.tokens > 1 && s.lastMs > s.firstMs) {
    parts.push(`${((s.tokens - 1) / ((s.lastMs - s.firstMs) / 1000)).toFixed(1)} tok/s`);
  }
  if (s.finish) parts.push(`finish: ${s.finish}`);
  return parts.join(" · ");
}

async function send(question) {
  let request;
  try {
    request = settings();
  } catch (e) {
    const note = addMessage("assistant");
    note.dataset.state = "error";
    showError(note, e);
    return;
  }
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...turns, { role: "user", content: question });
  Object.assign(request, { messages, stream: true, stream_options: { include_usage: true } });
  if (modelId) request.model = modelId;

  addMessage("user").querySelector(".text").textContent = question;
  const answer = addMessage("assistant");
  const textEl = answer.querySelector(".text");
  answer.dataset.state = "streaming";
  controller = new AbortController();
  setBusy(true);

  const t0 = performance.now();
  const s = { tokens: 0, ttftMs: null, firstMs: 0, lastMs: 0, finish: "" };
  let text = "", usage = null;
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify(request), signal: controller.signal,
    });
    if (!r.ok) throw await responseError(r);
    await readEvents(r, (chunk) => {
      if (chunk.error) {  // a generation that failed after the stream began
        throw new ApiError(`Error (${chunk.error.type || "error"})`, chunk.error.message);
      }
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices || []) {
        const delta = c.delta && c.delta.content;
        if (delta) {
          const now = performance.now() - t0;
          if (s.ttftMs === null) s.ttftMs = s.firstMs = now;
          s.lastMs = now;
          s.tokens += 1;
          text += delta;
          textEl.textContent = text;
          scrollDown();
        }
        if (c.finish_reason) s.finish = c.finish_reason;
      }
    });
    answer.dataset.state = "done";
  } catch (e) {
    if (e.name === "AbortError") {
      answer.dataset.state = "stopped";
      addLine(answer, "note", "stopped");
    } else {
      answer.dataset.state = "error";
      showError(answer, e);
      controller.abort();  // an error object mid-stream: let go of the connection too
    }
  } finally {
    controller = null;
    setBusy(false);
  }
  if (usage) s.tokens = usage.completion_tokens;
  if (text !== "") addLine(answer, "stats", describeStats(s));
  // What was said stays in the conversation, a stopped answer's part included; a question that
  // got no answer at all is not sent again with the next one.
  if (text !== "") {
    turns.push({ role: "user", content: question }, { role: "assistant", content: text });
  }
}

function submit() {
  const question = $("prompt").value.trim();
  if (question === "" || controller) return;
  $("prompt").value = "";
  send(question);
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  submit();
});
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    submit();
  }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("reset").addEventListener("click", () => {
  if (controller) controller.abort();
  turns.length = 0;
  $("conversation").replaceChildren();
});
$("api_key").value = localStorage.getItem(KEY_STORAGE) || "";
$("api_key").addEventListener("change", () => {
  localStorage.setItem(KEY_STORAGE, $("api_key").value.trim());
  loadModel();
});
loadModel();
