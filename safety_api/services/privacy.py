"""A person's rights over their data: export everything, delete the account (keeping only what law requires)."""
from sqlalchemy import text

from safety_api.errors import Conflict, Unauthorized
from safety_api.models.accounts import STAFF_ROLES
from safety_api.ratelimit import AttemptLimiter, PasswordLimits
from safety_api.realtime.open_sockets import close_sockets_of
from safety_api.services import escort_departures
from safety_api.services.accounts import check_password

# An incident of the person's cancelled with the duress PIN and still being worked, and what it alone brought
# after the PIN (the phone's later fixes are stored for the operators; the operators read it): hidden from the
# export until it is closed, since whoever forced the PIN may hold the phone. Nothing else is: a walk's fixes and
# its guardians' reads go on after either PIN alike, so hiding them would tell the duress PIN from the cancel.
_DURESS_OWN_AFTER_CLOSE = ("SELECT 1 FROM incidents d WHERE d.caller_id = :uid AND d.duress "
                           "AND d.status NOT IN ('resolved', 'cancelled') AND ({of_it}) AND {at} > d.caller_closed_at")
# Its own fixes, by when the server received them: after a cancel the same fixes are refused, whatever their `t`.
_DURESS_FIX = _DURESS_OWN_AFTER_CLOSE.format(of_it="f.subject_kind = 'sos' AND f.subject_id = d.id",
                                             at="f.received_at")
# Its reads, and its operators' reads of the walk it escalated (they may read the walk because of it).
_DURESS_READ = _DURESS_OWN_AFTER_CLOSE.format(
    of_it="(l.subject_kind = 'sos' AND l.subject_id = d.id) OR (l.subject_kind = 'walk' AND l.subject_id = d.walk_id "
          "AND EXISTS (SELECT 1 FROM users v WHERE v.id = l.viewer_id AND v.role IN ('operator', 'admin')))",
    at="l.at")

# (section, SQL selecting the person's rows as JSON); :uid is the person. Secrets never leave. A protection
# (protected_persons) and its trail (protection_events) are left out on purpose: whoever holds the phone may be
# the one it protects against, and must not learn of it, its case or its officers' phones.
EXPORT_QUERIES = {
    "account": "SELECT id, phone, name, role, district_code, on_duty, created_at, suspended_at, "
               "cancel_pin_hash IS NOT NULL AS has_pins FROM users WHERE id = :uid",
    # What admins did to a staff account (created, suspended, moved, password set) and why.
    "account_history": "SELECT kind, actor_id, data, at FROM account_events WHERE user_id = :uid ORDER BY id",
    "devices": "SELECT platform, created_at, last_seen_at FROM push_devices WHERE user_id = :uid",
    # An invitation the person sent names the invitee only once accepted (as GET /guardians does): until then
    # the invitee has not agreed to be known to them, and the number typed is all the inviter knew.
    "guardian_links": "SELECT id, protected_id, CASE WHEN status = 'pending' AND protected_id = :uid THEN NULL "
                      "ELSE guardian_id END AS guardian_id, status, created_at, accepted_at FROM guardian_links "
                      "WHERE protected_id = :uid OR guardian_id = :uid",
    # As the phone sees them (caller_view): after a duress PIN, cancelled at the PIN's moment.
    "incidents": "SELECT id, trigger, caller_status AS status, ST_AsGeoJSON(location)::json AS location, "
                 "accuracy_m, created_at, caller_closed_at AS closed_at FROM incidents WHERE caller_id = :uid",
    "walks": "SELECT id, status, profile, ST_AsGeoJSON(origin)::json AS origin, "
             "ST_AsGeoJSON(destination)::json AS destination, ST_AsGeoJSON(route)::json AS route, route_properties, "
             "last_fix, started_at, expected_arrival, ended_at, escalated_at FROM walks WHERE walker_id = :uid",
    "walk_guardians": "SELECT g.walk_id, g.guardian_id FROM walk_guardians g JOIN walks w ON w.id = g.walk_id "
                      "WHERE w.walker_id = :uid ORDER BY g.walk_id, g.guardian_id",
    "walk_alerts": "SELECT a.walk_id, a.kind, a.status, a.t, a.raised_at, a.checkin_by, a.settled_at, a.detail "
                   "FROM walk_alerts a JOIN walks w ON w.id = a.walk_id WHERE w.walker_id = :uid ORDER BY a.id",
    "escort_bookings": "SELECT id, status, district_code, meeting_point_id, meet_at, "
                       "ST_AsGeoJSON(destination)::json AS destination, created_at, started_at, finished_at "
                       "FROM escort_bookings WHERE citizen_id = :uid",
    # A scout's escorts: which bookings and when, not the citizens' destinations (theirs to export).
    "escort_assignments": "SELECT booking_id, slot, accepted_at, released_at FROM escort_assignments "
                          "WHERE scout_id = :uid",
    "bell_devices": "SELECT id, name, key_prefix, ST_AsGeoJSON(location)::json AS location, created_at, revoked_at "
                    "FROM bell_devices WHERE owner_id = :uid",
    # What a duress incident brought after its PIN appears once the incident is closed (above).
    "location_fixes": "SELECT subject_kind, subject_id, lat, lon, accuracy_m, t FROM location_fixes f "
                      "WHERE user_id = :uid AND NOT EXISTS (" + _DURESS_FIX + ") ORDER BY t",
    # The person's escorts as their scouts' phones traced them (the way to the person's door).
    "escort_fixes": "SELECT f.subject_id AS booking_id, f.lat, f.lon, f.accuracy_m, f.t FROM location_fixes f "
                    "JOIN escort_bookings b ON b.id = f.subject_id WHERE f.subject_kind = 'escort' "
                    "AND b.citizen_id = :uid ORDER BY f.t",
    "location_reads": "SELECT viewer_id, subject_kind, subject_id, purpose, at FROM location_access_log l "
                      "WHERE subject_user_id = :uid AND NOT EXISTS (" + _DURESS_READ + ") ORDER BY at",
}


def export(session, *, user) -> dict:
    """Everything the service holds about the person, as JSON-ready sections."""
    out = {}
    for section, sql in EXPORT_QUERIES.items():
        rows = session.execute(text(f"SELECT coalesce(json_agg(r), '[]'::json) FROM ({sql}) r"), {"uid": user.id})
        out[section] = rows.scalar_one()
    return out


def delete_account(session, limiter: AttemptLimiter, limits: PasswordLimits, *, user, password: str, address: str):
    """Delete the person and their data; incident records stay, detached from the person, as evidence. Staff
    accounts are not deleted by their holder: the deletion would take their account's audit trail with it and
    leave their acts in others' trails by no one (read as the command line's), so an admin suspends them."""
    if user.role in STAFF_ROLES:
        raise Conflict("Staff accounts are closed by an administrator, who suspends them: the record of what was "
                       "done with the account stays.")
    # Whoever holds a signed-in phone could guess the password here: counted as a login is.
    if not check_password(limiter, limits, phone=user.phone, stored_hash=user.password_hash, password=password,
                          address=address):
        raise Unauthorized("Confirm with your password to delete the account.")
    escort_departures.cancel_for_account_deletion(session, citizen=user)  # the bookings' cascade would tell no one
    uid = {"uid": user.id}
    # An incident's trail is evidence the law asks us to keep: keep the fixes, drop who sent them.
    session.execute(text("UPDATE location_fixes SET user_id = NULL WHERE user_id = :uid "
                         "AND incident_id IS NOT NULL"), uid)
    session.execute(text("UPDATE incidents SET idempotency_key = NULL, last_fix = last_fix - 'accuracy_m' "
                         "WHERE caller_id = :uid"), uid)
    session.execute(text("DELETE FROM location_fixes WHERE user_id = :uid"), uid)
    # Their escorts' tracks too: stored under the scouts, they are the way to the person's door.
    session.execute(text("DELETE FROM location_fixes WHERE subject_kind = 'escort' AND incident_id IS NULL "
                         "AND subject_id IN (SELECT id FROM escort_bookings WHERE citizen_id = :uid)"), uid)
    # Push receipts: those about the person's walks and bookings go with them, except a booking's push still to
    # be sent to someone else (the scouts told of its cancellation just above, expanded by a worker meanwhile):
    # it names no one, and deleting it would lose it.
    session.execute(text("DELETE FROM deliveries WHERE subject IN (SELECT 'walk:' || id FROM walks "
                         "WHERE walker_id = :uid)"), uid)
    session.execute(text("DELETE FROM deliveries WHERE subject IN (SELECT 'escort:' || id FROM escort_bookings "
                         "WHERE citizen_id = :uid) AND (recipient_id = :uid OR status NOT IN ('pending', 'sending'))"),
                    uid)
    # Those about their incidents stay as the incidents do, without the text that names them. One to their
    # guardians not sent yet is withdrawn: the guardians are theirs no more (the worker would withdraw it,
    # name and all). A staff alert still to be sent names no one, and goes.
    incident_pushes = "subject IN (SELECT 'incident:' || id FROM incidents WHERE caller_id = :uid)"
    session.execute(text(f"UPDATE deliveries SET status = 'withdrawn', updated_at = now() WHERE {incident_pushes} "
                         "AND reason LIKE 'guardian.%' AND status = 'pending'"), uid)
    session.execute(text(f"UPDATE deliveries SET message = message - 'body' WHERE {incident_pushes} "
                         "AND (reason LIKE 'guardian.%' OR status NOT IN ('pending', 'sending'))"), uid)
    session.execute(text("UPDATE deliveries SET token = 'deleted', message = message - 'token' "
                         "WHERE recipient_id = :uid"), uid)
    # users' foreign keys cascade to tokens, devices, guardian links, walks and bookings, and set
    # incidents.caller_id / incident_events.actor_id to NULL.
    session.execute(text("DELETE FROM users WHERE id = :uid"), uid)
    session.commit()
    # An open socket authenticated once, at connect: without this it would keep receiving (a guardian's walks,
    # the person's own incidents) after the person is gone.
    close_sockets_of(uid["uid"])
