// The chat page: one WebSocket to ws?room=…&name=…, reconnected with back-off when it drops.
"use strict";

const RETRY_FIRST_MS = 500;   // the first reconnect waits about this long,
const RETRY_MAX_MS = 15000;   // each next one twice as long, up to this
const TYPING_EVERY_MS = 2000; // typing notices sent at most this often
const TYPING_SHOWN_MS = 3000; // and shown this long after the last one

// Why a connection closed, for the codes a reason is often missing from (RFC 6455 §7.4.1).
const CLOSE_MEANINGS = {
  1000: "closed normally", 1001: "the server is going away", 1006: "the connection was lost",
  1008: "refused by the server", 1011: "the server hit an error", 1012: "the server is restarting",
  1013: "the server asks to try again later",
};

const $ = (selector) => document.querySelector(selector);
const state = { name: "", room: "", id: null, socket: null, attempt: 0, retry: null,
                joined: false, leaving: false, lastTyping: 0, typers: new Map() };

function setStatus(kind, text) {
  const status = $("#status");
  status.dataset.state = kind;
  status.textContent = text;
}

function note(text, kind = "") {
  const item = document.createElement("li");
  item.className = `notice ${kind}`.trim();
  item.textContent = text;
  append(item);
}

function append(item) {
  const log = $("#log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.append(item);
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function showMessage(event) {
  const item = document.createElement("li");
  item.className = event.id === state.id ? "message mine" : "message";
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = event.name;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = event.text;
  const time = document.createElement("time");
  const sent = new Date(event.time * 1000);
  time.dateTime = sent.toISOString();
  time.textContent = sent.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  item.append(who, text, time);
  append(item);
}

function showPeople(names) {
  const list = $("#people");
  list.replaceChildren(...names.map((name) => {
    const item = document.createElement("li");
    item.textContent = name;
    if (name === state.name) item.className = "me";
    return item;
  }));
  $("#count").textContent = `(${names.length})`;
}

function showTyping() {
  const now = Date.now();
  for (const [name, since] of state.typers) {
    if (now - since > TYPING_SHOWN_MS) state.typers.delete(name);
  }
  const names = [...state.typers.keys()];
  $("#typing").textContent = names.length === 0 ? ""
    : names.length === 1 ? `${names[0]} is typing…` : `${names.join(", ")} are typing…`;
}

function setComposer(enabled) {
  for (const control of $("#composer").elements) control.disabled = !enabled;
}

const handlers = {
  welcome(event) { state.id = event.id; },
  join(event) {
    showPeople(event.people);
    if (event.id !== state.id) { note(`${event.name} joined`); return; }
    // Our own join came back through the broker: the whole path works, so the back-off restarts.
    note(state.attempt > 0 || state.joined ? "Reconnected" : `You joined #${state.room}`);
    state.attempt = 0;
    state.joined = true;
    setStatus("online", `In #${state.room} as ${state.name}`);
    setComposer(true);
  },
  leave(event) {
    showPeople(event.people);
    state.typers.delete(event.name);
    showTyping();
    note(`${event.name} left`);
  },
  message(event) {
    state.typers.delete(event.name);
    showTyping();
    showMessage(event);
  },
  typing(event) {
    if (event.id === state.id) return;
    state.typers.set(event.name, Date.now());
    showTyping();
    setTimeout(showTyping, TYPING_SHOWN_MS + 50);
  },
};

function connect() {
  state.retry = null;
  const url = new URL("ws", location.href);  // relative: works under a proxy's path prefix
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = new URLSearchParams({ room: state.room, name: state.name });
  setStatus("connecting", state.attempt ? `Reconnecting (attempt ${state.attempt})…` : "Connecting…");
  const socket = new WebSocket(url);
  state.socket = socket;
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    handlers[event.type]?.(event);
  };
  socket.onerror = () => {
    if (!state.leaving) setStatus("error", "Connection error");
  };
  socket.onclose = (event) => closed(socket, event);
}

function closed(socket, event) {
  if (socket !== state.socket) return;
  state.socket = null;
  setComposer(false);
  if (state.leaving) return;
  const why = event.reason || CLOSE_MEANINGS[event.code] || "";
  const said = `Disconnected (${event.code}${why ? `: ${why}` : ""})`;
  if (event.code === 1008) {  // a refusal: trying again would get the same answer
    setStatus("error", said);
    note(said, "error");
    showJoinForm();
    return;
  }
  const delay = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** state.attempt) * (0.75 + Math.random() / 2);
  state.attempt += 1;
  const seconds = (delay / 1000).toFixed(1);
  setStatus("retrying", `${said}. Reconnecting in ${seconds} s…`);
  note(`${said}. Reconnecting in ${seconds} s (attempt ${state.attempt}).`, "error");
  state.retry = setTimeout(connect, delay);
}

function join(name, room) {
  Object.assign(state, { name, room, attempt: 0, joined: false, leaving: false });
  localStorage.setItem("chat-name", name);
  const address = new URL(location.href);
  address.search = new URLSearchParams({ room, name });
  history.replaceState(null, "", address);
  $("#room-name").textContent = `#${room}`;
  $("#log").replaceChildren();
  showPeople([]);
  $("#join").hidden = true;
  $("#room").hidden = $("#people-panel").hidden = false;
  connect();
}

function leave() {
  state.leaving = true;
  clearTimeout(state.retry);
  state.socket?.close(1000, "left the room");
  setStatus("idle", "Not connected");
  showJoinForm();
}

function showJoinForm() {
  $("#join").hidden = false;
  $("#room").hidden = $("#people-panel").hidden = true;
  $("#join").elements.name.value = state.name;
  $("#join").elements.room.value = state.room || "lobby";
}

function send(kind, fields = {}) {
  if (state.socket?.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify({ type: kind, ...fields }));
  }
}

$("#join").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.target.elements;
  join(form.name.value.trim(), form.room.value.trim());
});

$("#composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = event.target.elements.text;
  if (input.value.trim()) send("message", { text: input.value });
  input.value = "";
  input.focus();
});

$("#composer").elements.text.addEventListener("input", () => {
  if (Date.now() - state.lastTyping > TYPING_EVERY_MS) {
    state.lastTyping = Date.now();
    send("typing");
  }
});

$("#leave").addEventListener("click", leave);

const params = new URLSearchParams(location.search);
$("#join").elements.name.value = params.get("name") || localStorage.getItem("chat-name") || "";
if (params.get("room")) $("#join").elements.room.value = params.get("room");
if (params.get("name") && params.get("room")) join(params.get("name").trim(), params.get("room").trim());
