// The map: offline vector base layers from our own API (district, dongs, streets), facility layers on
// canvas, an optional tile layer when the deployment has one, and a small layer switch.
/* global L */
import { esc } from "./format.js";
import { apply, errorText, t } from "./i18n.js";
import { PointLayer } from "./points.js";
import { api } from "./session.js";

const SEOUL = [37.5665, 126.978];
const FACILITY_COLOURS = { cctv: "#5fa8d3", bell: "#d6b656", police: "#8f9cff", safe_house: "#6cc08f" };
const DEFAULT_ON = new Set(["cctv", "police", "safe_house", "streets", "dongs"]);

export function createMap(element, { tileUrl }) {
  const map = L.map(element, { attributionControl: false, zoomSnap: 1, minZoom: 10, maxZoom: 19 })
    .setView(SEOUL, 12);
  map.createPane("base").style.zIndex = 350;
  map.createPane("facilities").style.zIndex = 420;
  map.createPane("focus").style.zIndex = 450;
  map.getPane("base").style.pointerEvents = "none";
  if (tileUrl) L.tileLayer(tileUrl, { maxZoom: 19 }).addTo(map);
  new ResizeObserver(() => map.invalidateSize()).observe(element); // the detail pane opens and closes
  return map;
}

/** Draw the district, its dongs and its streets; answers the overlays by name for the layer switch. */
export async function loadBase(map, district) {
  const outline = await api(`/api/v1/districts/${encodeURIComponent(district)}`);
  const [x0, y0, x1, y1] = outline.bbox;
  map.fitBounds([[y0, x0], [y1, x1]], { padding: [8, 8] });
  map.setMaxBounds(L.latLngBounds([[y0, x0], [y1, x1]]).pad(0.6));
  const renderer = L.canvas({ pane: "base", padding: 0.5 });
  const dongs = L.geoJSON(outline.dongs, { renderer, interactive: false,
    style: { color: "#46505c", weight: 1, fill: false } });
  L.geoJSON(outline.boundary, { renderer, interactive: false,
    style: { color: "#9aa7b4", weight: 2.5, fillColor: "#1d232a", fillOpacity: 0.35 } }).addTo(map);
  const network = await api(`/api/v1/layers/streets?district=${encodeURIComponent(district)}`);
  const streets = L.geoJSON(network, { renderer, interactive: false, style: { color: "#3b4450", weight: 1.2 } });
  streets.partial = Boolean(network.truncated); // more edges than the server sends at once: the switch says so
  return { name: outline.name, nameEn: outline.name_en, overlays: { dongs, streets } };
}

/** Every camera, bell, police box and safe house of the district, each kind one canvas layer. */
export async function loadFacilities(district) {
  const kinds = Object.keys(FACILITY_COLOURS);
  const answers = await Promise.all(kinds.map((kind) =>
    api(`/api/v1/layers/facilities?kind=${kind}&district=${encodeURIComponent(district)}`)));
  const overlays = {};
  answers.forEach((data, i) => {
    const layer = new PointLayer(data, { color: FACILITY_COLOURS[kinds[i]] });
    layer.meta = { kind: kinds[i], count: data.count, cameras: data.cameras };
    overlays[kinds[i]] = layer;
  });
  return overlays;
}

/** A compact switch with a checkbox per overlay (labels follow the language). */
export function layerSwitch(map, overlays) {
  const Switch = L.Control.extend({
    onAdd() {
      const box = L.DomUtil.create("form", "layer-switch");
      box.innerHTML = `<strong data-i18n="layers.title"></strong>` + Object.entries(overlays).map(([key, layer]) => `
        <label><input type="checkbox" name="${esc(key)}" ${DEFAULT_ON.has(key) ? "checked" : ""}>
        <i class="swatch swatch-${esc(key)}"></i><span data-i18n="layers.${esc(key)}"></span>
        ${layer.meta ? `<small>${layer.meta.cameras.toLocaleString()}</small>` : ""}
        ${layer.partial ? `<small class="partial" data-i18n="layers.partial"></small>` : ""}</label>`).join("");
      L.DomEvent.disableClickPropagation(box);
      box.addEventListener("change", (e) => toggle(map, overlays[e.target.name], e.target.checked));
      apply(box);
      return box;
    },
  });
  Object.entries(overlays).forEach(([key, layer]) => { if (DEFAULT_ON.has(key)) layer.addTo(map); });
  return new Switch({ position: "topright" }).addTo(map);
}

function toggle(map, layer, on) {
  if (on) layer.addTo(map); else map.removeLayer(layer);
}

/**
 * Clicking near a drawn facility tells what it is (details from the nearby endpoint). Only the latest click is
 * answered: an earlier one's answer may come back after it, and would open the wrong popup.
 */
export function facilityPopups(map, overlays) {
  let latest = 0;
  map.on("click", async (e) => {
    const hit = Object.values(overlays).filter((l) => l.meta && map.hasLayer(l))
      .map((layer) => ({ layer, index: layer.nearest(e.latlng) })).find((h) => h.index >= 0);
    if (!hit) return;
    const click = ++latest;
    const at = hit.layer.latLngAt(hit.index);
    const kind = hit.layer.meta.kind;
    let content;
    try {
      const found = await api(`/api/v1/facilities?lat=${at.lat}&lon=${at.lng}&radius=5&kinds=${kind}&limit=1`);
      const props = found.features[0]?.properties;
      if (!props) return;
      const cams = props.camera_count ? ` · ${t("detail.cameras_count", { n: props.camera_count })}` : "";
      content = `<b>${esc(t(`layers.${props.kind}`))}</b><br>${esc(props.name || props.source_id)}${esc(cams)}`;
    } catch (err) {
      content = `<b>${esc(t(`layers.${kind}`))}</b><br>${esc(errorText(err))}`;
    }
    if (click === latest) L.popup().setLatLng(at).setContent(content).openOn(map);
  });
}
