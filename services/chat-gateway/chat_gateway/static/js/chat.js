// The controller: turns socket frames and user actions into store changes and requests.
//
// Consistency rules (see docs/web-client.md):
// - messages are keyed by (conversation, seq); whatever arrives twice lands once;
// - every `hello` (first connect and every reconnect) reloads the conversation list and
//   fills each loaded conversation after its highest seq, so nothing is missed even when
//   the inbox could not replay (a new device, a `resync`);
// - unsent messages stay in an outbox (sessionStorage) and go out again with the same
//   client_id after a reconnect; the gateway stores each client_id once.

import { PAGE_SIZE } from "./api.js";
import { Outbox } from "./outbox.js";
import { Conversation, TYPING_TTL_MS } from "./store.js";

const TYPING_REFRESH_MS = 3_000;
const TYPING_IDLE_MS = 5_000;

export class Chat {
  constructor({ api, session, socket, store, config, notify }) {
    Object.assign(this, { api, session, socket, store, config, notify });
    this.outbox = new Outbox({ store, socket, config, notify });
    this.fetchingConversation = new Map();
    this.filling = new Map();
    this.usersInFlight = new Set();
    this.typingSent = { conversationId: null, at: 0 };
    this.typingIdleTimer = null;
    this.ticker = null;
  }

  async start() {
    const me = await this.api.me();
    this.store.me = me;
    this.store.users.set(me.id, me);
    this.outbox.load(me.id);
    this.socket.addEventListener("state", (event) => {
      this.store.connection = event.detail;
      this.store.changed("connection");
    });
    this.socket.addEventListener("open", () => this.synchronize());
    this.socket.addEventListener("frame", (event) => this.handleFrame(event.detail));
    this.onTokens = (event) => this.socket.reauthenticate(event.detail);
    this.onVisibility = () => this.store.open && this.markRead(this.store.open);
    this.session.addEventListener("tokens", this.onTokens);
    document.addEventListener("visibilitychange", this.onVisibility);
    this.ticker = setInterval(() => this.tick(), 1_000);
    this.store.changed("me", "list");
    this.socket.start();
    await this.refreshConversations();
  }

  stop({ forget = false } = {}) {
    clearInterval(this.ticker);
    this.session.removeEventListener("tokens", this.onTokens);
    document.removeEventListener("visibilitychange", this.onVisibility);
    this.socket.stop();
    if (forget) this.outbox.clear();
  }

  // Loading ----------------------------------------------------------------------------

  /** After every (re)connect: the list, the gaps, the outbox, presence. */
  async synchronize() {
    try {
      await this.refreshConversations();
      for (const conversation of this.store.conversations.values()) {
        if (conversation.loaded) this.fillAfter(conversation);
      }
      this.outbox.resendAll();
    } catch (error) {
      console.warn("synchronize failed", error);
    }
  }

  async refreshConversations() {
    const list = await this.api.conversations();
    const seen = new Set();
    for (const data of list) {
      seen.add(data.id);
      const known = this.store.conversations.get(data.id);
      if (known) known.merge(data);
      else this.store.conversations.set(data.id, new Conversation(data));
    }
    for (const id of [...this.store.conversations.keys()]) {
      if (!seen.has(id)) this.store.conversations.delete(id);
    }
    this.store.listLoaded = true;
    this.store.changed("list", "open");
    const members = new Set(list.flatMap((c) => c.members));
    await this.ensureUsers([...members]);
    await this.loadPresence();
  }

  /** A conversation this client has not seen yet (someone started it with us). */
  conversation(id) {
    const known = this.store.conversations.get(id);
    if (known) return Promise.resolve(known);
    if (!this.fetchingConversation.has(id)) {
      const request = this.api
        .conversation(id)
        .then((data) => {
          const conversation =
            this.store.conversations.get(id) ?? new Conversation(data);
          this.store.conversations.set(id, conversation);
          this.store.changed("list", "open");
          this.ensureUsers(conversation.members).then(() => this.loadPresence());
          return conversation;
        })
        .catch(() => null)
        .finally(() => this.fetchingConversation.delete(id));
      this.fetchingConversation.set(id, request);
    }
    return this.fetchingConversation.get(id);
  }

  /** How far each member has read, so "read by" survives a reload (receipts only
   *  tell what happens while this page is open). */
  async loadReadMarkers(conversation) {
    try {
      const data = await this.api.conversation(conversation.id);
      for (const [userId, seq] of Object.entries(data.read_markers ?? {})) {
        if (userId === this.store.me.id) continue;
        conversation.readBy.set(userId, Math.max(conversation.readBy.get(userId) || 0, seq));
      }
      this.store.changed(`messages:${conversation.id}`);
    } catch (error) {
      console.warn("read markers lookup failed", error);
    }
  }

  async ensureUsers(ids) {
    const missing = ids.filter((id) => !this.store.users.has(id) && !this.usersInFlight.has(id));
    if (!missing.length) return;
    missing.forEach((id) => this.usersInFlight.add(id));
    try {
      for (const user of await this.api.usersByIds(missing)) this.store.users.set(user.id, user);
      this.store.changed("list", "open", "users");
    } catch (error) {
      console.warn("user lookup failed", error);
    } finally {
      missing.forEach((id) => this.usersInFlight.delete(id));
    }
  }

  async loadPresence() {
    const ids = new Set();
    for (const conversation of this.store.conversations.values()) {
      this.store.others(conversation).forEach((id) => ids.add(id));
    }
    if (!ids.size) return;
    try {
      for (const entry of await this.api.presence([...ids])) {
        this.store.presence.set(entry.user_id, entry);
      }
      this.store.changed("presence");
    } catch (error) {
      console.warn("presence lookup failed", error);
    }
  }

  async open(id) {
    this.store.openId = id;
    this.store.changed("open", "list");
    if (!id) return;
    const conversation = await this.conversation(id);
    if (!conversation) {
      this.notify("That conversation does not exist or you are not a member.");
      this.store.openId = null;
      this.store.changed("open", "list");
      return;
    }
    this.markRead(conversation); // the list already knows its last seq
    if (!conversation.loaded) this.loadReadMarkers(conversation);
    try {
      if (!conversation.loaded) await this.loadLatest(conversation);
      else await this.fillAfter(conversation);
    } catch (error) {
      this.notify(`Could not load messages: ${error.message}`);
    }
    this.markRead(conversation);
  }

  async loadLatest(conversation) {
    const page = await this.api.messages(conversation.id, { limit: PAGE_SIZE });
    page.messages.forEach((message) => conversation.addMessage(message));
    conversation.loaded = true;
    conversation.hasOlder = page.has_more;
    await this.ensureUsers([...new Set(page.messages.map((m) => m.sender_id))]);
    this.store.changed(`messages:${conversation.id}`, "list");
  }

  async loadOlder(conversation) {
    const before = conversation.minSeq;
    if (conversation.loadingOlder || !conversation.hasOlder || before === null) return;
    conversation.loadingOlder = true;
    this.store.changed(`messages:${conversation.id}`);
    try {
      const page = await this.api.messages(conversation.id, { before, limit: PAGE_SIZE });
      page.messages.forEach((message) => conversation.addMessage(message));
      conversation.hasOlder = page.has_more;
      await this.ensureUsers([...new Set(page.messages.map((m) => m.sender_id))]);
    } finally {
      conversation.loadingOlder = false;
      this.store.changed(`messages:${conversation.id}`);
    }
  }

  /** Everything after the highest seq held, page by page (one run per conversation). */
  fillAfter(conversation) {
    if (!this.filling.has(conversation.id)) {
      const run = (async () => {
        for (;;) {
          const after = conversation.maxSeq;
          const page = await this.api.messages(conversation.id, { after, limit: 200 });
          page.messages.forEach((message) => conversation.addMessage(message));
          this.store.changed(`messages:${conversation.id}`, "list");
          if (!page.has_more || !page.messages.length) break;
        }
        if (this.isViewing(conversation)) this.markRead(conversation);
      })()
        .catch((error) => console.warn("gap fill failed", error))
        .finally(() => this.filling.delete(conversation.id));
      this.filling.set(conversation.id, run);
    }
    return this.filling.get(conversation.id);
  }

  // Socket frames --------------------------------------------------------------------

  handleFrame(frame) {
    switch (frame.type) {
      case "message":
        return this.onMessage(frame.message);
      case "sent":
        return this.onSent(frame);
      case "receipt":
        return this.onReceipt(frame);
      case "typing":
        return this.onTyping(frame);
      case "presence":
        this.store.presence.set(frame.user_id, frame);
        return this.store.changed("presence");
      case "resync":
        return this.synchronize();
      case "error":
        return this.onError(frame);
      default:
        return undefined;
    }
  }

  async onMessage(message) {
    const conversation = await this.conversation(message.conversation_id);
    if (!conversation) return;
    const mine = message.sender_id === this.store.me.id;
    if (mine) this.outbox.settle(message.client_id);
    const gap = conversation.loaded && message.seq > conversation.maxSeq + 1;
    const isNew = conversation.addMessage(message);
    conversation.typing.delete(message.sender_id);
    if (isNew && !mine) {
      if (this.isViewing(conversation)) this.markRead(conversation);
      else conversation.unread_count += 1;
    }
    if (gap) this.fillAfter(conversation);
    if (!this.store.users.has(message.sender_id)) this.ensureUsers([message.sender_id]);
    this.store.changed("list", `messages:${conversation.id}`, `typing:${conversation.id}`);
  }

  onSent(frame) {
    const pending = this.outbox.settle(frame.client_id);
    if (!pending) return;
    const conversation = this.store.conversations.get(frame.conversation_id);
    if (conversation) {
      conversation.addMessage({
        id: frame.message_id,
        conversation_id: frame.conversation_id,
        seq: frame.seq,
        sender_id: this.store.me.id,
        body: pending.body,
        client_id: frame.client_id,
        created_at: frame.created_at,
      });
      if (this.isViewing(conversation)) this.markRead(conversation);
    }
    this.store.changed("list", `messages:${frame.conversation_id}`);
  }

  onReceipt({ conversation_id: id, user_id: userId, seq }) {
    const conversation = this.store.conversations.get(id);
    if (!conversation) return;
    if (userId === this.store.me.id) {
      // Read on this or another device of mine: the unread count follows everywhere.
      conversation.readSent = Math.max(conversation.readSent, seq);
      conversation.unread_count = Math.max(0, conversation.last_seq - conversation.readSent);
      this.store.changed("list");
    } else {
      conversation.readBy.set(userId, Math.max(conversation.readBy.get(userId) || 0, seq));
    }
    this.store.changed(`messages:${id}`);
  }

  onTyping({ conversation_id: id, user_id: userId, active }) {
    const conversation = this.store.conversations.get(id);
    if (!conversation || userId === this.store.me.id) return;
    if (active) conversation.typing.set(userId, Date.now() + TYPING_TTL_MS);
    else conversation.typing.delete(userId);
    this.store.changed(`typing:${id}`, "list");
  }

  onError(frame) {
    if (this.outbox.refused(frame)) return;
    console.warn("gateway refused a frame", frame.code, frame.message);
    if (frame.code === "not_member") {
      this.notify("You are no longer a member of that conversation.");
    }
  }

  // User actions -----------------------------------------------------------------------

  isViewing(conversation) {
    return this.store.openId === conversation.id && document.visibilityState === "visible";
  }

  markRead(conversation) {
    const seq = conversation.last_seq;
    if (!this.isViewing(conversation) || seq <= conversation.readSent) return;
    const frame = { type: "read", conversation_id: conversation.id, seq };
    if (!this.socket.send(frame)) {
      this.api.markRead(conversation.id, seq).catch((e) => console.warn("read failed", e));
    }
    conversation.readSent = seq;
    conversation.unread_count = 0;
    this.store.changed("list");
  }

  /** Post a message: a local echo now, the stored message when `sent` comes back. */
  send(conversationId, body) {
    const queued = this.outbox.add(conversationId, body);
    if (queued) this.stopTyping(conversationId);
    return queued;
  }

  retry(clientId) {
    this.outbox.retry(clientId);
  }

  discard(clientId) {
    this.outbox.discard(clientId);
  }

  /** Called on every edit of the message box: typing frames, throttled. */
  typing(conversationId, text) {
    if (!text.trim()) return this.stopTyping(conversationId);
    const now = Date.now();
    const sent = this.typingSent;
    if (sent.conversationId !== conversationId || now - sent.at >= TYPING_REFRESH_MS) {
      if (this.socket.send({ type: "typing", conversation_id: conversationId, active: true })) {
        this.typingSent = { conversationId, at: now };
      }
    }
    clearTimeout(this.typingIdleTimer);
    this.typingIdleTimer = setTimeout(() => this.stopTyping(conversationId), TYPING_IDLE_MS);
    return undefined;
  }

  stopTyping(conversationId) {
    clearTimeout(this.typingIdleTimer);
    if (this.typingSent.conversationId !== conversationId) return;
    this.typingSent = { conversationId: null, at: 0 };
    this.socket.send({ type: "typing", conversation_id: conversationId, active: false });
  }

  async startDirect(user) {
    this.store.users.set(user.id, user);
    return this.adopt(await this.api.createDirect(user.id));
  }

  /** A group from a name and usernames (each must match a user exactly). */
  async createGroup(name, usernames) {
    const ids = [];
    for (const username of usernames) {
      const wanted = username.toLowerCase();
      const found = (await this.api.searchUsers(wanted, 5)).find((u) => u.username === wanted);
      if (!found) throw new Error(`There is no user named "${username}".`);
      this.store.users.set(found.id, found);
      ids.push(found.id);
    }
    return this.adopt(await this.api.createGroup(name, ids));
  }

  adopt(data) {
    const known = this.store.conversations.get(data.id);
    if (known) known.merge(data);
    else this.store.conversations.set(data.id, new Conversation(data));
    this.store.changed("list");
    this.loadPresence();
    return data.id;
  }

  // Housekeeping -----------------------------------------------------------------------

  tick() {
    const now = Date.now();
    this.outbox.tick(now);
    for (const conversation of this.store.conversations.values()) {
      if (conversation.expireTyping(now)) this.store.changed(`typing:${conversation.id}`, "list");
    }
    // Relative times ("last active 3 minutes ago") move on by themselves.
    if (now - (this.clockAt || 0) >= 30_000) {
      this.clockAt = now;
      this.store.changed("clock");
    }
  }
}
