// The REST calls the client makes, each with the current access token. A 401 gets one
// refresh-and-retry: the token may have expired while the tab slept.

import { ApiError, requestJson } from "./http.js";

export const PAGE_SIZE = 50;
const MAX_LOOKUP = 200;

export class Api {
  constructor(config, session) {
    this.authUrl = config.auth_url;
    this.historyUrl = config.history_url;
    this.gatewayUrl = "";
    this.session = session;
  }

  async call(base, path, options = {}) {
    const attempt = () =>
      requestJson(`${base}${path}`, { ...options, token: this.session.accessToken });
    try {
      return await attempt();
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401 || !this.session.active) throw error;
      await this.session.refresh();
      return attempt();
    }
  }

  // Auth service ----------------------------------------------------------------------

  me() {
    return this.call(this.authUrl, "/v1/users/me");
  }

  async searchUsers(prefix, limit = 10) {
    const data = await this.call(this.authUrl, "/v1/users", { query: { q: prefix, limit } });
    return data.users;
  }

  /** Public profiles by id, in batches the API accepts. */
  async usersByIds(ids) {
    const found = [];
    for (let start = 0; start < ids.length; start += MAX_LOOKUP) {
      const chunk = ids.slice(start, start + MAX_LOOKUP);
      const data = await this.call(this.authUrl, "/v1/users", { query: { ids: chunk.join(",") } });
      found.push(...data.users);
    }
    return found;
  }

  // History service -------------------------------------------------------------------

  async conversations() {
    const data = await this.call(this.historyUrl, "/v1/conversations");
    return data.conversations;
  }

  conversation(id) {
    return this.call(this.historyUrl, `/v1/conversations/${encodeURIComponent(id)}`);
  }

  createDirect(peerId) {
    return this.call(this.historyUrl, "/v1/conversations", {
      method: "POST",
      body: { kind: "direct", members: [peerId] },
    });
  }

  createGroup(name, memberIds) {
    return this.call(this.historyUrl, "/v1/conversations", {
      method: "POST",
      body: { kind: "group", name, members: memberIds },
    });
  }

  /** `{messages, has_more}`: newest first with `before` (or neither), oldest first with `after`. */
  messages(conversationId, { before = null, after = null, limit = PAGE_SIZE } = {}) {
    return this.call(
      this.historyUrl,
      `/v1/conversations/${encodeURIComponent(conversationId)}/messages`,
      { query: { before_seq: before, after_seq: after, limit } },
    );
  }

  markRead(conversationId, seq) {
    return this.call(
      this.historyUrl,
      `/v1/conversations/${encodeURIComponent(conversationId)}/read`,
      { method: "POST", body: { seq } },
    );
  }

  // Gateway ----------------------------------------------------------------------------

  async presence(userIds) {
    const found = [];
    for (let start = 0; start < userIds.length; start += MAX_LOOKUP) {
      const chunk = userIds.slice(start, start + MAX_LOOKUP);
      const data = await this.call(this.gatewayUrl, "/v1/presence", {
        query: { user_ids: chunk.join(",") },
      });
      found.push(...data.presence);
    }
    return found;
  }
}
