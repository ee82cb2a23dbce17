// Small formatting helpers: escaping, ages against the server's clock, times and distances.
import { currentLang } from "./i18n.js";

const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
// Times are Seoul's, whatever time zone the workstation is set to: they are compared with calls, radio and CCTV.
const TIME_ZONE = "Asia/Seoul";
let skewMs = 0; // server clock minus ours, from the Date header of API answers

export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ENTITIES[c]);
}

/** Remember the server's clock so ages stay right on a workstation whose clock drifts. */
export function noteServerDate(header) {
  const server = Date.parse(header || "");
  if (!Number.isNaN(server)) skewMs = server + 500 - Date.now(); // Date has 1 s resolution
}

export function serverNow() {
  return Date.now() + skewMs;
}

/** Waiting time as m:ss or h:mm:ss. */
export function age(iso, now = serverNow()) {
  const total = Math.max(0, Math.floor((now - Date.parse(iso)) / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

export function ageSeconds(iso, now = serverNow()) {
  return Math.max(0, (now - Date.parse(iso)) / 1000);
}

export function clock(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleTimeString(currentLang() === "ko" ? "ko-KR" : "en-GB",
    { hour12: false, timeZone: TIME_ZONE });
}

export function dateTime(iso) {
  if (!iso) return "";
  const locale = currentLang() === "ko" ? "ko-KR" : "en-GB";
  return new Date(iso).toLocaleString(locale,
    { hour12: false, dateStyle: "short", timeStyle: "short", timeZone: TIME_ZONE });
}

export function metres(m) {
  return m == null ? "" : `${Math.round(m)} m`;
}

export function shortId(id) {
  return String(id).slice(0, 8);
}
