"""Room names, built in one place."""

CENTRAL = "central"  # the city's central 안심이 control centre (admins)
EVERY_DISTRICT = "districts"  # the news of every district, for admins (district_audience)


def district(code: str) -> str:
    """Operators of one district's control centre."""
    return f"district:{code}"


def district_audience(code: str) -> tuple:
    """Who hears of a district on /control: its operators, and the admins, who list every district's incidents
    (GET /incidents) and follow them all live. One room for every district's admins, rather than admins in
    each district's room, so that a district loaded after an admin connected is followed too."""
    return (district(code), EVERY_DISTRICT)


def incident_operators(district_code: str | None, *, escalated: bool) -> tuple:
    """Who follows an incident on /control: its district's audience, and the central centre's once it was
    escalated there (an incident outside every district is the central centre's from the start). An emit to
    several rooms reaches a socket once."""
    if district_code is None:
        return (CENTRAL,)
    return (*district_audience(district_code), CENTRAL) if escalated else district_audience(district_code)


# Every room an admin's /control socket joins: the central centre's, and every district's news.
ADMIN = (CENTRAL, EVERY_DISTRICT)


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
