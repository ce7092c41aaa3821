// Start-up and wiring: configuration, the signed-in or signed-out screen, routing
// (#/c/<conversation id>), and which pane a narrow window shows.

import { Api } from "./api.js";
import { Session } from "./auth.js";
import { Chat } from "./chat.js";
import { randomId } from "./dom.js";
import { ChatSocket } from "./socket.js";
import { Store } from "./store.js";
import { AuthView } from "./views/auth-view.js";
import { ConversationView } from "./views/conversation-view.js";
import { ListView } from "./views/list-view.js";
import { NewChatDialog } from "./views/new-chat-dialog.js";

const $ = (id) => document.getElementById(id);
const CONNECTION_TEXT = {
  idle: "",
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  closed: "Offline",
  refused: "Connection refused",
};

/** One id per browser, so the gateway can resume this device's inbox position. */
function deviceId() {
  let id = localStorage.getItem("chat.device_id");
  if (!id) {
    id = randomId("web-");
    localStorage.setItem("chat.device_id", id);
  }
  return id;
}

/** The last inbox cursor this browser processed for one user. */
function cursorStore(userId) {
  const key = `chat.cursor.${userId}`;
  return {
    get: () => localStorage.getItem(key),
    set: (cursor) => cursor && localStorage.setItem(key, cursor),
  };
}

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/ws`;
}

function routeId() {
  const match = /^#\/c\/(.+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

let noticeTimer = null;
function notify(message) {
  const notice = $("notice");
  notice.textContent = message;
  notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (notice.hidden = true), 6_000);
}

class App {
  constructor(config) {
    this.config = config;
    this.session = new Session(config.auth_url);
    this.auth = new AuthView($("auth"), { session: this.session, onSignedIn: () => this.enter() });
    this.session.addEventListener("ended", (event) => this.leave(event.detail));
    $("logout").addEventListener("click", () => this.logout());
    window.addEventListener("hashchange", () => this.route());
    // Leaving (or freezing) the page closes the socket cleanly: contacts see us go
    // offline now instead of after the heartbeat timeout.
    window.addEventListener("pagehide", () => this.chat?.socket.stop());
    window.addEventListener("pageshow", (event) => event.persisted && this.chat?.socket.start());
  }

  boot() {
    if (this.session.restore()) this.enter();
    else this.auth.show();
  }

  async enter() {
    this.auth.hide();
    const store = new Store();
    const api = new Api(this.config, this.session);
    const socket = new ChatSocket({
      url: socketUrl(),
      deviceId: deviceId(),
      cursor: cursorStore(this.session.userId),
      token: () => this.session.accessToken,
      refresh: () => this.session.refresh(),
    });
    const config = this.config;
    const chat = new Chat({ api, session: this.session, socket, store, config, notify });
    Object.assign(this, { store, api, chat });
    this.list = new ListView($("sidebar"), { store, onNewChat: () => this.dialog.show() });
    this.conversation = new ConversationView($("conversation"), {
      store,
      chat,
      onBack: () => {
        location.hash = "#/";
      },
    });
    this.dialog = new NewChatDialog({
      store,
      api,
      chat,
      onOpened: (id) => {
        location.hash = `#/c/${encodeURIComponent(id)}`;
      },
    });
    // A store outlives its session by a few callbacks; only the current one renders.
    store.subscribe((changes) => this.store === store && this.render(changes));
    $("app").hidden = false;
    $("account").hidden = false;
    try {
      await chat.start();
    } catch (error) {
      if (this.session.active) notify(`Could not load your chats: ${error.message}`);
      return;
    }
    this.route();
  }

  render(changes) {
    const store = this.store;
    if (changes.has("me")) $("account-name").textContent = store.me?.display_name ?? "";
    if (changes.has("connection")) {
      const state = store.connection.state;
      $("connection").dataset.state = state;
      $("connection").textContent = CONNECTION_TEXT[state] ?? state;
    }
    const listTopics = ["list", "presence", "users", "open", "clock"];
    const typing = [...changes].some((topic) => topic.startsWith("typing:"));
    if (typing || listTopics.some((topic) => changes.has(topic))) this.list.render();
    // The pane first: a narrow window hides the other one, and hidden things take no focus.
    $("app").dataset.pane = store.openId ? "conversation" : "list";
    this.conversation.render(changes);
    if (this.returnFocusTo && !store.openId) {
      this.list.focus(this.returnFocusTo);
      this.returnFocusTo = null;
    }
  }

  async route() {
    if (!this.chat) return;
    const id = routeId();
    if (id === this.store.openId) return;
    this.conversation.focusOnBuild = Boolean(id);
    this.returnFocusTo = id ? null : this.store.openId;
    await this.chat.open(id);
    if (id && routeId() === id && !this.store.openId) location.hash = "#/";
  }

  async logout() {
    this.chat?.stop({ forget: true });
    await this.session.logout();
  }

  /** The session ended (logout, or the refresh token was refused): back to the login screen. */
  leave(reason) {
    this.chat?.stop();
    this.dialog?.dialog.remove();
    this.chat = this.store = this.api = null;
    $("app").hidden = true;
    $("account").hidden = true;
    $("connection").textContent = "";
    $("connection").dataset.state = "idle";
    $("sidebar").replaceChildren();
    $("conversation").replaceChildren();
    if (location.hash) history.replaceState(null, "", location.pathname);
    this.auth.show(reason === "expired" ? "Your session has ended. Please log in again." : "");
  }
}

async function main() {
  let config;
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    config = await response.json();
  } catch {
    notify("The chat server cannot be reached. Reload the page to try again.");
    return;
  }
  new App(config).boot();
}

main();
