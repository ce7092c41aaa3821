// One message bubble, and the sentences around messages (read by, typing, presence).
// Bodies are set with textContent: whatever a user sends is shown, never interpreted.

import { el, fullTime, relativeTime, shortTime } from "../dom.js";

/** A stable key: the same element shows the local echo and then the stored message. */
export function messageKey(message) {
  return `${message.sender_id}:${message.client_id}`;
}

export function createMessageItem(key, { onRetry, onDiscard }) {
  const parts = {
    sender: el("p", { class: "message-sender" }),
    body: el("p", { class: "message-body" }),
    time: el("time", { class: "message-time" }),
    state: el("span", { class: "message-state" }),
    retry: el("button", { type: "button", class: "link-button", text: "Retry" }),
    discard: el("button", { type: "button", class: "link-button", text: "Discard" }),
    readBy: el("p", { class: "read-by", hidden: true }),
  };
  parts.retry.addEventListener("click", () => onRetry(parts.clientId));
  parts.discard.addEventListener("click", () => onDiscard(parts.clientId));
  parts.actions = el("span", { class: "message-actions" }, parts.retry, parts.discard);
  parts.item = el(
    "li",
    { class: "message", dataset: { key } },
    el(
      "div",
      { class: "bubble" },
      parts.sender,
      parts.body,
      el("p", { class: "message-meta" }, parts.time, parts.state, parts.actions),
    ),
    parts.readBy,
  );
  return parts;
}

/**
 * Fill a message item. `entry` is a stored message or a pending one (no seq yet);
 * `readByAll`: every other member is known to have read it; `readBy`: the sentence
 * shown under it ("Read by Bob"), only ever on the newest message of mine.
 */
export function updateMessageItem(parts, entry, options) {
  const { mine, showSender, senderName, readByAll, readBy } = options;
  parts.clientId = entry.client_id;
  parts.item.classList.toggle("mine", mine);
  parts.item.classList.toggle("theirs", !mine);
  parts.sender.hidden = !showSender;
  parts.sender.textContent = showSender ? senderName : "";
  if (parts.body.textContent !== entry.body) parts.body.textContent = entry.body;
  parts.time.textContent = shortTime(entry.created_at);
  parts.time.dateTime = entry.created_at || "";
  parts.time.title = fullTime(entry.created_at);

  let status;
  if (entry.seq === undefined) status = entry.status === "failed" ? "failed" : "sending";
  else if (!mine) status = "received";
  else status = readByAll ? "read" : "sent";
  parts.item.dataset.status = status;
  if (entry.seq !== undefined) parts.item.dataset.seq = String(entry.seq);

  const label = {
    sending: "Sending…",
    failed: `Not sent${entry.error ? `: ${entry.error}` : ""}`,
    sent: "Sent",
    read: "Read",
    received: "",
  }[status];
  const glyph = { sending: "◷", failed: "!", sent: "✓", read: "✓✓", received: "" }[status];
  parts.state.replaceChildren();
  if (mine) {
    parts.state.append(
      el("span", { "aria-hidden": "true", text: glyph }),
      el("span", { class: status === "failed" ? "" : "visually-hidden", text: ` ${label}` }),
    );
    parts.state.title = label;
  }
  parts.actions.hidden = status !== "failed";
  parts.readBy.textContent = readBy || "";
  parts.readBy.hidden = !readBy;
}

/** "Read by Bob", "Read by Bob and Carol", "Read by Bob, Carol and 3 others". */
export function readBySentence(names) {
  if (!names.length) return "";
  if (names.length === 1) return `Read by ${names[0]}`;
  if (names.length === 2) return `Read by ${names[0]} and ${names[1]}`;
  const rest = names.length - 2;
  return `Read by ${names[0]}, ${names[1]} and ${rest} other${rest > 1 ? "s" : ""}`;
}

export function typingSentence(names) {
  if (!names.length) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return "Several people are typing…";
}

/** The line under a conversation's title: online, last active, or member counts. */
export function presenceSentence(store, conversation) {
  const others = store.others(conversation);
  if (conversation.kind === "group") {
    const online = others.filter((id) => store.isOnline(id)).length;
    const count = conversation.members.length;
    return `${count} member${count === 1 ? "" : "s"}, ${online} online besides you`;
  }
  const [peer] = others;
  if (!peer) return "";
  const presence = store.presence.get(peer);
  if (presence?.status === "online") return "online";
  if (presence?.last_active_at) return `last active ${relativeTime(presence.last_active_at)}`;
  return "offline";
}
