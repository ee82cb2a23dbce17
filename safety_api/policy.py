"""Who may see and do what: the one module of authorisation rules beyond plain roles."""
from safety_api.errors import Forbidden, NotFound


def may_operate_incident(user, incident) -> bool:
    """Operators act on their district's incidents; admins (the central centre) on every incident."""
    if user.role == "admin":
        return True
    return user.role == "operator" and incident.district_code is not None \
        and user.district_code == incident.district_code


def check_operate_incident(user, incident):
    """Raise unless the user may act on this incident (unknown and foreign look alike: 404)."""
    if incident is None:
        raise NotFound("No such incident.")
    if not may_operate_incident(user, incident):
        if user.role in ("operator", "admin"):
            raise Forbidden("This incident belongs to another district.")
        raise NotFound("No such incident.")


def check_caller(user, incident):
    """Raise unless the user raised this incident."""
    if incident is None or incident.caller_id != user.id:
        raise NotFound("No such incident.")


def check_staff(user):
    """Operators and admins only."""
    if user.role not in ("operator", "admin"):
        raise Forbidden("This needs the role operator or admin.")


def check_change_protection(user, *, protector):
    """A protection is changed or ended by admins, or by operators of the district of the operator who set it up
    (another district must not redirect a victim's alerts to other phones, or end the protection)."""
    if user.role == "admin":
        return
    if protector is None or protector.district_code is None or protector.district_code != user.district_code:
        raise Forbidden("This protection was set up by another district.")


def may_view_walk(user, walk, *, chosen_guardian: bool, incident=None) -> bool:
    """The walker; the accepted guardians the walker chose; once escalated, the operators of its incident."""
    if walk.walker_id == user.id or chosen_guardian:
        return True
    return incident is not None and may_operate_incident(user, incident)


def check_view_walk(user, walk, *, chosen_guardian: bool = False, incident=None):
    """Raise unless the user may see this walk and where its walker is (strangers cannot tell it exists)."""
    if walk is None or not may_view_walk(user, walk, chosen_guardian=chosen_guardian, incident=incident):
        raise NotFound("No such walk.")


def check_watch_walk(user, walk, *, chosen_guardian: bool):
    """Live positions go to the walker's own devices and the guardians chosen for this walk, no one else."""
    if walk is None or not (walk.walker_id == user.id or chosen_guardian):
        raise NotFound("No such walk.")


def check_walker(user, walk):
    """Raise unless the user is the one walking."""
    if walk is None or walk.walker_id != user.id:
        raise NotFound("No such walk.")
