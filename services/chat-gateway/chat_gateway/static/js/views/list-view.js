// The conversation list: one link per conversation, most recent activity first, with
// the unread count, the last message and, for direct chats, the peer's online dot.
// Items are kept and updated in place so keyboard focus survives new messages.

import { el, initial, replaceChildren, shortTime } from "../dom.js";

export class ListView {
  constructor(root, { store, onNewChat }) {
    this.store = store;
    this.items = new Map(); // conversation id -> {item, link, parts...}
    this.list = el("ul", { class: "conversation-list", role: "list" });
    this.empty = el("p", { class: "empty", hidden: true });
    replaceChildren(
      root,
      el(
        "div",
        { class: "sidebar-head" },
        el("h2", { class: "sidebar-title", text: "Chats" }),
        el("button", { type: "button", class: "button", onClick: onNewChat, text: "New chat" }),
      ),
      this.list,
      this.empty,
    );
  }

  render() {
    const store = this.store;
    const conversations = store.sortedConversations();
    const wanted = new Set(conversations.map((c) => c.id));
    for (const [id, entry] of this.items) {
      if (!wanted.has(id)) {
        entry.item.remove();
        this.items.delete(id);
      }
    }
    const focused = document.activeElement;
    conversations.forEach((conversation, index) => {
      const entry = this.items.get(conversation.id) ?? this.create(conversation.id);
      this.update(entry, conversation);
      if (this.list.children[index] !== entry.item) {
        this.list.insertBefore(entry.item, this.list.children[index] ?? null);
      }
    });
    // Moving a node drops its focus: give it back.
    if (focused && focused !== document.activeElement && this.list.contains(focused)) {
      focused.focus();
    }
    this.empty.hidden = conversations.length > 0;
    this.empty.textContent = store.listLoaded
      ? "No conversations yet. Start one with “New chat”."
      : "Loading conversations…";
  }

  create(id) {
    const entry = {
      avatar: el("span", { class: "avatar", "aria-hidden": "true" }),
      dot: el("span", { class: "presence-dot", "aria-hidden": "true" }),
      title: el("span", { class: "item-title" }),
      time: el("time", { class: "item-time" }),
      preview: el("span", { class: "item-preview" }),
      count: el("span", { class: "unread-count" }),
      status: el("span", { class: "visually-hidden" }),
    };
    entry.badge = el(
      "span",
      { class: "unread-badge" },
      entry.count,
      el("span", { class: "visually-hidden", text: " unread" }),
    );
    entry.link = el(
      "a",
      { class: "conversation-item", href: `#/c/${encodeURIComponent(id)}`, dataset: { id } },
      el("span", { class: "avatar-wrap" }, entry.avatar, entry.dot),
      el(
        "span",
        { class: "item-text" },
        el("span", { class: "item-line" }, entry.title, entry.status, entry.time),
        el("span", { class: "item-line" }, entry.preview, entry.badge),
      ),
    );
    entry.item = el("li", {}, entry.link);
    this.items.set(id, entry);
    return entry;
  }

  update(entry, conversation) {
    const store = this.store;
    const title = store.title(conversation);
    entry.title.textContent = title;
    entry.avatar.textContent = conversation.kind === "group" ? "#" : initial(title);
    entry.avatar.dataset.kind = conversation.kind;

    const [peer] = conversation.kind === "direct" ? store.others(conversation) : [];
    const online = peer ? store.isOnline(peer) : false;
    entry.dot.hidden = !peer;
    entry.dot.dataset.status = online ? "online" : "offline";
    entry.status.textContent = peer ? (online ? ", online" : ", offline") : "";

    const typing = conversation.typingUsers();
    const last = conversation.last_message;
    if (typing.length) {
      entry.preview.textContent = `${typing.map((id) => store.userName(id)).join(", ")} typing…`;
      entry.preview.dataset.typing = "true";
    } else {
      const group = conversation.kind === "group";
      const who = last && group ? `${store.userName(last.sender_id)}: ` : "";
      const mine = last && last.sender_id === store.me?.id ? "You: " : "";
      entry.preview.textContent = last ? `${mine || who}${last.body}` : "No messages yet";
      delete entry.preview.dataset.typing;
    }
    entry.time.textContent = shortTime(conversation.updated_at);
    entry.time.dateTime = conversation.updated_at || "";

    const unread = conversation.unread_count;
    entry.badge.hidden = unread === 0;
    entry.count.textContent = unread > 99 ? "99+" : String(unread);
    entry.link.dataset.unread = String(unread);

    if (store.openId === conversation.id) entry.link.setAttribute("aria-current", "page");
    else entry.link.removeAttribute("aria-current");
  }

  focus(id) {
    this.items.get(id)?.link.focus();
  }
}
