"""Room names, built in one place."""

CENTRAL = "central"  # the city's central 안심이 control centre (admins)


def district(code: str) -> str:
    """Operators of one district's control centre."""
    return f"district:{code}"


def user(user_id) -> str:
    """Every socket of one person."""
    return f"user:{user_id}"


def walk(walk_id) -> str:
    """Guardians watching one walk."""
    return f"walk:{walk_id}"


def escort(booking_id) -> str:
    """The citizen and scouts of one escort."""
    return f"escort:{booking_id}"
