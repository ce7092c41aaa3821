// The WebSocket to the gateway: connect, heartbeat, acknowledge, and come back after
// every close that allows it, resuming from the last inbox cursor this device handled.
//
// The access token travels only in the subprotocol list ["chat.v1", "bearer.<token>"]:
// URLs end up in logs and histories, so the query string holds only device_id and cursor.
//
// Events: "state" ({state, retryInMs?, code?}), "frame" (every server frame, after the
// cursor bookkeeping), "open" (a `hello` arrived: the session is live).

const PROTOCOL = "chat.v1";
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const ACK_EVERY_MS = 1_000;
const TICK_MS = 1_000;
// Closes that end the session for good until the user acts (signs in again...).
const FATAL = new Set([1008]);

export class ChatSocket extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.url ws(s) URL of /v1/ws without a query
   * @param {string} options.deviceId stable id of this browser
   * @param {{get(): string|null, set(c: string): void}} options.cursor where the cursor lives
   * @param {() => string|null} options.token the current access token
   * @param {() => Promise<unknown>} options.refresh gets a new access token, or rejects
   */
  constructor({ url, deviceId, cursor, token, refresh }) {
    super();
    Object.assign(this, { url, deviceId, cursorStore: cursor, token, refreshToken: refresh });
    this.ws = null;
    this.state = "idle";
    this.attempt = 0;
    this.retryTimer = null;
    this.ticker = null;
    this.heartbeatMs = 5_000;
    this.lastSent = 0;
    this.lastReceived = 0;
    this.ackedCursor = null;
    this.lastAckAt = 0;
    this.stopped = true;
    this.refusedTokens = 0;
    this.onOnline = () => this.state === "reconnecting" && this.connectNow();
  }

  start() {
    this.stopped = false;
    window.addEventListener("online", this.onOnline);
    this.ticker = setInterval(() => this.tick(), TICK_MS);
    this.connect();
  }

  /** Close for good; code 1000 tells the gateway we left on purpose (offline at once). */
  stop() {
    this.stopped = true;
    this.flushAck();
    clearTimeout(this.retryTimer);
    clearInterval(this.ticker);
    window.removeEventListener("online", this.onOnline);
    this.drop(1000, "bye");
    this.setState("closed");
  }

  get isOpen() {
    return this.state === "connected";
  }

  /** Send a client frame; false when there is no live session to take it. */
  send(frame) {
    if (!this.isOpen || this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    this.lastSent = Date.now();
    return true;
  }

  /** Hand a fresh access token to the live session before the old one expires. */
  reauthenticate(token) {
    if (token) this.send({ type: "auth", token });
  }

  connect() {
    clearTimeout(this.retryTimer);
    const token = this.token();
    if (!token) {
      this.setState("closed");
      return;
    }
    const query = new URLSearchParams({ device_id: this.deviceId });
    const cursor = this.cursorStore.get();
    if (cursor) query.set("cursor", cursor);
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new WebSocket(`${this.url}?${query}`, [PROTOCOL, `bearer.${token}`]);
    } catch {
      this.retry(null);
      return;
    }
    this.ws = ws;
    this.lastReceived = Date.now();
    ws.onmessage = (event) => this.receive(ws, event.data);
    ws.onclose = (event) => this.closed(ws, event.code);
  }

  connectNow() {
    this.attempt = Math.max(this.attempt, 1);
    this.drop(1000, "reconnect");
    this.connect();
  }

  /** Forget a socket: no more events from it, whatever state it is in. */
  drop(code, reason) {
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.onmessage = ws.onclose = null;
    if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) {
      ws.close(code, reason);
    }
  }

  receive(ws, data) {
    if (ws !== this.ws) return;
    this.lastReceived = Date.now();
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame.type === "hello") {
      this.heartbeatMs = frame.heartbeat_interval_ms || this.heartbeatMs;
      // The session replays everything after this cursor: it is our new position.
      this.cursorStore.set(frame.cursor);
      this.ackedCursor = null;
      this.attempt = 0;
      this.refusedTokens = 0;
      this.setState("connected");
      this.lastSent = Date.now();
      this.dispatchEvent(new CustomEvent("open", { detail: frame }));
    }
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
    // Advance only after the frame was handled: a crash in between replays it.
    if ((frame.type === "message" || frame.type === "resync") && frame.cursor) {
      this.cursorStore.set(frame.cursor);
    }
  }

  async closed(ws, code) {
    if (ws !== this.ws) return;
    this.ws = null;
    if (this.stopped) return;
    if (code === 4401) {
      // The token was refused or ran out: a new one, then straight back. A second
      // refusal in a row (no hello in between) waits like any other failure.
      this.setState("reconnecting", { code });
      const refusedBefore = this.refusedTokens > 0;
      this.refusedTokens += 1;
      try {
        await this.refreshToken();
      } catch {
        // No session left (the login screen takes over), or auth is unreachable: retry.
        if (this.token()) this.retry(code);
        else this.setState("closed", { code });
        return;
      }
      if (this.stopped) return;
      if (refusedBefore) this.retry(code);
      else this.connect();
      return;
    }
    if (FATAL.has(code)) {
      this.setState("refused", { code });
      return;
    }
    // 4429 (too many connections) is not cured by hurrying back.
    this.retry(code, code === 4429 ? 4 : 0);
  }

  retry(code, extraSteps = 0) {
    this.attempt += 1;
    const step = Math.min(this.attempt - 1 + extraSteps, 10);
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** step);
    // Jitter spreads a crowd of clients after a gateway restart (1012).
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.setState("reconnecting", { code, retryInMs: delay });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** Heartbeat, acks, and detection of a connection that died without a close. */
  tick() {
    if (!this.isOpen) return;
    const now = Date.now();
    if (now - this.lastReceived > this.heartbeatMs * 3 + 5_000) {
      // Nothing heard (not even a pong) for several beats: the link is gone.
      this.drop(1000, "silent");
      this.retry(null);
      return;
    }
    if (now - this.lastAckAt >= ACK_EVERY_MS) this.flushAck();
    if (now - this.lastSent >= this.heartbeatMs) this.send({ type: "ping" });
  }

  flushAck() {
    const cursor = this.cursorStore.get();
    if (cursor && cursor !== this.ackedCursor && this.send({ type: "ack", cursor })) {
      this.ackedCursor = cursor;
      this.lastAckAt = Date.now();
    }
  }

  setState(state, detail = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...detail } }));
  }
}
