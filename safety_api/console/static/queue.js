// The incident queue: one keyed list item per open incident, by priority then age, with a live age.
import { age, ageSeconds, esc } from "./format.js";
import { label, t } from "./i18n.js";

const NEW_CUE_MS = 8000;
const WAITING_TOO_LONG_S = 60; // an open incident nobody took for a minute is marked
const rendered = new WeakMap(); // li -> the markup it shows, so unchanged items are not touched

export class Queue {
  constructor(list, { onSelect }) {
    this.list = list;
    this.items = new Map(); // id -> li
    list.addEventListener("click", (e) => {
      const item = e.target.closest("[data-incident-id]");
      if (item) onSelect(item.dataset.incidentId);
    });
    list.addEventListener("keydown", (e) => {
      const item = e.target.closest("[data-incident-id]");
      if (item && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); onSelect(item.dataset.incidentId); }
    });
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  /** Show exactly these incidents in this order, touching only what changed. */
  render(incidents, { selectedId, meId }) {
    const wanted = new Set(incidents.map((i) => i.id));
    for (const [id, li] of this.items) {
      if (!wanted.has(id)) { li.remove(); this.items.delete(id); }
    }
    incidents.forEach((incident, index) => {
      const li = this.items.get(incident.id) ?? this.create(incident.id);
      fill(li, incident, { selected: incident.id === selectedId, meId });
      if (this.list.children[index] !== li) this.list.insertBefore(li, this.list.children[index] ?? null);
    });
    this.tick();
  }

  create(id) {
    const li = document.createElement("li");
    li.tabIndex = 0;
    li.dataset.incidentId = id;
    this.items.set(id, li);
    return li;
  }

  /** The visual cue of an arrival: the item glows for a few seconds. */
  markNew(id) {
    const li = this.items.get(id);
    if (!li) return;
    li.classList.add("is-new");
    setTimeout(() => li.classList.remove("is-new"), NEW_CUE_MS);
  }

  tick() {
    for (const li of this.items.values()) {
      const el = li.querySelector(".q-age");
      if (el) el.textContent = age(li.dataset.createdAt);
      li.classList.toggle("is-overdue",
        li.dataset.status === "open" && ageSeconds(li.dataset.createdAt) > WAITING_TOO_LONG_S);
    }
  }
}

function fill(li, incident, { selected, meId }) {
  li.className = `q-item prio-${incident.priority}${li.classList.contains("is-new") ? " is-new" : ""}`;
  li.dataset.status = incident.status;
  li.dataset.createdAt = incident.created_at;
  li.setAttribute("aria-selected", String(selected));
  const html = `
    <span class="q-prio">${esc(label("priority", incident.priority))}</span>
    <span class="q-main">
      <b>${esc(label("trigger", incident.trigger))}</b>
      <span class="q-status status-${esc(incident.status)}">${esc(label("status", incident.status))}</span>
      ${flags(incident, meId).map((f) => `<span class="q-flag">${esc(f)}</span>`).join("")}
    </span>
    <span class="q-age"></span>`;
  if (rendered.get(li) !== html) {
    li.innerHTML = html;
    rendered.set(li, html);
  }
}

function flags(incident, meId) {
  const out = [];
  if (incident.duress) out.push(t("duress"));
  if (incident.escalated_at) out.push(t("escalated"));
  if (incident.acknowledged_by) out.push(incident.acknowledged_by === meId ? t("queue.mine") : t("queue.other"));
  return out;
}
