// Client state, and the rules for merging what the REST APIs and the socket report.
// Views read from here and re-render when told which part changed.

export const TYPING_TTL_MS = 5_000;

/** One conversation: what GET /v1/conversations says plus what the socket added since. */
export class Conversation {
  constructor(data) {
    this.messages = new Map(); // seq -> message, a contiguous range once loaded
    this.loaded = false; // the newest page was fetched (the range reaches last_seq)
    this.hasOlder = false;
    this.readBy = new Map(); // other user id -> highest seq they read (from receipts)
    this.typing = new Map(); // user id -> time the indicator expires
    this.readSent = 0; // highest seq this client marked read
    this.update(data);
  }

  update(data) {
    this.id = data.id;
    this.kind = data.kind;
    this.name = data.name;
    this.members = data.members || [];
    this.last_seq = data.last_seq || 0;
    this.last_message = data.last_message || null;
    this.unread_count = data.unread_count || 0;
    this.updated_at = data.updated_at || data.created_at || "";
  }

  get minSeq() {
    let min = Infinity;
    for (const seq of this.messages.keys()) min = Math.min(min, seq);
    return min === Infinity ? null : min;
  }

  get maxSeq() {
    let max = 0;
    for (const seq of this.messages.keys()) max = Math.max(max, seq);
    return max;
  }

  /** Stored messages oldest first. */
  ordered() {
    return [...this.messages.values()].sort((a, b) => a.seq - b.seq);
  }

  /** Keep a message; true when it is newer than anything this conversation knew. */
  addMessage(message) {
    this.messages.set(message.seq, message);
    if (message.seq > this.last_seq) {
      this.last_seq = message.seq;
      this.last_message = message;
      this.updated_at = message.created_at;
      return true;
    }
    if (message.seq === this.last_seq) this.last_message = message;
    return false;
  }

  /** Merge a REST snapshot, which may lag behind what the socket already delivered. */
  merge(data) {
    const localSeq = this.last_seq;
    const localUnread = this.unread_count;
    const localMessage = this.last_message;
    const localUpdated = this.updated_at;
    this.update(data);
    if (localSeq > this.last_seq) {
      this.last_seq = localSeq;
      this.last_message = localMessage;
      this.updated_at = localUpdated;
      this.unread_count = Math.max(this.unread_count, localUnread);
    }
    if (this.readSent) {
      // Our read marker may not have reached history yet.
      this.unread_count = Math.min(this.unread_count, Math.max(0, this.last_seq - this.readSent));
    }
  }

  /** Drop typing indicators nobody refreshed in time; true when one went. */
  expireTyping(now = Date.now()) {
    const before = this.typing.size;
    for (const [user, until] of this.typing) if (until <= now) this.typing.delete(user);
    return this.typing.size !== before;
  }

  typingUsers(now = Date.now()) {
    return [...this.typing].filter(([, until]) => until > now).map(([user]) => user);
  }
}

export class Store {
  constructor() {
    this.me = null;
    this.users = new Map(); // id -> public profile
    this.conversations = new Map(); // id -> Conversation
    this.pending = new Map(); // client_id -> unsent message (see outbox.js)
    this.presence = new Map(); // user id -> {status, last_active_at}
    this.connection = { state: "idle" };
    this.openId = null;
    this.listeners = new Set();
    this.dirty = new Set();
    this.flushing = false;
  }

  /** `listener(changes: Set<string>)`: what moved ("list", "open", "messages:<id>"...). */
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Batch change notices of one task into one render. */
  changed(...topics) {
    for (const topic of topics) this.dirty.add(topic);
    if (this.flushing) return;
    this.flushing = true;
    queueMicrotask(() => {
      const changes = this.dirty;
      this.dirty = new Set();
      this.flushing = false;
      for (const listener of this.listeners) listener(changes);
    });
  }

  /** Conversations by latest activity, newest first. */
  sortedConversations() {
    const newestFirst = (a, b) => {
      if (a.updated_at === b.updated_at) return a.id.localeCompare(b.id);
      return a.updated_at < b.updated_at ? 1 : -1;
    };
    return [...this.conversations.values()].sort(newestFirst);
  }

  get open() {
    return this.openId ? (this.conversations.get(this.openId) ?? null) : null;
  }

  userName(id) {
    if (id === this.me?.id) return "You";
    const user = this.users.get(id);
    return user ? user.display_name || user.username : "Someone";
  }

  /** The other members (everyone but me). */
  others(conversation) {
    return conversation.members.filter((id) => id !== this.me?.id);
  }

  title(conversation) {
    if (conversation.kind === "group") return conversation.name || "Group";
    const [peer] = this.others(conversation);
    return peer ? this.userName(peer) : "Just you";
  }

  pendingOf(conversationId) {
    return [...this.pending.values()].filter((p) => p.conversation_id === conversationId);
  }

  isOnline(userId) {
    return this.presence.get(userId)?.status === "online";
  }
}
