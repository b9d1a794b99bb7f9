// The chat-sessions console: sessions, their chats, the active chat's history and a message box,
// against the API at the configured URL. Plain DOM, no framework and no build step; every string
// from the API is put in the page as text (textContent), never as HTML.

import { Api, ApiError, tokenSubject } from "./api.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// How many messages a history page holds, and sessions a page of the list (`?pageSize=` sets
// both, for trying the paging).
const PAGE_SIZE = clamp(Number(params.get("pageSize")) || 20, 1, 100);
const SESSIONS_PAGE = params.has("pageSize") ? PAGE_SIZE : 50;
const store = {
  get: (name) => localStorage.getItem(`chat-sessions-console.${name}`) || "",
  set: (name, value) =>
    value ? localStorage.setItem(`chat-sessions-console.${name}`, value) : localStorage.removeItem(`chat-sessions-console.${name}`),
};

const state = {
  api: null,
  sessions: [],
  sessionsCursor: null,
  session: null, // the selected session
  chats: [],
  messages: [], // the shown chat's loaded messages, oldest first (shownChat)
  historyCursor: null,
  historyChatId: null,
  viewedChatId: null, // in an archived session, the chat picked to read (shownChat)
  loadingEarlier: false,
  sending: false,
  following: null, // the messageId of a reply being generated that the page is showing as it grows
};

// --- helpers ------------------------------------------------------------------------------------

function clamp(n, low, high) {
  return Math.min(high, Math.max(low, Math.trunc(n)));
}

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "onclick") node.addEventListener("click", value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString();
}

function announce(text) {
  // Cleared first so the same words twice are still read out.
  $("announcer").textContent = "";
  requestAnimationFrame(() => ($("announcer").textContent = text));
}

/** An API error in words: what failed, what the API said, and its code and status. */
function describe(doing, error) {
  if (!(error instanceof ApiError)) return `Could not ${doing}: ${error?.message || error}.`;
  if (error.status === 0) return `Could not ${doing}: ${error.message}`;
  let text = `Could not ${doing}: ${error.message.replace(/\.?$/, ".")}`;
  const details = Array.isArray(error.details) ? error.details : [];
  const said = details.map((d) => d && (d.msg || d.message)).filter(Boolean);
  if (said.length) text += ` (${said.join("; ")})`;
  // A route the API does not have (the local gateway's "No route for ...", API Gateway's bare
  // "Not Found") rather than a resource that is not there.
  const unrouted = (error.status === 404 || error.status === 405) && (error.code === "http_error" || /^No route/.test(error.message));
  if (unrouted && /archive/.test(doing)) text += " This API does not support archiving.";
  if (unrouted && /fork|edit/.test(doing)) text += " This API does not support branches.";
  if (error.status === 401) text += " Sign in again, or paste a new token in Settings.";
  return `${text} [${error.code}, HTTP ${error.status}]`;
}

function showError(text) {
  $("error-text").textContent = text;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
}

/** Run an action; an API error is shown in words (and a refused token signs the user out). */
async function attempt(doing, action) {
  clearError();
  try {
    return await action();
  } catch (error) {
    showError(describe(doing, error));
    if (error instanceof ApiError && error.status === 401) {
      store.set("token", ""); // refused: a reload asks to sign in again instead of failing again
      showSignIn();
    }
    return undefined;
  }
}

/** A modal dialog asking for a text (or, with no label, a yes/no); resolves null on cancel. */
function ask({ title, label, value = "", multiline = false, confirm = "OK", danger = false, maxlength = 200 }) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const titleId = `dialog-title-${crypto.randomUUID()}`;
    const field = label
      ? h(multiline ? "textarea" : "input", { id: "dialog-field", required: true, maxlength, rows: multiline ? 5 : null })
      : null;
    if (field) field.value = value;
    const dialog = h(
      "dialog",
      { "aria-labelledby": titleId },
      h(
        "form",
        { method: "dialog" },
        h("h2", { id: titleId }, title),
        field ? [h("label", { for: "dialog-field" }, label), field] : null,
        h(
          "div",
          { class: "buttons" },
          // The confirming button first: Enter in the field submits with the form's first button.
          h("button", { type: "submit", value: "ok", class: danger ? "danger" : null }, confirm),
          h("button", { type: "submit", value: "cancel", formnovalidate: true }, "Cancel"),
        ),
      ),
    );
    dialog.addEventListener("close", () => {
      const ok = dialog.returnValue === "ok";
      resolve(ok ? (field ? field.value.trim() : true) : null);
      dialog.remove();
      if (opener && opener.isConnected) opener.focus();
    });
    document.body.append(dialog);
    dialog.showModal();
    if (field) field.select();
  });
}

// --- signing in -------------------------------------------------------------------------------

function apiFromSettings() {
  return new Api(store.get("apiUrl"), store.get("token"));
}

function showSignIn() {
  // Nothing of the previous user stays in the page, not even hidden.
  stopFollowing();
  Object.assign(state, { sessions: [], sessionsCursor: null, session: null, chats: [], messages: [], historyCursor: null });
  renderSessions();
  renderSession();
  renderMessages();
  renderConversationHeader();
  $("usage-summary").hidden = true;
  $("usage-summary").textContent = "";
  $("app").hidden = true;
  $("whoami").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("user-input").focus();
}

async function signIn(event) {
  event.preventDefault();
  const user = $("user-input").value.trim();
  if (!user) return;
  const api = new Api(store.get("apiUrl"), null);
  const minted = await attempt("sign in", async () => {
    try {
      return await api.localToken(user);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        throw new ApiError(
          404,
          error.code,
          "this API does not mint tokens (only the local stack has POST /local/token); paste a token in Settings",
        );
      }
      throw error;
    }
  });
  if (!minted) return;
  store.set("token", minted.token);
  store.set("sessionId", "");
  await start();
}

function signOut() {
  for (const name of ["token", "sessionId"]) store.set(name, "");
  state.api = null;
  state.session = null;
  $("api-token").value = "";
  clearError();
  showSignIn();
  announce("Signed out.");
}

function toggleSettings() {
  const open = $("settings").hidden;
  $("settings").hidden = !open;
  $("settings-toggle").setAttribute("aria-expanded", String(open));
  if (open) {
    $("api-url").value = store.get("apiUrl");
    $("api-token").value = store.get("token");
    $("api-url").focus();
  }
}

async function saveSettings(event) {
  event.preventDefault();
  const url = $("api-url").value.trim();
  const token = $("api-token").value.trim();
  const changed = url !== store.get("apiUrl") || token !== store.get("token");
  store.set("apiUrl", url);
  store.set("token", token);
  if (changed) store.set("sessionId", "");
  toggleSettings();
  announce("Settings saved.");
  await start();
}

// --- sessions ---------------------------------------------------------------------------------

async function start() {
  const token = store.get("token");
  if (!token) {
    showSignIn();
    return;
  }
  state.api = apiFromSettings();
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("whoami").hidden = false;
  $("sign-out").hidden = false;
  $("user-name").textContent = tokenSubject(token) || "(a token with no user)";
  $("status-filter").value = store.get("statusFilter");
  await loadSessions();
  if (!store.get("token")) return; // refused (401): the sign-in form is showing
  const remembered = store.get("sessionId");
  if (remembered) await selectSession(remembered, { quiet: true });
  else renderSession();
  // Where the keyboard most likely goes next: the message box, else a new chat or session.
  if (activeChat()) $("message-input").focus();
  else if (state.session && state.session.status !== "archived") $("new-chat-name").focus();
  else $("new-session-name").focus();
  loadUsage();
}

async function loadSessions(more = false) {
  const status = $("status-filter").value;
  const page = await attempt("list the sessions", () =>
    state.api.listSessions({ limit: SESSIONS_PAGE, cursor: more ? state.sessionsCursor : null, status: status || null }),
  );
  if (!page) return;
  state.sessions = more ? [...state.sessions, ...page.items] : page.items;
  state.sessionsCursor = page.nextCursor;
  renderSessions();
}

async function loadUsage() {
  const summary = $("usage-summary");
  try {
    const usage = await state.api.usage();
    const s = usage.sessions || {};
    summary.textContent =
      `You: ${plural(s.active ?? 0, "active session")}, ${s.paused ?? 0} paused, ${s.archived ?? 0} archived; ` +
      `${plural(usage.messages ?? 0, "message")}, ${plural(usage.usage?.totalTokens ?? 0, "token")}` +
      (usage.tokenBudget ? ` (${usage.periodUsage?.totalTokens ?? 0} of ${usage.tokenBudget} this month)` : "");
    summary.hidden = false;
  } catch {
    summary.hidden = true; // GET /me/usage is optional: an API without it shows the per-session counts only
  }
}

function sessionLine(session) {
  const usage = session.usage || {};
  return `${plural(session.chatCount ?? 0, "chat")} · ${plural(session.messageCount ?? 0, "message")} · ${plural(usage.totalTokens ?? 0, "token")}`;
}

function renderSessions() {
  const list = $("session-list");
  list.replaceChildren(
    ...state.sessions.map((session) => {
      const current = state.session?.sessionId === session.sessionId;
      return h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "open",
            "aria-current": current ? "true" : null,
            "data-session-id": session.sessionId,
            onclick: () => selectSession(session.sessionId),
          },
          h("span", { class: "name" }, session.name, h("span", { class: `badge ${session.status}` }, session.status)),
          h("span", { class: "meta" }, sessionLine(session)),
        ),
      );
    }),
  );
  $("no-sessions").hidden = state.sessions.length > 0;
  $("more-sessions").hidden = !state.sessionsCursor;
}

function replaceSession(session) {
  state.sessions = state.sessions.map((s) => (s.sessionId === session.sessionId ? session : s));
  if (state.session?.sessionId === session.sessionId) state.session = session;
  renderSessions();
  renderSession();
  // Archiving or unarchiving turns what the chats and messages offer off or on again.
  renderChats();
  renderMessages();
  renderConversationHeader();
}

/** An archived session is read-only (the contract: no send, regenerate, fork, edit, chat
 * created, changed or deleted): its history is shown, nothing that would be refused is offered. */
function readOnly() {
  return state.session?.status === "archived";
}

/** Run a form's request with its submit button disabled: a double press creates one thing. */
async function submitting(form, work) {
  const button = form.querySelector('button[type="submit"]');
  if (button.disabled) return undefined;
  button.disabled = true;
  form.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    form.removeAttribute("aria-busy");
  }
}

async function createSession(event) {
  event.preventDefault();
  const input = $("new-session-name");
  const name = input.value.trim();
  if (!name) return;
  const session = await submitting(event.target, () => attempt("create the session", () => state.api.createSession(name)));
  if (!session) return;
  input.value = "";
  if (!$("status-filter").value || $("status-filter").value === "active") state.sessions = [session, ...state.sessions];
  announce(`Session ${session.name} created.`);
  await selectSession(session.sessionId, { session });
  $("new-chat-name").focus();
  loadUsage();
}

async function selectSession(sessionId, { session = null, quiet = false } = {}) {
  clearError();
  state.viewedChatId = null;
  try {
    state.session = session || (await state.api.getSession(sessionId));
  } catch (error) {
    state.session = null;
    store.set("sessionId", "");
    // A remembered session that is gone (deleted elsewhere, another user's) is simply forgotten.
    if (!(quiet && error instanceof ApiError && error.status === 404)) showError(describe("open the session", error));
    renderSessions();
    renderSession();
    return;
  }
  store.set("sessionId", state.session.sessionId);
  renderSessions();
  renderSession();
  await loadChats();
}

function renderSession() {
  const session = state.session;
  $("session-details").hidden = !session;
  if (!session) {
    $("session-title").textContent = "No session selected";
    state.chats = [];
    renderChats();
    return;
  }
  $("session-title").textContent = session.name;
  $("session-meta").textContent = `Status: ${session.status} · ${sessionLine(session)} · created ${when(session.createdAt)}`;
  $("pause-session").hidden = session.status !== "active";
  $("resume-session").hidden = session.status !== "paused";
  $("archive-session").hidden = session.status === "archived";
  $("unarchive-session").hidden = session.status !== "archived";
  $("new-chat-name").disabled = readOnly();
  $("new-chat-form").querySelector('button[type="submit"]').disabled = readOnly();
}

async function sessionAction(action, doing) {
  const sid = state.session.sessionId;
  const session = await attempt(doing, () => state.api.sessionAction(sid, action));
  if (!session) return;
  // Archived: the active chat is shown until another is picked; unarchived: the active chat again.
  state.viewedChatId = null;
  replaceSession(session); // draws the chats and the header again
  if (state.historyChatId !== (shownChat()?.chatId ?? null)) await loadHistory();
  announce(`Session ${session.name} is ${session.status}.`);
  // Archiving and unarchiving move the session between the status filter's lists.
  if (action === "archive" || action === "unarchive") await loadSessions();
  loadUsage();
}

async function renameSession() {
  const name = await ask({ title: "Rename the session", label: "Session name", value: state.session.name, confirm: "Rename" });
  if (!name) return;
  const session = await attempt("rename the session", () => state.api.renameSession(state.session.sessionId, name));
  if (session) {
    replaceSession(session);
    announce(`Session renamed to ${session.name}.`);
  }
}

async function deleteSession() {
  const session = state.session;
  const sure = await ask({
    title: `Delete the session “${session.name}” with its chats and messages?`,
    confirm: "Delete",
    danger: true,
  });
  if (!sure) return;
  const done = await attempt("delete the session", async () => (await state.api.deleteSession(session.sessionId), true));
  if (!done) return;
  state.sessions = state.sessions.filter((s) => s.sessionId !== session.sessionId);
  state.session = null;
  store.set("sessionId", "");
  renderSessions();
  renderSession();
  announce(`Session ${session.name} deleted.`);
  $("new-session-name").focus();
  loadUsage();
}

// --- chats ------------------------------------------------------------------------------------

async function loadChats() {
  const sid = state.session.sessionId;
  const chats = await attempt("list the chats", () => state.api.allChats(sid));
  if (!chats || state.session?.sessionId !== sid) return;
  state.chats = chats;
  renderChats();
  await loadHistory();
}

function activeChat() {
  return state.chats.find((chat) => chat.active) || null;
}

/** The chat whose history is shown: the active one, or in an archived session (which refuses a
 * switch) the one picked to read, without activating it. */
function shownChat() {
  const picked = readOnly() && state.chats.find((chat) => chat.chatId === state.viewedChatId);
  return picked || activeChat();
}

function renderChats() {
  $("chat-list").replaceChildren(
    ...state.chats.map((chat) =>
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "open",
            "aria-current": chat === shownChat() ? "true" : null,
            "data-chat-id": chat.chatId,
            onclick: () => switchChat(chat),
          },
          h("span", { class: "name" }, chat.name, chat.active ? h("span", { class: "badge active" }, "active") : null),
          h("span", { class: "meta" }, `${plural(chat.messageCount ?? 0, "message")}${chat.forkedFrom ? ` · forked at #${chat.forkedFrom.seq}` : ""}`),
        ),
        h("button", { type: "button", "aria-label": `Rename chat ${chat.name}`, disabled: readOnly(), onclick: () => renameChat(chat) }, "Rename"),
        h(
          "button",
          { type: "button", class: "danger", "aria-label": `Delete chat ${chat.name}`, disabled: readOnly(), onclick: () => deleteChat(chat) },
          "Delete",
        ),
      ),
    ),
  );
  $("no-chats").hidden = !state.session || state.chats.length > 0;
}

async function createChat(event) {
  event.preventDefault();
  const input = $("new-chat-name");
  const name = input.value.trim();
  if (!name) return;
  const sid = state.session.sessionId;
  const chat = await submitting(event.target, () => attempt("create the chat", () => state.api.createChat(sid, name)));
  if (!chat) return;
  input.value = "";
  announce(`Chat ${chat.name} created; it is the active chat.`);
  await refreshSession();
  $("message-input").focus();
}

/** The selected session, its chats and the active chat's history, fetched again. */
async function refreshSession() {
  const session = await attempt("refresh the session", () => state.api.getSession(state.session.sessionId));
  if (session) replaceSession(session);
  await loadChats();
}

async function switchChat(chat) {
  if (readOnly()) {
    // An archived session refuses a switch (409 session_archived): its chats are read, not activated.
    state.viewedChatId = chat.chatId;
    renderChats();
    await loadHistory();
    announce(`Showing chat ${chat.name}; the session is archived, so it is read only.`);
    return;
  }
  if (chat.active) {
    $("message-input").focus();
    return;
  }
  const switched = await attempt("switch to the chat", () => state.api.activateChat(chat.sessionId, chat.chatId));
  if (!switched) return;
  announce(`Switched to chat ${switched.name}.`);
  await refreshSession();
  $("message-input").focus();
}

async function renameChat(chat) {
  const name = await ask({ title: "Rename the chat", label: "Chat name", value: chat.name, confirm: "Rename" });
  if (!name) return;
  const renamed = await attempt("rename the chat", () => state.api.renameChat(chat.sessionId, chat.chatId, name));
  if (!renamed) return;
  state.chats = state.chats.map((c) => (c.chatId === renamed.chatId ? renamed : c));
  renderChats();
  renderConversationHeader();
  announce(`Chat renamed to ${renamed.name}.`);
}

async function deleteChat(chat) {
  const sure = await ask({ title: `Delete the chat “${chat.name}” and its messages?`, confirm: "Delete", danger: true });
  if (!sure) return;
  const done = await attempt("delete the chat", async () => (await state.api.deleteChat(chat.sessionId, chat.chatId), true));
  if (!done) return;
  announce(`Chat ${chat.name} deleted.`);
  await refreshSession();
  loadUsage(); // its messages no longer count
  $("new-chat-name").focus();
}

// --- the active chat's history ------------------------------------------------------------------

function renderConversationHeader() {
  const chat = state.session ? shownChat() : null;
  $("chat-title").textContent = chat ? chat.name : "No active chat";
  $("chat-meta").textContent = chat
    ? `${chat.model} · ${plural(chat.messageCount ?? 0, "message")} · ${plural(chat.usage?.totalTokens ?? 0, "token")}` +
      (chat.systemPrompt ? ` · system prompt: ${chat.systemPrompt}` : "")
    : state.session
      ? "Create a chat (or pick one) to send messages."
      : "Pick or create a session.";
  const usable = Boolean(chat) && !state.sending && !readOnly();
  $("message-input").disabled = !chat || readOnly();
  $("send").disabled = !usable;
  $("regenerate").disabled = !usable || !state.messages.some((m) => m.role === "user");
}

async function loadHistory() {
  const chat = shownChat();
  stopFollowing();
  state.messages = [];
  state.historyCursor = null;
  state.historyChatId = chat?.chatId || null;
  if (chat) {
    const page = await attempt("load the messages", () => state.api.messages(chat.sessionId, chat.chatId, PAGE_SIZE, null));
    if (page && state.historyChatId === chat.chatId) {
      state.messages = [...page.items].reverse();
      state.historyCursor = page.nextCursor;
    }
  }
  renderMessages();
  renderConversationHeader();
  scrollToEnd();
  // A reply still being generated (sent from here before a reload, or elsewhere) is followed.
  const last = state.messages[state.messages.length - 1];
  if (last && last.role === "assistant" && last.status === "generating") follow(last);
}

async function loadEarlier() {
  const chat = shownChat();
  if (!chat || !state.historyCursor || state.loadingEarlier) return;
  state.loadingEarlier = true;
  const history = $("history");
  const before = history.scrollHeight - history.scrollTop;
  try {
    const page = await attempt("load earlier messages", () =>
      state.api.messages(chat.sessionId, chat.chatId, PAGE_SIZE, state.historyCursor),
    );
    if (page && state.historyChatId === chat.chatId) {
      const known = new Set(state.messages.map((m) => m.messageId));
      state.messages = [...page.items.filter((m) => !known.has(m.messageId)).reverse(), ...state.messages];
      state.historyCursor = page.nextCursor;
      renderMessages();
      history.scrollTop = history.scrollHeight - before; // keep the reader's place
      announce(`${plural(page.items.length, "earlier message")} loaded.`);
    }
  } finally {
    state.loadingEarlier = false;
  }
}

function scrollToEnd() {
  const history = $("history");
  history.scrollTop = history.scrollHeight;
}

function messageItem(message) {
  const mine = message.role === "user";
  const actions = [];
  if (!message.pending) {
    actions.push(
      h(
        "button",
        { type: "button", disabled: readOnly(), onclick: () => forkAt(message), "aria-label": `Fork a new chat from message ${message.seq}` },
        "Fork from here",
      ),
    );
    if (mine) {
      actions.push(
        h("button", { type: "button", disabled: readOnly(), onclick: () => editMessage(message), "aria-label": `Edit message ${message.seq}` }, "Edit"),
      );
    }
  }
  return h(
    "li",
    { class: `msg ${message.role}${message.pending ? " sending" : ""}`, "data-seq": message.seq ?? "" },
    h(
      "header",
      {},
      h("strong", {}, mine ? "You" : "Assistant"),
      message.seq ? h("span", {}, `#${message.seq}`) : null,
      message.model && !mine ? h("span", {}, message.model) : null,
      message.createdAt ? h("time", { datetime: message.createdAt }, when(message.createdAt)) : null,
      message.pending ? h("span", {}, "sending…") : null,
      message.status && message.status !== "complete" && !beingAnswered(message) ? h("span", { class: "warn" }, message.status) : null,
    ),
    h("div", { class: "content" }, message.content),
    actions.length ? h("div", { class: "actions" }, actions) : null,
  );
}

/** The user message a reply answers: the newest user message before it in the history shown. */
function questionOf(reply) {
  return state.messages.filter((m) => m.role === "user" && m.seq < reply.seq).at(-1);
}

/** A question whose reply the page is following shows no "unanswered": it is being answered. */
function beingAnswered(message) {
  if (!state.following || message.role !== "user") return false;
  const reply = state.messages.find((m) => m.messageId === state.following);
  return Boolean(reply) && questionOf(reply) === message;
}

function renderMessages() {
  // A re-render (a reply's update, a refresh) replaces every message's buttons: a keyboard user
  // on one of them keeps the focus, on the new button of the same name, instead of losing it.
  const list = $("messages");
  const focused = list.contains(document.activeElement) ? document.activeElement.getAttribute("aria-label") : null;
  list.replaceChildren(...state.messages.map(messageItem));
  if (focused) {
    const again = [...list.querySelectorAll("[aria-label]")].find((el) => el.getAttribute("aria-label") === focused);
    if (again && !again.disabled) again.focus();
  }
  const chat = state.session ? shownChat() : null;
  $("load-earlier").hidden = !chat || !state.historyCursor;
  $("history-start").hidden = !chat || Boolean(state.historyCursor) || state.messages.length === 0;
}

// --- sending, regenerating, branching ---------------------------------------------------------

function setSending(sending, text = "Waiting for the reply…") {
  state.sending = sending;
  $("pending").textContent = text;
  $("pending").hidden = !sending;
  $("stop").hidden = !(sending && state.following);
  $("send-form").setAttribute("aria-busy", String(sending));
  renderConversationHeader();
}

/** Append what a send/regenerate answered and read the reply out (or follow it as it grows). */
function showExchange(result) {
  const known = new Set(state.messages.map((m) => m.messageId));
  for (const message of [result.userMessage, result.assistantMessage]) {
    if (message && !known.has(message.messageId)) state.messages.push(message);
  }
  renderMessages();
  scrollToEnd();
  const reply = result.assistantMessage;
  if (reply && reply.status === "generating") follow(reply);
  else if (reply) announce(`Reply: ${reply.content}`);
}

function updateMessage(message) {
  const index = state.messages.findIndex((m) => m.messageId === message.messageId);
  if (index < 0) return;
  const history = $("history");
  const atEnd = history.scrollHeight - history.scrollTop - history.clientHeight < 40;
  state.messages[index] = message;
  renderMessages();
  if (atEnd) scrollToEnd();
}

/** Show a generating reply as it grows: each GET waits (up to 20 s) for more text than the page
 * has, or for the end; the reply is read out once it is complete. */
async function follow(reply) {
  state.following = reply.messageId;
  renderMessages(); // its question is being answered (beingAnswered)
  setSending(true, "Writing the reply…");
  let current = reply;
  try {
    while (current.status === "generating" && state.following === reply.messageId) {
      current = await state.api.message(current.sessionId, current.chatId, current.messageId, 20, current.content.length);
      if (state.following === reply.messageId) updateMessage(current);
    }
  } catch (error) {
    if (state.following === reply.messageId) showError(describe("follow the reply", error));
  }
  if (state.following !== reply.messageId) return; // switched away, or stopped
  stopFollowing();
  const question = questionOf(current);
  if (current.status === "complete" && question?.status === "unanswered") {
    updateMessage({ ...question, status: "complete" }); // as the API stores it once a reply is complete
  }
  if (current.status === "complete") announce(`Reply: ${current.content}`);
  else announce(`The reply is ${current.status}.`);
  await afterExchange();
}

function stopFollowing() {
  if (!state.following) return;
  state.following = null;
  setSending(false);
  renderMessages(); // a question no longer being answered shows its status again
}

async function stopReply() {
  const id = state.following;
  const reply = state.messages.find((m) => m.messageId === id);
  if (!reply) return;
  const cancelled = await attempt("stop the reply", () => state.api.cancel(reply.sessionId, reply.chatId, reply.messageId));
  if (!cancelled || state.following !== id) return;
  stopFollowing();
  updateMessage(cancelled);
  announce("The reply was stopped.");
  $("message-input").focus();
}

async function afterExchange() {
  // Counts (messages, tokens) changed on the chat and the session.
  const sid = state.session.sessionId;
  const [session, chats] = await Promise.all([
    state.api.getSession(sid).catch(() => null),
    state.api.allChats(sid).catch(() => null),
  ]);
  if (session && state.session?.sessionId === sid) replaceSession(session);
  if (chats && state.session?.sessionId === sid) {
    state.chats = chats;
    renderChats();
    renderConversationHeader();
  }
  loadUsage();
}

async function send(event) {
  event.preventDefault();
  const chat = activeChat();
  const input = $("message-input");
  const content = input.value.trim();
  if (!chat || !content || state.sending) return;
  clearError();
  const placeholder = { role: "user", content, pending: true, messageId: `pending-${Date.now()}` };
  state.messages.push(placeholder);
  renderMessages();
  scrollToEnd();
  input.value = "";
  setSending(true);
  try {
    const result = await state.api.send(chat.sessionId, chat.chatId, content);
    state.messages = state.messages.filter((m) => m !== placeholder);
    setSending(false);
    showExchange(result);
    if (!state.following) await afterExchange();
  } catch (error) {
    state.messages = state.messages.filter((m) => m !== placeholder);
    input.value = content; // nothing typed is lost
    setSending(false);
    showError(describe("send the message", error));
    if (error instanceof ApiError && error.status === 401) {
      showSignIn();
      return;
    }
    // The user message may be stored unanswered (the model failed): show what the API holds.
    if (error instanceof ApiError && error.status >= 500) await loadHistoryKeepingError();
    renderMessages();
  }
  // Back to the message box, unless the user moved on while the counts were read.
  const here = document.activeElement;
  if (!here || here === document.body || $("send-form").contains(here)) input.focus();
}

async function loadHistoryKeepingError() {
  const text = $("error-text").textContent;
  await loadHistory();
  if (text) showError(text);
}

async function regenerate() {
  const chat = activeChat();
  if (!chat || state.sending) return;
  clearError();
  setSending(true);
  let result;
  try {
    result = await state.api.regenerate(chat.sessionId, chat.chatId);
  } catch (error) {
    setSending(false);
    showError(describe("regenerate the reply", error));
    return;
  }
  setSending(false);
  showExchange(result);
  if (!state.following) await afterExchange();
}

async function forkAt(message) {
  const chat = activeChat();
  const forked = await attempt("fork the chat", () => state.api.forkChat(chat.sessionId, chat.chatId, message.seq));
  if (!forked) return;
  announce(`Forked a new chat, ${forked.name}, from message ${message.seq}; it is the active chat.`);
  await refreshSession();
  $("message-input").focus();
}

async function editMessage(message) {
  const content = await ask({
    title: `Edit message ${message.seq} (a new chat branches off before it)`,
    label: "Message",
    value: message.content,
    multiline: true,
    confirm: "Send edited message",
    maxlength: 32000,
  });
  if (!content) return;
  const chat = activeChat();
  setSending(true);
  let result;
  try {
    result = await state.api.edit(chat.sessionId, chat.chatId, message.messageId, content);
  } catch (error) {
    setSending(false);
    showError(describe("edit the message", error));
    return;
  }
  setSending(false);
  const reply = result.assistantMessage;
  // A reply still generating (202) is followed, and read out, once the history is loaded.
  const said = reply && reply.status === "complete" ? ` Reply: ${reply.content}` : "";
  announce(`Edited in a new chat, ${result.chat?.name ?? ""}.${said}`);
  await refreshSession();
  // A reply that ended before the history was read is not followed: its counts (messages, tokens,
  // on the session and the user) are read here, else they stayed as the session's read before it.
  if (!state.following) await afterExchange();
  $("message-input").focus();
}

// --- wiring -----------------------------------------------------------------------------------

function wire() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("settings-toggle").addEventListener("click", toggleSettings);
  $("settings-form").addEventListener("submit", saveSettings);
  $("error-dismiss").addEventListener("click", clearError);
  $("new-session-form").addEventListener("submit", createSession);
  $("status-filter").addEventListener("change", () => {
    store.set("statusFilter", $("status-filter").value);
    loadSessions();
  });
  $("more-sessions").addEventListener("click", () => loadSessions(true));
  $("rename-session").addEventListener("click", renameSession);
  $("pause-session").addEventListener("click", () => sessionAction("pause", "pause the session"));
  $("resume-session").addEventListener("click", () => sessionAction("resume", "resume the session"));
  $("archive-session").addEventListener("click", () => sessionAction("archive", "archive the session"));
  $("unarchive-session").addEventListener("click", () => sessionAction("unarchive", "unarchive the session"));
  $("delete-session").addEventListener("click", deleteSession);
  $("new-chat-form").addEventListener("submit", createChat);
  $("send-form").addEventListener("submit", send);
  $("message-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("send-form").requestSubmit();
    }
  });
  $("regenerate").addEventListener("click", regenerate);
  $("stop").addEventListener("click", stopReply);
  $("load-earlier").addEventListener("click", loadEarlier);
  // Scrolling back to the top of the history loads the page before it.
  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadEarlier();
  }, { root: $("history") }).observe($("load-earlier"));
}

wire();
start();
