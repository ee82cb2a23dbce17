// The incidents this page knows, merged from REST answers and socket events in the order of their revision.
// The server adds one to an incident's `revision` at every change it records; the status alone cannot order
// them, since a duress PIN reopens a closed incident and a release turns an acknowledged one back to open.
const PRIORITY = { critical: 0, high: 1, normal: 2 };
export const CLOSED = new Set(["resolved", "cancelled"]);

// A console stays open for a twelve-hour shift: what it no longer shows is let go of, all but a small record.
const CLOSED_KEPT_MS = 5 * 60_000; // a closed incident is kept this long (its panel may be open), then only its revision
const DROPPED_KEPT_MS = 30 * 60_000; // late news comes within seconds: after this, a forgotten revision goes too

const incidents = new Map(); // id -> {incident, seenAt}
// id -> {revision, at}: the revision known when the incident was let go of (a list left it out, or it was closed
// a while): older news of it is stale
const dropped = new Map();

const revisionOf = (incident) => (Number.isFinite(incident?.revision) ? incident.revision : 0);
const fixTime = (fix) => (fix?.t ? Date.parse(fix.t) : -Infinity);

/**
 * Take a view of an incident. Returns "new", "changed" or "stale": a view older than the one held (a late
 * event, a list or a detail fetched before a change) is ignored, whatever its status. Views of the same
 * revision differ only in the live position: the newest fix is kept either way.
 */
export function upsert(incident, seenAt = performance.now()) {
  const known = incidents.get(incident.id);
  const floor = known ? revisionOf(known.incident) : (dropped.get(incident.id)?.revision ?? -1);
  if (revisionOf(incident) < floor || (!known && revisionOf(incident) === floor)) return "stale";
  const merged = { ...known?.incident, ...incident };
  if (fixTime(known?.incident.last_fix) > fixTime(incident.last_fix)) merged.last_fix = known.incident.last_fix;
  incidents.set(incident.id, { incident: merged, seenAt });
  dropped.delete(incident.id);
  return known ? "changed" : "new";
}

/**
 * Reconcile with a fresh list of every open incident, fetched from fetchStartedAt. The list is the truth about
 * what it names (unless an event brought something newer meanwhile); anything open it leaves out was closed
 * meanwhile, unless an event told us about it after the fetch began. Answers `changes`, [before, now] for each
 * incident it added or changed, for the caller to cue, and the ids it let go of (`dropped`).
 */
export function reconcile(items, fetchStartedAt) {
  const listed = new Set();
  const changes = [];
  const droppedIds = [];
  for (const incident of items) {
    listed.add(incident.id);
    const before = get(incident.id);
    if (upsert(incident) !== "stale") changes.push([before, get(incident.id)]);
  }
  for (const [id, entry] of incidents) {
    if (!listed.has(id) && entry.seenAt < fetchStartedAt && !CLOSED.has(entry.incident.status)) {
      letGo(id, entry);
      droppedIds.push(id);
    }
  }
  prune();
  return { changes, dropped: droppedIds };
}

/** Let go of incidents closed a few minutes ago, and of the revisions of those let go of long ago. */
export function prune(now = performance.now()) {
  for (const [id, entry] of incidents) {
    if (CLOSED.has(entry.incident.status) && now - entry.seenAt > CLOSED_KEPT_MS) letGo(id, entry, now);
  }
  for (const [id, record] of dropped) {
    if (now - record.at > DROPPED_KEPT_MS) dropped.delete(id);
  }
}

function letGo(id, entry, now = performance.now()) {
  incidents.delete(id);
  dropped.set(id, { revision: revisionOf(entry.incident), at: now });
}

/**
 * Whether a change must be heard: "critical", "normal" or null. An arrival and a return to open (a duress PIN
 * on a closed incident, a release) cue by priority; a duress PIN, a priority raised or an escalation on an
 * incident already shown cue as critical. News of an incident not known here that someone has already taken
 * is no arrival: it joins the queue silently.
 */
export function cueOf(before, now) {
  if (!now || CLOSED.has(now.status)) return null;
  if (!before && now.status !== "open") return null;
  const urgent = now.priority === "critical" || now.duress;
  if (!before || (before.status !== "open" && now.status === "open")) return urgent ? "critical" : "normal";
  if (now.duress && !before.duress) return "critical";
  if ((PRIORITY[now.priority] ?? 9) < (PRIORITY[before.priority] ?? 9)) return "critical";
  if (now.escalated_at && !before.escalated_at) return "critical";
  return null;
}

/** The operator view within a detail (GET /incidents/{id}): what the store keeps of it. */
export function summaryOf(detail) {
  const { events, trail, trail_truncated: truncated, caller, earlier_incidents: earlier, ...summary } = detail;
  return summary;
}

export function get(id) {
  return incidents.get(id)?.incident ?? null;
}

export function forget(id) {
  incidents.delete(id);
}

/** Open incidents, most urgent first: priority, then the longest waiting. */
export function queue() {
  return [...incidents.values()]
    .map((e) => e.incident)
    .filter((i) => !CLOSED.has(i.status))
    .sort((a, b) => (PRIORITY[a.priority] ?? 9) - (PRIORITY[b.priority] ?? 9)
      || Date.parse(a.created_at) - Date.parse(b.created_at));
}

export function all() {
  return [...incidents.values()].map((e) => e.incident);
}
