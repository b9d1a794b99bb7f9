// The chat-sessions HTTP API as the console uses it: one fetch per call, errors as ApiError
// carrying the contract's {"error": {"code", "message"}} so the page can say what went wrong.

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status; // 0 when the API could not be reached at all
    this.code = code;
    this.details = details;
  }
}

/** The API at baseUrl ("" = the page's own origin), called with a bearer token. */
export class Api {
  constructor(baseUrl, token) {
    this.baseUrl = (baseUrl || "").replace(/\/+$/, "");
    this.token = token;
  }

  async request(method, path, { body, query, idempotent = false, auth = true, headers: extra = {} } = {}) {
    const url = new URL(this.baseUrl + path, location.href);
    for (const [name, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
    }
    const headers = { Accept: "application/json", ...extra };
    if (auth && this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    // A POST that is retried (a double click, a lost answer) is answered once (the contract's
    // Idempotency-Key): sends and regenerations are never stored twice.
    if (idempotent) headers["Idempotency-Key"] = crypto.randomUUID();
    let response;
    try {
      response = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError(0, "unreachable", `The API at ${url.origin} could not be reached (${error.message}).`);
    }
    if (response.status === 204) return null;
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    if (!response.ok) {
      const error = parsed && typeof parsed === "object" ? parsed.error : null;
      if (error && typeof error.message === "string") {
        throw new ApiError(response.status, error.code || "error", error.message, error.details);
      }
      throw new ApiError(response.status, "http_error", `The API answered HTTP ${response.status} ${response.statusText}.`);
    }
    return parsed;
  }

  // local stack only: a token for a user name (POST /local/token)
  localToken(user) {
    return this.request("POST", "/local/token", { body: { user }, auth: false });
  }

  // sessions
  listSessions(query) { return this.request("GET", "/sessions", { query }); }
  getSession(sid) { return this.request("GET", `/sessions/${enc(sid)}`); }
  createSession(name) { return this.request("POST", "/sessions", { body: { name }, idempotent: true }); }
  renameSession(sid, name) { return this.request("PATCH", `/sessions/${enc(sid)}`, { body: { name } }); }
  sessionAction(sid, action) { return this.request("POST", `/sessions/${enc(sid)}/${action}`); }
  deleteSession(sid) { return this.request("DELETE", `/sessions/${enc(sid)}`); }
  usage() { return this.request("GET", "/me/usage"); }

  // chats
  async allChats(sid) {
    const chats = [];
    let cursor = null;
    do {
      const page = await this.request("GET", `/sessions/${enc(sid)}/chats`, { query: { limit: 100, cursor } });
      chats.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor);
    return chats;
  }
  createChat(sid, name) {
    return this.request("POST", `/sessions/${enc(sid)}/chats`, { body: { name }, idempotent: true });
  }
  renameChat(sid, cid, name) {
    return this.request("PATCH", `/sessions/${enc(sid)}/chats/${enc(cid)}`, { body: { name } });
  }
  activateChat(sid, cid) { return this.request("POST", `/sessions/${enc(sid)}/chats/${enc(cid)}/activate`); }
  deleteChat(sid, cid) { return this.request("DELETE", `/sessions/${enc(sid)}/chats/${enc(cid)}`); }
  forkChat(sid, cid, uptoSeq) {
    return this.request("POST", `/sessions/${enc(sid)}/chats/${enc(cid)}/fork`, { body: { uptoSeq }, idempotent: true });
  }

  // messages
  messages(sid, cid, limit, cursor) {
    return this.request("GET", `/sessions/${enc(sid)}/chats/${enc(cid)}/messages`, {
      query: { order: "desc", limit, cursor },
    });
  }
  // Sends and regenerations ask for the reply to be generated after the answer (the contract's
  // `Prefer: respond-async`: 202, the assistant message `generating`); an API that does not do
  // that ignores the header and answers 201 with the whole reply.
  send(sid, cid, content) {
    return this.request("POST", `/sessions/${enc(sid)}/chats/${enc(cid)}/messages`, {
      body: { content },
      idempotent: true,
      headers: ASYNC,
    });
  }
  regenerate(sid, cid) {
    return this.request("POST", `/sessions/${enc(sid)}/chats/${enc(cid)}/regenerate`, { idempotent: true, headers: ASYNC });
  }
  /** A message, once its content is longer than `after` characters or it is no longer generating
   * (the API waits up to `wait` seconds). */
  message(sid, cid, mid, wait, after) {
    return this.request("GET", `/sessions/${enc(sid)}/chats/${enc(cid)}/messages/${enc(mid)}`, { query: { wait, after } });
  }
  cancel(sid, cid, mid) {
    return this.request("POST", `/sessions/${enc(sid)}/chats/${enc(cid)}/messages/${enc(mid)}/cancel`);
  }
  edit(sid, cid, mid, content) {
    return this.request("POST", `/sessions/${enc(sid)}/chats/${enc(cid)}/messages/${enc(mid)}/edit`, {
      body: { content },
      idempotent: true,
      headers: ASYNC,
    });
  }
}

const ASYNC = { Prefer: "respond-async" };

function enc(id) {
  return encodeURIComponent(id);
}

/** The user a JWT names (its sub claim), read without verifying: for display only. */
export function tokenSubject(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return typeof claims.sub === "string" ? claims.sub : null;
  } catch {
    return null;
  }
}
