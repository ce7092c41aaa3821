// Messages typed but not yet confirmed by a `sent` frame. Each keeps its client_id
// until it is settled, so however often it goes out (after a reconnect, a timeout, a
// reload: the outbox lives in sessionStorage) the gateway stores it once.

import { randomId } from "./dom.js";

const RESEND_AFTER_MS = 10_000;
// The gateway closes a socket on frames over its size limit (256 KiB by default).
const MAX_FRAME_BYTES = 250_000;

export class Outbox {
  constructor({ store, socket, config, notify }) {
    Object.assign(this, { store, socket, config, notify });
    this.key = null;
  }

  /** Pick up what this tab had not sent before a reload. */
  load(userId) {
    this.key = `chat.outbox.${userId}`;
    try {
      for (const entry of JSON.parse(sessionStorage.getItem(this.key) || "[]")) {
        this.store.pending.set(entry.client_id, { ...entry, sentAt: 0, retryAt: 0 });
      }
    } catch {
      sessionStorage.removeItem(this.key);
    }
  }

  save() {
    const entries = [...this.store.pending.values()].map(
      ({ client_id, conversation_id, body, created_at, status, error }) => ({
        client_id,
        conversation_id,
        body,
        created_at,
        status,
        error,
      }),
    );
    sessionStorage.setItem(this.key, JSON.stringify(entries));
  }

  /** Queue a message and send it if the socket is up; false when it cannot be sent. */
  add(conversationId, body) {
    const max = this.config.max_message_chars;
    if (!body.trim()) return false;
    if ([...body].length > max) {
      this.notify(`Messages are limited to ${max} characters.`);
      return false;
    }
    const pending = {
      client_id: randomId("c"),
      conversation_id: conversationId,
      body,
      created_at: new Date().toISOString(),
      status: "sending",
      sentAt: 0,
      retryAt: 0,
    };
    const frame = JSON.stringify({ type: "send", ...pending });
    if (new TextEncoder().encode(frame).length > MAX_FRAME_BYTES) {
      this.notify("That message is too large to send.");
      return false;
    }
    this.store.pending.set(pending.client_id, pending);
    this.save();
    this.transmit(pending);
    this.store.changed(`messages:${conversationId}`, "list");
    return true;
  }

  transmit(pending) {
    const sent = this.socket.send({
      type: "send",
      client_id: pending.client_id,
      conversation_id: pending.conversation_id,
      body: pending.body,
    });
    if (sent) pending.sentAt = Date.now();
  }

  /** After a (re)connect: everything still waiting goes out again. */
  resendAll() {
    for (const pending of this.store.pending.values()) {
      if (pending.status === "sending") this.transmit(pending);
    }
  }

  /** The message is stored (a `sent` frame, or our own message in the inbox). */
  settle(clientId) {
    const pending = this.store.pending.get(clientId);
    if (!pending) return null;
    this.store.pending.delete(clientId);
    this.save();
    return pending;
  }

  /** An `error` frame about one of ours; false when it is about something else. */
  refused(frame) {
    const pending = frame.client_id ? this.store.pending.get(frame.client_id) : null;
    if (!pending) return false;
    if (frame.code === "rate_limited" || frame.code === "unavailable") {
      // Not the message's fault: the same client_id goes out again later.
      pending.retryAt = Date.now() + (frame.retry_after_ms || 1_000);
      pending.sentAt = 0;
    } else {
      pending.status = "failed";
      pending.error = frame.message;
      this.save();
    }
    this.store.changed(`messages:${pending.conversation_id}`);
    return true;
  }

  retry(clientId) {
    const pending = this.store.pending.get(clientId);
    if (!pending) return;
    Object.assign(pending, { status: "sending", error: null, sentAt: 0, retryAt: 0 });
    this.save();
    this.transmit(pending);
    this.store.changed(`messages:${pending.conversation_id}`);
  }

  discard(clientId) {
    const pending = this.settle(clientId);
    if (pending) this.store.changed(`messages:${pending.conversation_id}`, "list");
  }

  /** Once a second: resend what got no answer, or whose retry time came. */
  tick(now) {
    for (const pending of this.store.pending.values()) {
      const due = !pending.sentAt || now - pending.sentAt > RESEND_AFTER_MS;
      if (pending.status === "sending" && due && now >= pending.retryAt) this.transmit(pending);
    }
  }

  /** Logging out: unsent text should not stay behind on a shared computer. */
  clear() {
    this.store.pending.clear();
    if (this.key) sessionStorage.removeItem(this.key);
  }
}
