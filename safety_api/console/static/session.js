// The operator's session: tokens kept for this browser tab, refreshed before they expire, and API calls.
import { noteServerDate } from "./format.js";

const KEY = "console.session";
const STAFF = new Set(["operator", "admin"]);
let state = JSON.parse(sessionStorage.getItem(KEY) || "null"); // {access, refresh, user, refreshDueAt}
let refreshing = null;
let refreshTimer = null;
const expiredListeners = new Set();

// What went wrong, as the console words it (i18n.js: error.<reason>): by the problem's type where the server
// names one (errors.py: the last part of its `type`, the kind), else by the HTTP status; 0 is no answer at all.
const REASON_OF_KIND = {
  unauthorized: "unauthorized", forbidden: "forbidden", "not-found": "not_found", conflict: "conflict",
  validation: "invalid", "rate-limited": "limited", unavailable: "unavailable",
};
const REASON_OF_STATUS = {
  0: "network", 401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict", 422: "invalid",
  429: "limited", 502: "unavailable", 503: "unavailable", 504: "unavailable",
};

/** An API answer that is not 2xx, carrying the problem+json body; status 0 when no answer came (network). */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || (status ? `HTTP ${status}` : "no answer from the server"));
    this.status = status;
    this.problem = problem || {};
  }

  /** network, unauthorized, forbidden, not_found, conflict, invalid, limited, unavailable or other. */
  get reason() {
    const kind = String(this.problem.type || "").split("/").pop();
    return REASON_OF_KIND[kind] ?? REASON_OF_STATUS[this.status] ?? "other";
  }

  /** The server's own words (English, for whoever reads the logs): shown as a secondary line only. */
  get serverDetail() {
    return this.problem.detail || (this.status ? `HTTP ${this.status}` : "");
  }
}

export function user() {
  return state?.user ?? null;
}

export function accessToken() {
  return state?.access ?? null;
}

export function onExpired(fn) {
  expiredListeners.add(fn);
}

/** Sign in with phone and password; only operators and admins are let in. */
export async function login(phone, password) {
  const body = await request("/api/v1/auth/login", { method: "POST", body: { phone, password } });
  if (!STAFF.has(body.user?.role)) throw new ApiError(403, { detail: "not_staff" });
  save({ access: body.access_token, refresh: body.refresh_token, user: body.user });
}

export async function logout() {
  const token = state?.refresh;
  clear();
  if (token) await request("/api/v1/auth/logout", { method: "POST", token }).catch(() => {});
}

/** Resume a session kept in this tab, if its refresh token still works. */
export async function resume() {
  if (!state) return false;
  scheduleRefresh();
  return true;
}

/** Call the API with the access token; one refresh and retry on a 401. */
export async function api(path, { method = "GET", body } = {}) {
  try {
    return await request(path, { method, body, token: state?.access });
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401 || !state) throw err;
    await refresh();
    return request(path, { method, body, token: state?.access });
  }
}

/** Get a new access token (one request at a time); an unusable refresh token ends the session. */
export function refresh() {
  refreshing ??= request("/api/v1/auth/refresh", { method: "POST", token: state?.refresh })
    .then((body) => save({ ...state, access: body.access_token }))
    .catch((err) => {
      if (err instanceof ApiError && (err.status === 401 || err.status === 422)) expire();
      throw err;
    })
    .finally(() => { refreshing = null; });
  return refreshing;
}

async function request(path, { method = "GET", body, token } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let answer;
  try {
    answer = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, null); // no answer at all: the network or the server is away
  }
  noteServerDate(answer.headers.get("Date"));
  const data = answer.status === 204 ? null : await answer.json().catch(() => null);
  if (!answer.ok) throw new ApiError(answer.status, data);
  return data;
}

function save(next) {
  state = { ...next, refreshDueAt: refreshDueAt(next.access) };
  sessionStorage.setItem(KEY, JSON.stringify(state));
  scheduleRefresh();
}

function clear() {
  state = null;
  sessionStorage.removeItem(KEY);
  clearTimeout(refreshTimer);
}

function expire() {
  clear();
  expiredListeners.forEach((fn) => fn());
}

/**
 * When to refresh a token just received: a minute before its lifetime (exp - iat, read from its payload; no
 * signature check needed) runs out, counted on this workstation's clock from now. Both ends are read on the
 * same clock, so a workstation clock set minutes wrong does not matter (against exp alone, one ahead refreshed
 * every few seconds and one behind let the token expire first).
 */
function refreshDueAt(token) {
  const claims = tokenClaims(token);
  if (!Number.isFinite(claims?.exp) || !Number.isFinite(claims?.iat)) return null;
  return Date.now() + (claims.exp - claims.iat) * 1000 - 60000;
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  if (!state?.refreshDueAt) return; // a 401 still refreshes on demand
  const inMs = Math.max(5000, state.refreshDueAt - Date.now());
  refreshTimer = setTimeout(() => refresh().catch(() => scheduleRetry()), inMs);
}

function scheduleRetry() {
  if (state) refreshTimer = setTimeout(() => refresh().catch(() => scheduleRetry()), 10000);
}

function tokenClaims(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload));
  } catch {
    return null;
  }
}
