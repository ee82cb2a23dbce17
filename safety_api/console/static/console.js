// The operator console: sign in, then keep the queue, the map and the selected incident live.
import { beep, onSoundChange, soundState, startAudio, titleCount, toggleMute } from "./cue.js";
import { DetailPanel } from "./detail.js";
import { shortId } from "./format.js";
import { apply, currentLang, errorText, label, onLangChange, t, toggleLang } from "./i18n.js";
import { Live } from "./live.js";
import { createMap, facilityPopups, layerSwitch, loadBase, loadFacilities } from "./map.js";
import { incidentLatLng, LiveOverlay } from "./overlay.js";
import { Queue } from "./queue.js";
import * as session from "./session.js";
import * as store from "./store.js";

const el = (id) => document.getElementById(id);
const POLL_WHILE_DOWN_MS = 5000; // while live events cannot arrive, the queue is re-read this often
// And while they do, now and then all the same (the server's `reread_s`, 30 s): an event published in the second
// a Redis restart takes (before this api process listens again) is lost, and a restart that short falls between
// two heartbeats unnoticed.
const REREAD_WHILE_UP_MS = 30000;
const BANNER_GRACE_MS = 4000; // the first connection gets this long before the banner speaks
const TOAST_MS = 10_000;

const ui = { map: null, overlay: null, queue: null, panel: null, live: null };
let me = null;
let selectedId = null;
let loadedOnce = false;
let everUp = false;
let startedAt = 0;
let pollTimer = null;
let toastTimer = null;

function boot() {
  apply();
  document.querySelectorAll("[data-lang-switch]").forEach((b) => b.addEventListener("click", toggleLang));
  // A browser lets a page start sound only after a click or a key press on it: any will do.
  for (const gesture of ["pointerdown", "keydown"]) document.addEventListener(gesture, startAudio);
  el("login").addEventListener("submit", onLogin);
  session.onExpired(() => { sessionStorage.setItem("console.notice", "login.expired"); location.reload(); });
  if (session.user()) { session.resume(); start(); } else showLogin(sessionStorage.getItem("console.notice"));
  sessionStorage.removeItem("console.notice");
}

function showLogin(messageKey) {
  el("login-view").hidden = false;
  el("app").hidden = true;
  if (messageKey) loginError(t(messageKey));
}

function loginError(text) {
  el("login-error").textContent = text;
  el("login-error").hidden = !text;
}

async function onLogin(e) {
  e.preventDefault();
  startAudio(); // the sign-in click is the gesture browsers want before they play sound
  const form = new FormData(e.target);
  try {
    await session.login(String(form.get("phone")).trim(), String(form.get("password")));
    e.target.reset();
    loginError("");
    start();
  } catch (err) {
    const key = { 403: "login.not_staff", 429: "login.limited" }[err.status];
    // Any other refusal is the credentials'; no answer or a server in trouble is said as such.
    const serverSide = !err.status || err.status >= 500;
    loginError(key ? t(key) : serverSide ? errorText(err) : t("login.failed"));
  }
}

async function start() {
  me = session.user();
  startedAt = Date.now();
  el("login-view").hidden = true;
  el("app").hidden = false;
  el("operator-name").textContent = me.name;
  el("logout").onclick = () => session.logout().finally(() => location.reload());
  el("sound-toggle").onclick = toggleMute;
  el("sound-blocked").onclick = startAudio;
  el("toast").onclick = () => { el("toast").hidden = true; };
  onSoundChange(showSound);
  startAudio(); // after a reload nobody has clicked yet: the browser may keep it off, and the page says so
  const config = await loadConfig();
  const district = new URLSearchParams(location.search).get("district") || config.district;
  ui.map = createMap(el("map"), { tileUrl: config.tile_url });
  ui.overlay = new LiveOverlay(ui.map, { onSelect: select });
  ui.queue = new Queue(el("queue"), { onSelect: select });
  ui.panel = new DetailPanel(el("detail"), {
    onAction: act, onClose: () => select(null), onCamera: (cam) => ui.map.panTo(cam.location.coordinates.slice().reverse()),
  });
  ui.live = new Live({ heartbeatS: config.heartbeat_s, onEvent, onUp, onDown });
  // A hidden tab's timers are throttled: on coming back, prove the live path at once and re-read.
  document.addEventListener("visibilitychange", () => { if (!document.hidden) { ui.live.beat(true); refetch(); } });
  onLangChange(() => { renderQueue(); ui.panel.renderAll(); showSound(); });
  setTimeout(showLiveState, BANNER_GRACE_MS + 100);
  refetch();
  setInterval(() => { if (ui.live.up && !document.hidden) refetch(); },
    config.reread_s ? config.reread_s * 1000 : REREAD_WHILE_UP_MS);
  if (district) loadLayers(district);
}

/** The console's settings; while the server cannot answer, the banner shows and we keep asking. */
async function loadConfig() {
  for (;;) {
    try {
      return await session.api("/api/v1/console/config");
    } catch {
      el("banner").hidden = false;
      await new Promise((resolve) => { setTimeout(resolve, 3000); });
    }
  }
}

async function loadLayers(district) {
  try {
    const base = await loadBase(ui.map, district);
    el("district-name").dataset.ko = base.name;
    el("district-name").dataset.en = base.nameEn;
    showDistrict();
    onLangChange(showDistrict);
    const facilities = await loadFacilities(district);
    layerSwitch(ui.map, { ...facilities, ...base.overlays });
    facilityPopups(ui.map, facilities);
    document.body.dataset.layers = "ready";
  } catch (err) {
    document.body.dataset.layers = "failed";
    console.error("map layers", err);
  }
}

function showDistrict() {
  el("district-name").textContent = el("district-name").dataset[currentLang()] || "";
}

/** The sound toggle, or in its place, while the browser keeps sound off, a warning that a click turns it on. */
function showSound() {
  const state = soundState();
  const button = el("sound-toggle");
  el("sound-blocked").hidden = state !== "blocked";
  button.hidden = state === "blocked"; // "소리 켜짐" would be a lie
  button.dataset.i18n = state === "muted" ? "sound.off" : "sound.on";
  button.setAttribute("aria-pressed", String(state !== "muted"));
  apply(button.parentElement);
}

/**
 * Read the open incidents again; what arrived or changed while we were not live gets its cue. The first read
 * (at sign-in, or after a reload) cues every incident already waiting, once.
 */
async function refetch() {
  const fetchStartedAt = performance.now();
  try {
    const { items } = await session.api("/api/v1/incidents?status=open");
    const { changes, dropped } = store.reconcile(items, fetchStartedAt);
    ui.overlay.syncAll(store.queue());
    renderQueue();
    if (loadedOnce) cue(changes);
    else cue(store.queue().filter((i) => i.status === "open").map((i) => [null, i]));
    loadedOnce = true;
    const selected = changes.find(([, now]) => now.id === ui.panel.incidentId);
    if (selected) ui.panel.update(selected[1]);
    // The list left the chosen incident out: closed with its news lost, or no longer ours to see. Ask.
    if (selectedId && dropped.includes(selectedId)) reread(selectedId);
  } catch (err) {
    console.warn("refetch failed", err);
  }
}

function onEvent(name, payload) {
  if (name === "incident.created" || name === "incident.updated") receive(payload);
  else if (name === "positions") onPositions(payload?.items || []);
}

function onPositions(items) {
  for (const item of items) {
    const incident = item.kind === "sos" ? store.get(item.id) : null;
    if (incident && !(incident.last_fix?.t > item.t)) store.upsert({ ...incident, last_fix: item });
  }
  ui.panel.addTrail(ui.overlay.applyPositions(items));
}

function receive(incident) {
  const before = store.get(incident.id);
  if (store.upsert(incident) === "stale") return;
  const now = store.get(incident.id);
  ui.overlay.syncIncident(now);
  renderQueue();
  cue([[before, now]]);
  if (now.id === selectedId) {
    ui.panel.update(now);
    reloadSoon(now.id);
  }
}

/**
 * Sound and glow for what must be heard among these changes ([before, now] pairs): an arrival, a return to
 * open, a duress PIN, a raised priority. Each glows; one beep for them all, critical if any is.
 */
function cue(changes) {
  const heard = changes.map(([before, now]) => [now, store.cueOf(before, now)]).filter(([, kind]) => kind);
  if (!heard.length) return;
  heard.forEach(([now]) => ui.queue.markNew(now.id));
  beep(heard.some(([, kind]) => kind === "critical"));
  const items = heard.map(([i]) => [label("priority", i.priority), label("trigger", i.trigger), label("status", i.status),
    i.duress && t("duress")].filter(Boolean).join(" · "));
  el("announce").textContent = t("announce.cue", { items: items.join(", ") });
}

function renderQueue() {
  const items = store.queue();
  ui.queue.render(items, { selectedId, meId: me.id });
  el("queue-count").textContent = String(items.length);
  el("queue-empty").hidden = items.length > 0;
  titleCount(items.filter((i) => i.status === "open").length);
}

async function select(id) {
  selectedId = id;
  renderQueue();
  if (!id) {
    ui.panel.hide();
    ui.overlay.select(null);
    return;
  }
  if (ui.panel.incidentId !== id) { // until it arrives, nothing of the previous incident shows or can be acted on
    ui.panel.loading(id);
    ui.overlay.select(null);
  }
  try {
    const detail = await reload(id);
    if (selectedId === id) ui.map.setView(incidentLatLng(detail), Math.max(ui.map.getZoom(), 16));
  } catch (err) {
    readFailed(id, err);
  }
}

/** Read an incident again (null if that fails); if it is the chosen one, the panel follows, a refusal included. */
function reread(id) {
  return reload(id).catch((err) => { readFailed(id, err); return null; });
}

/**
 * The chosen incident could not be read. If it is out of reach (403: the operator now works another district;
 * 404), nothing of it stays on screen (caller, phone, trail) and the panel says why. A passing failure (no
 * answer, 503) leaves a view already shown as it is; the live state and the re-reads tell the rest.
 */
function readFailed(id, err) {
  if (selectedId !== id) return;
  const outOfReach = err.status === 403 || err.status === 404;
  if (!outOfReach && ui.panel.incidentId === id) return;
  const text = { 403: t("notice.gone_forbidden"), 404: t("notice.gone_missing") }[err.status]
    ?? t("notice.load_failed", { reason: errorText(err) });
  ui.overlay.select(null);
  ui.panel.unreadable(id, text, err.serverDetail);
}

/** Load one incident's full view: the queue and the map take it; the panel shows it if it is still chosen. */
async function reload(id) {
  const { incident } = await session.api(`/api/v1/incidents/${id}`);
  const before = store.get(id);
  const stale = store.upsert(store.summaryOf(incident)) === "stale";
  const now = store.get(id);
  if (now) ui.overlay.syncIncident(now);
  renderQueue();
  if (!stale) cue([[before, now]]);
  if (selectedId !== id) return incident;
  ui.panel.show(incident, me.id);
  ui.overlay.select(incident);
  if (stale && now) { // an event overtook this answer: show the state it brought, and read the timeline again
    ui.panel.update(now);
    reloadSoon(id);
  }
  return incident;
}

let reloadTimer = null;
function reloadSoon(id) {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => reread(id), 250);
}

/**
 * Acknowledge, dispatch or resolve; a conflict with another operator is shown with the true state. Dispatch and
 * resolve name the revision shown: if the incident changed since (a duress PIN, an escalation), the server
 * refuses, and the operator sees the change before deciding again. The operator may have chosen another
 * incident by the time the answer comes: what it says is told of the incident acted on, never of the one shown.
 */
async function act(kind, body) {
  const id = ui.panel.incidentId;
  if (!id || id !== selectedId) return; // the panel holds no loaded view of the chosen incident to act on
  const seen = store.get(id);
  if (kind !== "ack" && seen?.revision) body = { ...body, revision: seen.revision };
  ui.panel.busy(id, true);
  ui.panel.clearNotice();
  try {
    const { incident } = await session.api(`/api/v1/incidents/${id}/${kind}`, { method: "POST", body });
    if (ui.panel.incidentId === id) ui.panel.actionDone(kind); // another incident's form keeps what was typed
    receive(incident);
  } catch (err) {
    if (err.status === 409) {
      // Told with the state read now; if that read fails, the state is not guessed from what was known before.
      const fresh = await reread(id);
      const now = fresh && store.get(id);
      const text = !now ? t("notice.conflict_unread")
        : t(seen && now.status === seen.status ? "notice.changed" : "notice.conflict", { status: label("status", now.status) });
      tell(id, "conflict", text);
    } else {
      tell(id, "error", t("notice.error", { reason: errorText(err) }), err.serverDetail);
    }
  } finally {
    ui.panel.busy(id, false);
  }
}

/** A notice about an incident acted on: on its panel if it is still shown, else a short one naming it. */
function tell(id, kind, text, serverDetail) {
  if (ui.panel.incidentId === id) ui.panel.notice(kind, text, serverDetail);
  else toast(t("notice.about", { id: shortId(id), text }));
}

/** A short notice outside the panel; it goes by itself after a while, or on a click. */
function toast(text) {
  el("toast").textContent = text;
  el("toast").hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el("toast").hidden = true; }, TOAST_MS);
}

function onUp() {
  everUp = true;
  clearInterval(pollTimer);
  pollTimer = null;
  showLiveState();
  refetch();
  if (selectedId) reread(selectedId);
}

function onDown() {
  pollTimer ??= setInterval(refetch, POLL_WHILE_DOWN_MS);
  showLiveState();
  setTimeout(showLiveState, BANNER_GRACE_MS + 100);
}

/** The banner shows whenever live events cannot reach us (after a short grace at start). */
function showLiveState() {
  const up = ui.live?.up ?? false;
  const down = !up && (everUp || Date.now() - startedAt >= BANNER_GRACE_MS);
  el("banner").hidden = !down;
  el("live-state").dataset.state = up ? "up" : "down";
  el("live-state").dataset.i18n = up ? "live.up" : "live.down";
  apply(el("live-state").parentElement);
}

boot();
