// The selected incident: who, where, which cameras, what happened so far, and the operator's actions.
import { age, clock, dateTime, esc, metres, shortId } from "./format.js";
import { label, t } from "./i18n.js";
import { TRAIL_LIMIT } from "./overlay.js";
import { CLOSED } from "./store.js";

const $ = (root, sel) => root.querySelector(sel);
// Where the incident stands: when this changes, what an info notice said of it ("closed", "another operator
// took it") may be untrue (a duress PIN reopens a closed incident, a release turns a taken one back to open).
const standingChanged = (a, b) => a.status !== b.status || (a.acknowledged_by ?? null) !== (b.acknowledged_by ?? null);

export class DetailPanel {
  constructor(root, { onAction, onClose, onCamera }) {
    this.root = root;
    this.detail = null;
    this.meId = null;
    this.trailPoints = 0;
    this.busyIds = new Set(); // incidents with an action on its way
    $(root, ".d-close").addEventListener("click", onClose);
    $(root, "#act-ack").addEventListener("click", () => onAction("ack", {}));
    $(root, "#act-dispatch").addEventListener("click", () => this.openForm("dispatch"));
    $(root, "#act-resolve").addEventListener("click", () => this.openForm("resolve"));
    for (const kind of ["dispatch", "resolve"]) {
      $(root, `#${kind}-form`).addEventListener("submit", (e) => {
        e.preventDefault();
        const data = Object.fromEntries(new FormData(e.target));
        data.note = data.note.trim() || null;
        onAction(kind, data);
      });
    }
    const cameraOf = (e) => {
      const li = e.target.closest("[data-cctv-id]");
      return this.detail?.nearest_cctvs.find((c) => c.id === li?.dataset.cctvId);
    };
    $(root, "#d-cameras").addEventListener("click", (e) => {
      const cam = cameraOf(e);
      if (cam) onCamera(cam);
    });
    $(root, "#d-cameras").addEventListener("keydown", (e) => { // the items are focusable: keys do what a click does
      const cam = (e.key === "Enter" || e.key === " ") && cameraOf(e);
      if (cam) { e.preventDefault(); onCamera(cam); }
    });
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  get incidentId() {
    return this.detail?.id ?? null;
  }

  /**
   * Another incident was chosen and its full view is on its way: nothing of the one shown before stays, and
   * no action can be sent until it arrives (it would land on the incident shown before).
   */
  loading(id) {
    this.detail = null;
    this.loadingId = id;
    this.trailPoints = 0;
    this.root.hidden = false;
    this.root.dataset.incidentId = id;
    this.root.dataset.state = "loading";
    delete this.root.dataset.status;
    this.clearNotice();
    this.resetForms();
    this.renderActions();
    $(this.root, "#d-title").textContent = t("detail.loading");
    for (const part of ["#d-caller", "#d-location", "#d-cameras", "#d-events", "#d-earlier"]) {
      $(this.root, part).innerHTML = "";
    }
  }

  /**
   * The chosen incident cannot be read (or no longer): nothing of it stays, the panel says why, and the
   * actions stay off until it is chosen again.
   */
  unreadable(id, text, serverDetail) {
    if (this.incidentId !== id && this.loadingId !== id) return;
    this.loading(id);
    this.root.dataset.state = "failed";
    $(this.root, "#d-title").textContent = `#${shortId(id)}`;
    this.notice("error", text, serverDetail);
  }

  /** Show a freshly loaded incident (GET /api/v1/incidents/{id}). */
  show(detail, meId) {
    const before = this.detail;
    const switched = detail.id !== before?.id;
    this.detail = detail;
    this.loadingId = null;
    this.meId = meId;
    this.trailPoints = detail.trail?.length ?? 0;
    this.root.hidden = false;
    this.root.dataset.incidentId = detail.id;
    this.root.dataset.state = "ready";
    if (switched) {
      this.clearNotice();
      this.resetForms();
    } else if (this.noticeKind === "info" && standingChanged(before, detail)) {
      this.clearNotice();
    }
    this.renderAll();
  }

  /** A newer operator view of the same incident (from an event or an action's answer). */
  update(incident) {
    if (!this.detail || incident.id !== this.detail.id) return;
    if ((incident.revision ?? 0) < (this.detail.revision ?? 0)) return; // older than what is shown
    const takenByOther = incident.acknowledged_by && incident.acknowledged_by !== this.meId
      && incident.acknowledged_by !== this.detail.acknowledged_by;
    const before = this.detail;
    this.detail = { ...before, ...incident };
    if (this.noticeKind === "info" && standingChanged(before, this.detail)) this.clearNotice();
    if (takenByOther) this.notice("info", t("notice.taken"));
    this.renderAll();
  }

  hide() {
    this.detail = null;
    this.loadingId = null;
    this.root.hidden = true;
    delete this.root.dataset.incidentId;
    delete this.root.dataset.state;
  }

  renderAll() {
    if (!this.detail) return;
    this.renderHead();
    this.renderActions();
    this.renderCaller();
    this.renderLocation();
    this.renderCameras();
    this.renderEvents();
    this.renderEarlier();
  }

  renderHead() {
    const d = this.detail;
    this.root.dataset.status = d.status;
    const flags = [d.duress && t("duress"), d.escalated_at && t("escalated")].filter(Boolean);
    $(this.root, "#d-title").innerHTML = `
      <span class="badge prio-${esc(d.priority)}">${esc(label("priority", d.priority))}</span>
      <b>${esc(label("trigger", d.trigger))}</b>
      <span class="q-status status-${esc(d.status)}" data-role="status">${esc(label("status", d.status))}</span>
      ${flags.map((f) => `<span class="q-flag">${esc(f)}</span>`).join("")}
      <small>#${esc(shortId(d.id))} · ${esc(clock(d.created_at))} · <span class="d-age"></span></small>`;
    this.tick();
  }

  renderActions() {
    const busy = this.busyIds.has(this.incidentId);
    this.root.classList.toggle("is-busy", busy);
    if (!this.detail || busy) { // nothing loaded to act on, or an action on it is on its way
      this.root.querySelectorAll(".d-actions button, .d-form button").forEach((b) => { b.disabled = true; });
      return;
    }
    const s = this.detail.status;
    $(this.root, "#act-ack").disabled = s !== "open";
    $(this.root, "#act-dispatch").disabled = !(s === "open" || s === "acknowledged");
    $(this.root, "#act-resolve").disabled = CLOSED.has(s);
    // A form that can no longer be sent stays open with what was typed, its button off: nothing is lost.
    $(this.root, "#dispatch-form button").disabled = $(this.root, "#act-dispatch").disabled;
    $(this.root, "#resolve-form button").disabled = CLOSED.has(s);
    if (CLOSED.has(s) && !this.noticeKind) this.notice("info", t("notice.closed"));
  }

  renderCaller() {
    const c = this.detail.caller;
    $(this.root, "#d-caller").innerHTML = c ? `
      <b>${esc(c.name)}</b> <a href="tel:${esc(c.phone)}">${esc(c.phone)}</a>
      ${c.protection ? `<p class="q-flag">${esc(t("detail.protection"))}: ${esc(c.protection.agency)}
        ${esc(c.protection.case_reference || "")}</p>` : ""}` : `<span class="muted">${esc(t("detail.unknown_caller"))}</span>`;
  }

  renderLocation() {
    const d = this.detail;
    const fix = d.last_fix || {};
    const [lon, lat] = d.location.coordinates;
    const el = $(this.root, "#d-location");
    el.dataset.trailPoints = String(this.trailPoints);
    el.dataset.trailTruncated = String(Boolean(d.trail_truncated));
    el.innerHTML = `
      <span>${(fix.lat ?? lat).toFixed(5)}, ${(fix.lon ?? lon).toFixed(5)}</span>
      ${d.accuracy_m || fix.accuracy_m ? `<span class="muted">± ${esc(metres(fix.accuracy_m ?? d.accuracy_m))}</span>` : ""}
      <br><span class="muted">${esc(t("detail.last_fix"))} ${esc(clock(fix.t || d.created_at))} ·
      ${esc(t(d.trail_truncated ? "detail.trail_cut" : "detail.trail", { n: this.trailPoints }))}</span>`;
  }

  renderCameras() {
    const cams = this.detail.nearest_cctvs || [];
    $(this.root, "#d-cameras").innerHTML = cams.length ? cams.map((c) => `
      <li data-cctv-id="${esc(c.id)}" tabindex="0"><b>${esc(c.name || `CCTV ${c.id}`)}</b>
      <span class="muted">${esc(metres(c.distance_m))} · ${esc(t("detail.cameras_count", { n: c.camera_count ?? 1 }))}</span></li>`).join("")
      : `<li class="muted">${esc(t("detail.no_cameras"))}</li>`;
  }

  renderEvents() {
    $(this.root, "#d-events").innerHTML = (this.detail.events || []).map((e) => `
      <li><time>${esc(clock(e.at))}</time> <b>${esc(label("event", e.kind))}</b>
      <span class="muted">· ${esc(this.actor(e.actor_id))}${esc(eventDetails(e.data))}</span></li>`).join("");
  }

  renderEarlier() {
    const earlier = this.detail.earlier_incidents || [];
    $(this.root, "#d-earlier").innerHTML = earlier.length ? earlier.map((e) => `
      <li><time>${esc(dateTime(e.created_at))}</time> ${esc(label("trigger", e.trigger))}
      <span class="muted">· ${esc(e.outcome ? label("outcome", e.outcome) : label("status", e.status))}</span></li>`).join("")
      : `<li class="muted">${esc(t("detail.no_earlier"))}</li>`;
  }

  actor(id) {
    if (!id) return t("actor.system");
    if (id === this.meId) return t("actor.me");
    return id === this.detail.caller_id ? t("actor.caller") : t("actor.other");
  }

  /** Fixes that joined the trail live: count them (the map keeps the newest TRAIL_LIMIT) and show the newest. */
  addTrail(fixes) {
    if (!fixes.length || !this.detail) return;
    this.trailPoints += fixes.length;
    if (this.trailPoints > TRAIL_LIMIT) {
      this.trailPoints = TRAIL_LIMIT;
      this.detail.trail_truncated = true;
    }
    this.detail.last_fix = fixes[fixes.length - 1];
    this.renderLocation();
  }

  openForm(kind) {
    const form = $(this.root, `#${kind}-form`);
    const other = $(this.root, `#${kind === "dispatch" ? "resolve" : "dispatch"}-form`);
    other.hidden = true;
    form.hidden = !form.hidden;
    if (!form.hidden) form.querySelector("select, textarea")?.focus();
  }

  /** Another incident is shown: its forms start closed and empty (a note typed for one is never sent for another). */
  resetForms() {
    for (const kind of ["dispatch", "resolve"]) {
      const form = $(this.root, `#${kind}-form`);
      form.reset();
      form.hidden = true;
    }
  }

  /** After a successful action, its form is done with; after a failure it keeps what was typed. */
  actionDone(kind) {
    const form = this.root.querySelector(`#${kind}-form`);
    if (form) { form.reset(); form.hidden = true; }
  }

  /**
   * While an action on an incident is on its way, no second click can send it again, even if the operator
   * looks at another incident and comes back meanwhile (and the other incident's actions stay free).
   */
  busy(id, on) {
    if (on) this.busyIds.add(id);
    else this.busyIds.delete(id);
    this.renderActions();
  }

  /** A notice in the operator's words; the server's own (English) detail, if any, as a smaller second line. */
  notice(kind, text, serverDetail = "") {
    const el = $(this.root, "#d-notice");
    el.className = `notice notice-${kind}`;
    el.replaceChildren(text);
    if (serverDetail) {
      const small = document.createElement("small");
      small.className = "notice-detail";
      small.lang = "en";
      small.textContent = serverDetail;
      el.append(small);
    }
    el.hidden = false;
    this.noticeKind = kind;
  }

  clearNotice() {
    $(this.root, "#d-notice").hidden = true;
    this.noticeKind = null;
  }

  tick() {
    const el = this.root.querySelector(".d-age");
    if (!el || !this.detail) return;
    const end = this.detail.closed_at ? Date.parse(this.detail.closed_at) : undefined; // a closed one stops
    el.textContent = age(this.detail.created_at, end);
  }
}

function eventDetails(data) {
  if (!data) return "";
  const parts = [];
  if (data.agency) parts.push(label("agency", data.agency));
  if (data.outcome) parts.push(label("outcome", data.outcome));
  if (data.note) parts.push(`“${data.note}”`);
  return parts.length ? ` · ${parts.join(" · ")}` : "";
}
