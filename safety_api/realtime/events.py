"""Event names: imperative from clients, past tense from the server."""

# client -> server
LOCATION = "location"
WATCH = "watch"
UNWATCH = "unwatch"
SUBSCRIBE = "subscribe"

# server -> client
INCIDENT_CREATED = "incident.created"
INCIDENT_UPDATED = "incident.updated"
POSITIONS = "positions"
WALK_POSITION = "walk.position"
WALK_ALERT = "walk.alert"
WALK_ENDED = "walk.ended"
WALK_STARTED = "walk.started"
WALK_ESCALATED = "walk.escalated"
ESCORT_OFFERED = "escort.offered"
ESCORT_UPDATED = "escort.updated"
ESCORT_POSITION = "escort.position"
CONSOLE_HEARTBEAT = "console.heartbeat"  # echoed through Redis: proves the live path end to end
GUARDIAN_INVITED = "guardian.invited"
GUARDIAN_ACCEPTED = "guardian.accepted"

MOBILE = "/mobile"
CONTROL = "/control"
