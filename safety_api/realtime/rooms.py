"""Room names, built in one place."""

CENTRAL = "central"  # the city's central 안심이 control centre (admins)


def district(code: str) -> str:
    """Operators of one district's control centre."""
    return f"district:{code}"


def incident_operators(district_code: str | None, *, escalated: bool) -> tuple:
    """Who follows an incident on /control: its district's operators, and the central centre's once it was
    escalated there (an incident outside every district is the central centre's from the start)."""
    if district_code is None:
        return (CENTRAL,)
    return (district(district_code), CENTRAL) if escalated else (district(district_code),)


def central_centre(district_codes) -> tuple:
    """Every room an admin's /control socket joins: the central centre's and every district's. Admins list
    every district's incidents (GET /incidents), so their sockets follow them all live; an emit to several
    rooms (an escalated incident's: its district and the central centre) still reaches a socket once."""
    return (CENTRAL, *(district(code) for code in district_codes))


def user(user_id) -> str:
    """Every socket of one person."""
    return f"user:{user_id}"


def walk_watcher(walk_id, viewer_id) -> str:
    """One person watching one walk. Per person, not per walk: the right to watch belongs to a guardian link
    that can end mid-walk, so every walk event goes only to the rooms of those still allowed (walk_monitor
    decides who), and ending a link closes that person's rooms. A shared `walk:<id>` room would keep
    serving a socket that joined it while it was allowed."""
    return f"walk:{walk_id}:{viewer_id}"


def escort(booking_id) -> str:
    """The citizen and scouts of one escort."""
    return f"escort:{booking_id}"
