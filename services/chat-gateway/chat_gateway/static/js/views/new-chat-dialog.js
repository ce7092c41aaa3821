// "New chat": find a person by username prefix for a direct conversation, or create a
// group from a name and a list of usernames. A modal <dialog> keeps keyboard focus
// inside and closes on Escape.

import { describeError } from "../http.js";
import { el } from "../dom.js";

const SEARCH_DELAY_MS = 200;

export class NewChatDialog {
  constructor({ store, api, chat, onOpened }) {
    Object.assign(this, { store, api, chat, onOpened });
    this.searchTimer = null;
    this.searchSerial = 0;
    this.search = el("input", {
      id: "people-search",
      type: "search",
      autocomplete: "off",
      spellcheck: "false",
      placeholder: "Start typing a username",
    });
    this.results = el("ul", { class: "search-results", role: "list", "aria-label": "People" });
    this.searchStatus = el("p", { class: "hint", "aria-live": "polite" });
    this.search.addEventListener("input", () => this.scheduleSearch());

    this.groupName = el("input", { id: "group-name", required: true, maxlength: "100" });
    this.groupMembers = el("input", {
      id: "group-members",
      required: true,
      autocomplete: "off",
      spellcheck: "false",
      placeholder: "alice, bob",
    });
    this.groupError = el("p", { class: "form-error", role: "alert" });
    const groupForm = el(
      "form",
      { class: "stack" },
      el("label", { for: "group-name", text: "Group name" }),
      this.groupName,
      el("label", { for: "group-members", text: "Members (usernames, separated by commas)" }),
      this.groupMembers,
      this.groupError,
      el("button", { type: "submit", class: "button", text: "Create group" }),
    );
    groupForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.createGroup();
    });

    this.dialog = el(
      "dialog",
      { class: "dialog", "aria-labelledby": "new-chat-title" },
      el(
        "div",
        { class: "dialog-head" },
        el("h2", { id: "new-chat-title", text: "New chat" }),
        el("button", {
          type: "button",
          class: "button button-quiet",
          "aria-label": "Close",
          text: "✕",
          onClick: () => this.close(),
        }),
      ),
      el(
        "section",
        { class: "stack", "aria-labelledby": "direct-title" },
        el("h3", { id: "direct-title", text: "Message someone" }),
        el("label", { for: "people-search", text: "Find people by username" }),
        this.search,
        this.searchStatus,
        this.results,
      ),
      el(
        "section",
        { class: "stack", "aria-labelledby": "group-title" },
        el("h3", { id: "group-title", text: "Create a group" }),
        groupForm,
      ),
    );
    document.body.append(this.dialog);
  }

  show() {
    this.search.value = "";
    this.results.replaceChildren();
    this.searchStatus.textContent = "";
    this.groupError.textContent = "";
    this.dialog.showModal();
    this.search.focus();
  }

  close() {
    this.dialog.close();
  }

  scheduleSearch() {
    clearTimeout(this.searchTimer);
    this.searchTimer = setTimeout(() => this.runSearch(), SEARCH_DELAY_MS);
  }

  async runSearch() {
    const prefix = this.search.value.trim().toLowerCase();
    const serial = ++this.searchSerial;
    if (!prefix) {
      this.results.replaceChildren();
      this.searchStatus.textContent = "";
      return;
    }
    let users;
    try {
      users = await this.api.searchUsers(prefix, 10);
    } catch (error) {
      if (serial === this.searchSerial) this.searchStatus.textContent = describeError(error);
      return;
    }
    if (serial !== this.searchSerial) return; // a newer search is on its way
    const others = users.filter((u) => u.id !== this.store.me.id);
    this.searchStatus.textContent = others.length
      ? `${others.length} ${others.length === 1 ? "person" : "people"} found`
      : "Nobody with that username.";
    this.results.replaceChildren(
      ...others.map((user) =>
        el(
          "li",
          {},
          el(
            "button",
            { type: "button", class: "person", onClick: () => this.startDirect(user) },
            el("span", { class: "person-name", text: user.display_name || user.username }),
            el("span", { class: "person-handle", text: `@${user.username}` }),
          ),
        ),
      ),
    );
  }

  async startDirect(user) {
    try {
      const id = await this.chat.startDirect(user);
      this.close();
      this.onOpened(id);
    } catch (error) {
      this.searchStatus.textContent = describeError(error);
    }
  }

  async createGroup() {
    const name = this.groupName.value.trim();
    const usernames = this.groupMembers.value
      .split(/[\s,]+/)
      .map((u) => u.replace(/^@/, "").trim())
      .filter(Boolean);
    this.groupError.textContent = "";
    try {
      const id = await this.chat.createGroup(name, [...new Set(usernames)]);
      this.groupName.value = "";
      this.groupMembers.value = "";
      this.close();
      this.onOpened(id);
    } catch (error) {
      this.groupError.textContent = describeError(error);
    }
  }
}
