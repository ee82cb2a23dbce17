// The incidents this page knows, merged from REST answers and socket events without ever stepping back.
const STEP = { open: 0, acknowledged: 1, dispatched: 2, resolved: 3, cancelled: 3 };
const PRIORITY = { critical: 0, high: 1, normal: 2 };
export const CLOSED = new Set(["resolved", "cancelled"]);

const incidents = new Map(); // id -> {incident, seenAt}

/**
 * Take a newer view of an incident. Returns "new", "changed" or "stale": an answer that would move the
 * status backwards (a late event, or a list fetched before the change) is ignored.
 */
export function upsert(incident, seenAt = performance.now()) {
  const known = incidents.get(incident.id);
  if (known && (STEP[incident.status] ?? 0) < (STEP[known.incident.status] ?? 0)) return "stale";
  incidents.set(incident.id, { incident: { ...known?.incident, ...incident }, seenAt });
  return known ? "changed" : "new";
}

/**
 * Reconcile with a fresh list of the open incidents, fetched from fetchStartedAt: anything absent from it
 * was closed meanwhile, unless an event told us about it after the fetch began.
 */
export function reconcile(items, fetchStartedAt) {
  const listed = new Set();
  const added = [];
  for (const incident of items) {
    listed.add(incident.id);
    if (upsert(incident) === "new") added.push(incident.id);
  }
  for (const [id, entry] of incidents) {
    if (!listed.has(id) && entry.seenAt < fetchStartedAt && !CLOSED.has(entry.incident.status)) incidents.delete(id);
  }
  return added;
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
