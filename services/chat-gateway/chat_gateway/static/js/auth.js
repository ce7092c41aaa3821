// The signed-in session: the token pair, kept in sessionStorage (one refresh-token
// family per tab, so two tabs never race to rotate the same refresh token), refreshed
// shortly before the access token expires.
//
// Events: "tokens" (a new access token; the socket forwards it with an `auth` frame)
// and "ended" (the session is over: logged out, or the refresh token was refused).

import { ApiError, requestJson } from "./http.js";

const STORAGE_KEY = "chat.session";
// Refresh this long before expiry: a minute, or half of shorter lifetimes.
const MAX_LEAD_MS = 60_000;

export class Session extends EventTarget {
  constructor(authUrl, storage = window.sessionStorage) {
    super();
    this.authUrl = authUrl;
    this.storage = storage;
    this.tokens = null;
    this.refreshing = null;
    this.timer = null;
    document.addEventListener("visibilitychange", () => {
      // Timers in background tabs are throttled: catch up when the tab shows again.
      if (document.visibilityState === "visible" && this.tokens && this.dueIn() <= 0) {
        this.refresh().catch(() => {});
      }
    });
  }

  /** Restore a session saved by this tab (survives reloads, not closing the tab). */
  restore() {
    try {
      const saved = JSON.parse(this.storage.getItem(STORAGE_KEY) || "null");
      if (saved?.access_token && saved?.refresh_token) {
        this.tokens = saved;
        this.schedule();
        return true;
      }
    } catch {
      this.storage.removeItem(STORAGE_KEY);
    }
    return false;
  }

  get active() {
    return this.tokens !== null;
  }

  get accessToken() {
    return this.tokens?.access_token ?? null;
  }

  /** The user id (`sub`) of the access token; the signature is the servers' business. */
  get userId() {
    return this.claims()?.sub ?? null;
  }

  claims() {
    const token = this.accessToken;
    if (!token) return null;
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
    } catch {
      return null;
    }
  }

  async signup(fields) {
    return requestJson(`${this.authUrl}/v1/auth/signup`, { method: "POST", body: fields });
  }

  async login(login, password) {
    const pair = await requestJson(`${this.authUrl}/v1/auth/login`, {
      method: "POST",
      body: { login, password },
    });
    this.store(pair);
  }

  /**
   * Trade the refresh token for a new pair. Concurrent callers share one request:
   * sending the same refresh token twice would look like theft and revoke the family.
   */
  refresh() {
    if (!this.tokens) return Promise.reject(new Error("not signed in"));
    if (!this.refreshing) {
      const used = this.tokens.refresh_token;
      this.refreshing = requestJson(`${this.authUrl}/v1/auth/refresh`, {
        method: "POST",
        body: { refresh_token: used },
      })
        .then((pair) => {
          if (this.tokens?.refresh_token === used) this.store(pair);
          return this.accessToken;
        })
        .catch((error) => {
          if (error instanceof ApiError && (error.status === 401 || error.status === 422)) {
            this.end("expired");
          } else {
            // Network trouble: try again soon, the token may still be valid for a while.
            this.schedule(5_000);
          }
          throw error;
        })
        .finally(() => {
          this.refreshing = null;
        });
    }
    return this.refreshing;
  }

  async logout() {
    const token = this.tokens?.refresh_token;
    this.end("logout");
    if (token) {
      try {
        await requestJson(`${this.authUrl}/v1/auth/logout`, {
          method: "POST",
          body: { refresh_token: token },
        });
      } catch {
        // The local session is gone either way; the refresh token expires on its own.
      }
    }
  }

  store(pair) {
    const lifetime = Math.max(1, Number(pair.expires_in) || 60) * 1000;
    this.tokens = {
      access_token: pair.access_token,
      refresh_token: pair.refresh_token,
      issued_at: Date.now(),
      expires_at: Date.now() + lifetime,
    };
    this.storage.setItem(STORAGE_KEY, JSON.stringify(this.tokens));
    this.schedule();
    this.dispatchEvent(new CustomEvent("tokens", { detail: this.accessToken }));
  }

  /** Milliseconds until the next refresh is due. */
  dueIn() {
    const { issued_at: issued, expires_at: expires } = this.tokens;
    const lead = Math.min(MAX_LEAD_MS, (expires - issued) / 2);
    return expires - lead - Date.now();
  }

  schedule(delay = null) {
    clearTimeout(this.timer);
    if (!this.tokens) return;
    const wait = Math.max(0, delay ?? this.dueIn());
    this.timer = setTimeout(() => this.refresh().catch(() => {}), wait);
  }

  end(reason) {
    clearTimeout(this.timer);
    const wasActive = this.tokens !== null;
    this.tokens = null;
    this.storage.removeItem(STORAGE_KEY);
    if (wasActive) this.dispatchEvent(new CustomEvent("ended", { detail: reason }));
  }
}
