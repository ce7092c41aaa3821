// The open conversation: header with presence, the message log (scroll up for older
// pages), who read what, who is typing, and the message box (Enter sends).

import { el, initial, replaceChildren } from "../dom.js";
import {
  createMessageItem,
  messageKey,
  presenceSentence,
  readBySentence,
  typingSentence,
  updateMessageItem,
} from "./messages.js";

const LOAD_OLDER_WITHIN_PX = 80;
const STICK_TO_BOTTOM_PX = 48;

export class ConversationView {
  constructor(root, { store, chat, onBack }) {
    Object.assign(this, { root, store, chat, onBack });
    this.shownId = undefined;
    this.items = new Map(); // message key -> item parts
    this.drafts = new Map(); // conversation id -> unsent text in the box
  }

  render(changes) {
    const conversation = this.store.open;
    const id = conversation?.id ?? null;
    if (id !== this.shownId) this.build(conversation);
    if (!conversation) return;
    const all = changes.has("open") || changes.has("users");
    if (all || changes.has("presence") || changes.has("clock")) this.renderHeader(conversation);
    if (all || changes.has(`messages:${id}`) || changes.has("clock")) {
      this.renderMessages(conversation);
    }
    if (all || changes.has(`typing:${id}`)) this.renderTyping(conversation);
  }

  build(conversation) {
    if (this.shownId && this.input) this.drafts.set(this.shownId, this.input.value);
    this.shownId = conversation?.id ?? null;
    this.items.clear();
    if (!conversation) {
      this.input = null;
      replaceChildren(
        this.root,
        el(
          "div",
          { class: "placeholder" },
          el("p", { text: "Pick a conversation, or start one with “New chat”." }),
        ),
      );
      return;
    }
    this.avatar = el("span", { class: "avatar", "aria-hidden": "true" });
    this.title = el("h2", { class: "conversation-title", id: "conversation-title" });
    this.presence = el("p", { class: "presence-line" });
    this.olderButton = el("button", {
      type: "button",
      class: "button button-quiet load-older",
      text: "Load earlier messages",
      onClick: () => this.loadOlder(),
    });
    this.list = el("ol", { class: "message-list" });
    this.log = el(
      "div",
      {
        class: "messages",
        role: "log",
        "aria-live": "polite",
        "aria-labelledby": "conversation-title",
        tabindex: "0",
      },
      this.olderButton,
      this.list,
    );
    this.log.addEventListener("scroll", () => {
      if (this.log.scrollTop < LOAD_OLDER_WITHIN_PX) this.loadOlder();
    });
    this.typing = el("p", { class: "typing-line", "aria-live": "polite" });
    this.input = el("textarea", {
      id: "composer-input",
      class: "composer-input",
      rows: "1",
      placeholder: "Write a message…",
      maxlength: String(this.chat.config.max_message_chars),
      autocomplete: "off",
    });
    this.input.value = this.drafts.get(conversation.id) || "";
    const id = conversation.id;
    this.input.addEventListener("input", () => {
      this.chat.typing(id, this.input.value);
      this.fitInput();
    });
    this.input.addEventListener("keydown", (event) => {
      // Enter sends; Shift+Enter starts a new line; never in the middle of IME composition.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    const form = el(
      "form",
      { class: "composer", "aria-label": "Send a message" },
      el("label", { class: "visually-hidden", for: "composer-input", text: "Message" }),
      this.input,
      el("button", { type: "submit", class: "button send-button", text: "Send" }),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    replaceChildren(
      this.root,
      el(
        "header",
        { class: "conversation-head" },
        el("button", {
          type: "button",
          class: "button button-quiet back-button",
          "aria-label": "Back to conversations",
          text: "←",
          onClick: () => this.onBack(id),
        }),
        this.avatar,
        el("div", { class: "conversation-heading" }, this.title, this.presence),
      ),
      this.log,
      this.typing,
      form,
    );
    this.fitInput();
    if (this.focusOnBuild) this.input.focus();
    this.focusOnBuild = false;
  }

  submit() {
    const id = this.shownId;
    const text = this.input.value;
    if (!id || !text.trim()) return;
    if (this.chat.send(id, text)) {
      this.input.value = "";
      this.drafts.delete(id);
      this.fitInput();
      this.stickToBottom = true;
    }
  }

  fitInput() {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, 160)}px`;
  }

  loadOlder() {
    const conversation = this.store.open;
    if (conversation) this.chat.loadOlder(conversation).catch(() => {});
  }

  renderHeader(conversation) {
    const title = this.store.title(conversation);
    this.title.textContent = title;
    this.avatar.textContent = conversation.kind === "group" ? "#" : initial(title);
    this.avatar.dataset.kind = conversation.kind;
    const [peer] = this.store.others(conversation);
    this.presence.textContent = presenceSentence(this.store, conversation);
    this.presence.dataset.status =
      conversation.kind === "direct" && peer && this.store.isOnline(peer) ? "online" : "offline";
  }

  renderMessages(conversation) {
    const store = this.store;
    const me = store.me.id;
    const log = this.log;
    const fromBottom = log.scrollHeight - log.scrollTop - log.clientHeight;
    const firstBefore = this.list.firstElementChild;
    const firstTop = firstBefore ? firstBefore.offsetTop : 0;

    const stored = conversation.ordered();
    const pending = store
      .pendingOf(conversation.id)
      .sort((a, b) => a.created_at.localeCompare(b.created_at))
      .map((p) => ({ ...p, sender_id: me }));
    const entries = [...stored, ...pending];
    const others = store.others(conversation);
    const group = conversation.kind === "group";
    const readBy = (seq) => others.filter((id) => (conversation.readBy.get(id) || 0) >= seq);
    const lastMine = [...stored].reverse().find((m) => m.sender_id === me);
    const lastMineReaders = lastMine ? readBy(lastMine.seq).map((id) => store.userName(id)) : [];

    const wanted = new Set();
    entries.forEach((entry, index) => {
      const key = messageKey(entry);
      wanted.add(key);
      let parts = this.items.get(key);
      if (!parts) {
        parts = createMessageItem(key, {
          onRetry: (clientId) => this.chat.retry(clientId),
          onDiscard: (clientId) => this.chat.discard(clientId),
        });
        this.items.set(key, parts);
      }
      const mine = entry.sender_id === me;
      const previous = entries[index - 1];
      updateMessageItem(parts, entry, {
        mine,
        showSender: group && !mine && previous?.sender_id !== entry.sender_id,
        senderName: store.userName(entry.sender_id),
        readByAll:
          entry.seq !== undefined &&
          others.length > 0 &&
          readBy(entry.seq).length === others.length,
        readBy: entry === lastMine ? readBySentence(lastMineReaders) : "",
      });
      if (this.list.children[index] !== parts.item) {
        this.list.insertBefore(parts.item, this.list.children[index] ?? null);
      }
    });
    for (const [key, parts] of this.items) {
      if (!wanted.has(key)) {
        parts.item.remove();
        this.items.delete(key);
      }
    }

    this.olderButton.hidden = !conversation.hasOlder;
    this.olderButton.disabled = Boolean(conversation.loadingOlder);
    this.olderButton.textContent = conversation.loadingOlder
      ? "Loading earlier messages…"
      : "Load earlier messages";

    // Older messages went in above: keep what the reader was looking at in place.
    if (firstBefore && firstBefore.isConnected && this.list.firstElementChild !== firstBefore) {
      log.scrollTop += firstBefore.offsetTop - firstTop;
    } else if (fromBottom <= STICK_TO_BOTTOM_PX || this.stickToBottom || !firstBefore) {
      log.scrollTop = log.scrollHeight;
    }
    this.stickToBottom = false;
    if (conversation.hasOlder && log.scrollHeight <= log.clientHeight) this.loadOlder();
  }

  renderTyping(conversation) {
    const names = conversation.typingUsers().map((id) => this.store.userName(id));
    this.typing.textContent = typingSentence(names);
  }
}
