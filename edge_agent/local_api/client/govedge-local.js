// govedge local API client: an ES module, no build step. Types: govedge-local.d.ts.
// Served by the agent at /client/govedge-local.js; see docs/local-api.md.

/** Every local-API route: [function name, method, path]. Tests compare it with OpenAPI. */
export const ROUTES = [
  ["listDevices", "GET", "/v1/devices"],
  ["getDevice", "GET", "/v1/devices/{device_id}"],
  ["readIdCard", "POST", "/v1/id-card/read"],
  ["readSocialSecurityCard", "POST", "/v1/social-security/read"],
  ["captureDocument", "POST", "/v1/documents/capture"],
  ["evaluate", "POST", "/v1/evaluations"],
  ["takeTicket", "POST", "/v1/tickets"],
  ["queueState", "GET", "/v1/queue"],
  ["loadAppointments", "POST", "/v1/appointments"],
  ["checkInAppointment", "POST", "/v1/appointments/check-in"],
  ["announcementUrl", "GET", "/v1/announcements/{announcement_id}.wav"],
  ["windowCall", "POST", "/v1/windows/{window}/call"],
  ["windowRecall", "POST", "/v1/windows/{window}/recall"],
  ["windowSkip", "POST", "/v1/windows/{window}/skip"],
  ["windowHold", "POST", "/v1/windows/{window}/hold"],
  ["windowFinish", "POST", "/v1/windows/{window}/finish"],
  ["windowPause", "POST", "/v1/windows/{window}/pause"],
  ["windowResume", "POST", "/v1/windows/{window}/resume"],
  ["windowTransfer", "POST", "/v1/windows/{window}/transfer"],
  ["windowCallBack", "POST", "/v1/windows/{window}/call-back"],
  ["evaluationQr", "GET", "/v1/windows/{window}/evaluation-qr"],
  ["submit", "POST", "/v1/submissions"],
  ["transactionStatus", "GET", "/v1/transactions/{tx_id}"],
];

/** An error answered by the agent (or a network failure: status 0, code "network_error"). */
export class GovedgeError extends Error {
  constructor(status, code, message, hint) {
    super(message);
    this.name = "GovedgeError";
    this.status = status;
    this.code = code;
    this.hint = hint;
  }
}

/** A fresh Idempotency-Key (8–64 of A-Z a-z 0-9 _ -) for one logical operation. */
export function newIdempotencyKey(prefix = "op") {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${prefix.replace(/[^A-Za-z0-9_-]/g, "").slice(0, 20)}-${hex}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class GovedgeLocal {
  /** @param {{baseUrl?: string, token: string, retries?: number}} options */
  constructor({ baseUrl = "http://127.0.0.1:8765", token, retries = 2 }) {
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.token = token;
    this.retries = retries;
  }

  /** One call; network errors retry with the SAME Idempotency-Key (never a second case). */
  async request(method, path, { body, query, idempotencyKey } = {}) {
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers = { Authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
    for (let attempt = 0; ; attempt++) {
      let response;
      try {
        response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      } catch (exc) {
        // Only calls that are safe to repeat are retried: GETs and keyed POSTs.
        if (attempt < this.retries && (method === "GET" || idempotencyKey)) { await sleep(500 * (attempt + 1)); continue; }
        throw await this.#unreachable(exc);
      }
      const text = await response.text();
      let data = null;
      try { data = text ? JSON.parse(text) : null; } catch { data = null; }
      if (!response.ok) {
        const d = data ?? {};
        throw new GovedgeError(response.status, d.error ?? "http_error", d.message ?? text, d.hint ?? "");
      }
      return data;
    }
  }

  /**
   * Why a call got no answer. A browser hides a refused CORS preflight (an origin the
   * agent does not know) behind the same TypeError as a stopped agent, so ask for the
   * public client file, which any origin may read: if it answers, the agent runs and
   * refused this page.
   */
  async #unreachable(exc) {
    let agentAnswers = false;
    try { agentAnswers = (await fetch(`${this.baseUrl}/client/govedge-local.js`)).ok; } catch { agentAnswers = false; }
    const origin = globalThis.location?.origin ?? "this page's origin";
    if (agentAnswers) {
      return new GovedgeError(403, "origin_not_allowed", `the outlet agent refused requests from ${origin}`,
        `register it: edge-agent apps add NAME --origin ${origin}`);
    }
    return new GovedgeError(0, "network_error", String(exc),
      "the outlet agent is not reachable from this page: check that it runs on this PC and that the browser allows this site local network access");
  }

  listDevices() { return this.request("GET", "/v1/devices"); }
  getDevice(deviceId) { return this.request("GET", `/v1/devices/${encodeURIComponent(deviceId)}`); }
  readIdCard(body = {}) { return this.request("POST", "/v1/id-card/read", { body }); }
  readSocialSecurityCard(body = {}) { return this.request("POST", "/v1/social-security/read", { body }); }
  captureDocument(body = {}, format) { return this.request("POST", "/v1/documents/capture", { body, query: { format } }); }
  evaluate(body, idempotencyKey = newIdempotencyKey("eval")) {
    return this.request("POST", "/v1/evaluations", { body, idempotencyKey });
  }
  takeTicket(body) { return this.request("POST", "/v1/tickets", { body }); }
  queueState() { return this.request("GET", "/v1/queue"); }
  loadAppointments(body) { return this.request("POST", "/v1/appointments", { body }); }
  checkInAppointment(body) { return this.request("POST", "/v1/appointments/check-in", { body }); }
  announcementUrl(announcementId) { return `${this.baseUrl}/v1/announcements/${encodeURIComponent(announcementId)}.wav`; }
  // call … resume take no body (their OpenAPI operations have none); transfer and
  // call-back do.
  #window(window, action, body) { return this.request("POST", `/v1/windows/${encodeURIComponent(window)}/${action}`, { body }); }
  windowCall(window) { return this.#window(window, "call"); }
  windowRecall(window) { return this.#window(window, "recall"); }
  windowSkip(window) { return this.#window(window, "skip"); }
  windowHold(window) { return this.#window(window, "hold"); }
  windowFinish(window) { return this.#window(window, "finish"); }
  windowPause(window) { return this.#window(window, "pause"); }
  windowResume(window) { return this.#window(window, "resume"); }
  windowTransfer(window, body) { return this.#window(window, "transfer", body); }
  windowCallBack(window, body) { return this.#window(window, "call-back", body); }
  /** The 好差评 QR code for a padless window (default case: its current ticket). */
  evaluationQr(window, caseNumber) {
    return this.request("GET", `/v1/windows/${encodeURIComponent(window)}/evaluation-qr`, { query: { case_number: caseNumber } });
  }
  /** The key becomes the tx_id; keep it for the case so a retry never files twice. */
  submit(body, idempotencyKey = newIdempotencyKey("case")) {
    return this.request("POST", "/v1/submissions", { body, idempotencyKey });
  }
  transactionStatus(txId) { return this.request("GET", `/v1/transactions/${encodeURIComponent(txId)}`); }

  /**
   * The event stream (WS /v1/events, sub-protocols ["govedge.v1", "bearer." + token]),
   * reconnecting after a drop with a growing delay. Returns a handle with close().
   */
  events(onEvent, { onState = () => {}, maxDelayMs = 10000 } = {}) {
    const wsUrl = this.baseUrl.replace(/^http/, "ws") + "/v1/events";
    let socket = null, closed = false, delay = 500;
    const connect = () => {
      if (closed) return;
      socket = new WebSocket(wsUrl, ["govedge.v1", `bearer.${this.token}`]);
      socket.onopen = () => { delay = 500; onState("open"); };
      socket.onmessage = (message) => { try { onEvent(JSON.parse(message.data)); } catch { /* not JSON: ignored */ } };
      socket.onclose = () => {
        if (closed) return;
        onState("reconnecting");
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, maxDelayMs);
      };
    };
    connect();
    return { close() { closed = true; socket?.close(); onState("closed"); } };
  }
}
