// What moves on the map: incident pins, live positions of any kind (sos, walk, escort, ...), and the
// selected incident's trail and nearest cameras.
/* global L */
import { clock, esc, metres, serverNow } from "./format.js";
import { label } from "./i18n.js";
import { CLOSED } from "./store.js";

// A position not renewed for this long is drawn faint: the phone may have gone quiet. Counted from when it
// reached us, on the server's clock: a phone's own clock (its fix's `t`) may be minutes off.
const FADE_AFTER_MS = 60_000;
const DROP_AFTER_MS = 10 * 60_000;
// The live trail of the selected incident keeps as many points as the server sends with a detail
// (services/incident_views.py TRAIL_LIMIT): a caller followed all night does not grow the page without end.
export const TRAIL_LIMIT = 5000;

export function incidentLatLng(incident) {
  const fix = incident.last_fix;
  if (fix && Number.isFinite(fix.lat) && Number.isFinite(fix.lon)) return [fix.lat, fix.lon];
  const [lon, lat] = incident.location.coordinates;
  return [lat, lon];
}

function pinHtml(incident, selected) {
  const classes = `pin prio-${esc(incident.priority)}${selected ? " is-selected" : ""}${incident.duress ? " is-duress" : ""}`;
  return `<div class="${classes}" data-incident-id="${esc(incident.id)}" data-status="${esc(incident.status)}"></div>`;
}

function pinIcon(html) {
  return L.divIcon({ className: "pin-wrap", iconSize: [26, 26], iconAnchor: [13, 13], html });
}

export class LiveOverlay {
  constructor(map, { onSelect }) {
    this.map = map;
    this.onSelect = onSelect;
    this.pins = new Map(); // incident id -> {marker, incident, html}
    this.others = new Map(); // "kind:id" -> {marker, at: when its last position reached us (serverNow)}
    map.createPane("live").style.zIndex = 560;
    this.focus = L.layerGroup().addTo(map);
    this.trail = null;
    this.accuracy = null;
    this.selectedId = null;
    this.pruner = setInterval(() => this.prune(), 5000);
  }

  /** Place, restyle or remove an incident's pin after any change. */
  syncIncident(incident) {
    if (CLOSED.has(incident.status)) {
      this.removeIncident(incident.id);
      return;
    }
    const known = this.pins.get(incident.id);
    const html = pinHtml(incident, incident.id === this.selectedId);
    if (known) {
      known.marker.setLatLng(incidentLatLng(incident));
      // A new icon is a new element, and its pulse starts over: only when the pin must look different, not at
      // every re-read of the list (every 30 s, every 5 s while disconnected).
      if (html !== known.html) known.marker.setIcon(pinIcon(html));
      Object.assign(known, { incident, html });
      return;
    }
    const marker = L.marker(incidentLatLng(incident), { icon: pinIcon(html), keyboard: false, riseOnHover: true })
      .on("click", () => this.onSelect(incident.id)).addTo(this.map);
    this.pins.set(incident.id, { marker, incident, html });
    this.others.get(`sos:${incident.id}`)?.marker.remove(); // drawn before its incident was known
    this.others.delete(`sos:${incident.id}`);
  }

  /** Make the pins match a fresh list of open incidents. */
  syncAll(incidents) {
    const listed = new Set(incidents.map((i) => i.id));
    for (const id of [...this.pins.keys()]) if (!listed.has(id)) this.removeIncident(id);
    incidents.forEach((i) => this.syncIncident(i));
  }

  removeIncident(id) {
    this.pins.get(id)?.marker.remove();
    this.pins.delete(id);
  }

  /** Apply a `positions` batch; answers the fixes that joined the selected incident's trail. */
  applyPositions(items) {
    const joined = [];
    for (const item of items) {
      if (!Number.isFinite(item.lat) || !Number.isFinite(item.lon)) continue;
      if (item.kind !== "sos") {
        this.placeOther(item);
        continue;
      }
      // An SOS position is shown on its incident's pin only: one of an incident already closed (its last batch
      // flushed after the news) would otherwise stay on the map as a stray dot.
      const pin = this.pins.get(item.id);
      if (!pin) continue;
      pin.marker.setLatLng([item.lat, item.lon]);
      pin.incident = { ...pin.incident, last_fix: item };
      if (item.id === this.selectedId && this.extendTrail(item)) joined.push(item);
    }
    return joined;
  }

  placeOther(item) {
    const key = `${item.kind}:${item.id}`;
    const at = serverNow();
    const tip = `${esc(label("kind", item.kind))} · ${esc(clock(item.t))}`;
    const known = this.others.get(key);
    if (known) {
      known.marker.setLatLng([item.lat, item.lon]).setTooltipContent(tip).setStyle({ opacity: 1, fillOpacity: 0.9 });
      known.at = at;
      return;
    }
    const marker = L.circleMarker([item.lat, item.lon], {
      pane: "live", radius: 7, weight: 2, fillOpacity: 0.9, className: `live-pos kind-${esc(item.kind)}`,
    }).bindTooltip(tip).addTo(this.map);
    marker.getElement()?.setAttribute("data-position-id", key);
    this.others.set(key, { marker, at });
  }

  prune(now = serverNow()) {
    for (const [key, entry] of this.others) {
      if (now - entry.at > DROP_AFTER_MS) {
        entry.marker.remove();
        this.others.delete(key);
      } else if (now - entry.at > FADE_AFTER_MS) {
        entry.marker.setStyle({ opacity: 0.35, fillOpacity: 0.2 });
      }
    }
  }

  /** Show the selected incident: its trail, its accuracy and its nearest cameras highlighted. */
  select(detail) {
    const previous = this.selectedId;
    this.selectedId = detail?.id ?? null;
    for (const id of [previous, this.selectedId]) {
      const pin = this.pins.get(id);
      if (pin) this.syncIncident(pin.incident);
    }
    this.focus.clearLayers();
    this.trail = this.accuracy = null;
    if (!detail) return;
    for (const cam of detail.nearest_cctvs || []) {
      const [lon, lat] = cam.location.coordinates;
      L.circleMarker([lat, lon], { pane: "focus", radius: 9, weight: 2, className: "cam-focus" })
        .bindTooltip(`CCTV ${esc(cam.name || cam.id)} · ${esc(metres(cam.distance_m))}`).addTo(this.focus);
    }
    const points = (detail.trail || []).map((f) => [f.lat, f.lon]);
    this.trail = L.polyline(points, { pane: "focus", weight: 3, className: "trail" }).addTo(this.focus);
    const here = incidentLatLng(detail);
    if (detail.accuracy_m) {
      this.accuracy = L.circle(here, { pane: "focus", radius: detail.accuracy_m, weight: 1, className: "accuracy" })
        .addTo(this.focus);
    }
  }

  extendTrail(fix) {
    if (!this.trail) return false;
    this.trail.addLatLng([fix.lat, fix.lon]);
    const points = this.trail.getLatLngs();
    if (points.length > TRAIL_LIMIT) this.trail.setLatLngs(points.slice(-TRAIL_LIMIT));
    this.accuracy?.setLatLng([fix.lat, fix.lon]);
    if (fix.accuracy_m) this.accuracy?.setRadius(fix.accuracy_m);
    return true;
  }
}
