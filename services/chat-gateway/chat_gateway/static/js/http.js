// JSON over fetch, with RFC 9457 problem details turned into ApiError.

export class ApiError extends Error {
  constructor(status, problem = {}, retryAfter = null) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

/** Thrown when the request never got an answer (server down, offline). */
export class NetworkError extends Error {
  constructor(cause) {
    super("The server cannot be reached.");
    this.name = "NetworkError";
    this.cause = cause;
  }
}

/**
 * One request. `token` becomes an Authorization header (never a query parameter);
 * `query` values that are null or undefined are left out.
 */
export async function requestJson(url, { method = "GET", body, token, query } = {}) {
  const target = new URL(url, location.href);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null) target.searchParams.set(key, String(value));
  }
  const headers = { Accept: "application/json, application/problem+json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(target, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (error) {
    throw new NetworkError(error);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text.slice(0, 200) };
  }
  if (!response.ok) {
    const retry = Number(response.headers.get("Retry-After"));
    throw new ApiError(response.status, data || {}, Number.isFinite(retry) ? retry : null);
  }
  return data;
}

/** A sentence for the user out of any error. */
export function describeError(error) {
  if (error instanceof ApiError) {
    const problem = error.problem || {};
    if (error.status === 422 && Array.isArray(problem.errors) && problem.errors.length) {
      const first = problem.errors[0];
      const field = Array.isArray(first.loc) ? first.loc[first.loc.length - 1] : "";
      return `${field ? `${field}: ` : ""}${first.msg || problem.detail || "invalid"}`;
    }
    if (error.status === 429 && error.retryAfter) {
      return `${problem.detail || "Too many attempts."} Try again in ${error.retryAfter} s.`;
    }
    return problem.detail || problem.title || `Request failed (${error.status}).`;
  }
  return error?.message || String(error);
}
