"""Tables; one module per area. Importing this package registers every model."""
from safety_api.models.accounts import AccountEvent, GuardianLink, PushDevice, RefreshToken, User
from safety_api.models.districts import District, Dong
from safety_api.models.escort import EscortAssignment, EscortBooking, EscortEvent, MeetingPoint
from safety_api.models.geodata import DataVersion, Facility, StreetEdge
from safety_api.models.incidents import (
                                         BellDevice,
                                         Delivery,
                                         Incident,
                                         IncidentEvent,
                                         LocationFix,
                                         ProtectedPerson,
                                         ProtectionEvent,
)
from safety_api.models.jobs import Job
from safety_api.models.walks import LocationAccess, Walk, WalkAlert, WalkGuardian

__all__ = ["DataVersion", "District", "Dong", "Facility", "StreetEdge", "Job",
           "AccountEvent", "GuardianLink", "PushDevice", "RefreshToken", "User",
           "BellDevice", "Delivery", "Incident", "IncidentEvent", "LocationFix", "ProtectedPerson",
           "ProtectionEvent",
           "EscortAssignment", "EscortBooking", "EscortEvent", "MeetingPoint",
           "LocationAccess", "Walk", "WalkAlert", "WalkGuardian"]
