"""Accounts: registration, login, refresh tokens, staff creation, PINs."""
import threading
import uuid
from contextlib import contextmanager, nullcontext
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import String, any_, bindparam, delete, exists, select, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.exc import IntegrityError

from safety_api.clock import utcnow
from safety_api.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized, Unavailable
from safety_api.models import AccountEvent, District, PushDevice, RefreshToken, User
from safety_api.models.accounts import DISTRICT_BOUND_ROLES, STAFF_ROLES, not_suspended, sign_in_ended
from safety_api.ratelimit import AttemptLimiter, PasswordLimits
from safety_api.realtime.open_sockets import close_sockets_of

_hasher = PasswordHasher()
# A hash to verify against when the phone is unknown, so a miss costs the same time as a hit.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
# Each argon2id hash or check holds ARGON2_MEMORY_KIB (64 MiB) and a core for about a tenth of a second, and runs
# whether the request then succeeds or not (a phone already taken, a wrong password). Uncapped, a burst of them
# would take the memory and CPU of the process that also serves SOS; so a process runs a few at once, and a
# request past them waits its turn briefly, then is told to retry (503).
_slots, _slot_count, _slot_wait_s = threading.BoundedSemaphore(4), 4, 2.0


def configure_hashing(*, time_cost: int, memory_kib: int, max_concurrent: int = 4, wait_s: float = 2.0):
    """Set argon2id's cost (RFC 9106 defaults in production; cheaper in tests, which hash thousands) and how many
    hashes a process runs at once."""
    global _hasher, _DUMMY_HASH, _slots, _slot_count, _slot_wait_s
    if (_hasher.time_cost, _hasher.memory_cost) != (time_cost, memory_kib):
        _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        _DUMMY_HASH = _hasher.hash("not-a-real-password")
    if _slot_count != max_concurrent:
        _slots, _slot_count = threading.BoundedSemaphore(max_concurrent), max_concurrent
    _slot_wait_s = wait_s


@contextmanager
def _hashing_turn():
    slots = _slots  # the one acquired is the one released, should configure_hashing replace it meanwhile
    if not slots.acquire(timeout=_slot_wait_s):
        raise Unavailable("Too many passwords are being checked at once; retry shortly.")
    try:
        yield
    finally:
        slots.release()


def hash_secret(secret: str) -> str:
    """Hash a password or PIN with argon2id, in its turn."""
    with _hashing_turn():
        return _hasher.hash(secret)


def verify_secret(stored: str | None, secret: str, *, in_turn: bool = True) -> bool:
    """Check a secret against its hash, in constant-ish time even when none is stored; in its turn unless
    `in_turn` is false: the cancel and duress PINs of an open alarm never wait behind a flood of logins (they
    are limited per person already, and a duress PIN answered 503 would alert no one)."""
    with _hashing_turn() if in_turn else nullcontext():
        try:
            return _hasher.verify(stored or _DUMMY_HASH, secret) and stored is not None
        except (VerificationError, InvalidHashError):
            return False


def register_citizen(session, *, phone: str, password: str, name: str) -> User:
    """Create a citizen account; 409 when the phone is taken."""
    return _create_user(session, phone=phone, password=password, name=name, role="citizen", district=None)


def create_staff(session, *, phone: str, password: str, name: str, role: str, district: str | None,
                 actor: User | None = None) -> User:
    """Create any role (admin only, checked by the caller; `actor` None: the command line's first admin);
    operators and scouts need a district. The account's audit trail starts with who created it."""
    if role in DISTRICT_BOUND_ROLES and not district:
        raise Invalid("Operators and scouts belong to a district.",
                      errors=[{"field": "district", "message": "Required for this role."}])
    if role not in DISTRICT_BOUND_ROLES and district:
        raise Invalid("Only operators and scouts belong to a district.",
                      errors=[{"field": "district", "message": "Must be empty for this role."}])
    if district:
        check_district_exists(session, district)
    return _create_user(session, phone=phone, password=password, name=name, role=role, district=district,
                        created_by=actor)


def check_district_exists(session, code: str):
    """422 naming the field unless the district code is one of Seoul's."""
    if session.get(District, code) is None:
        raise Invalid("Unknown district.", errors=[{"field": "district", "message": "No such district code."}])


def _create_user(session, *, phone, password, name, role, district, created_by: User | None = None) -> User:
    user = User(phone=phone, password_hash=hash_secret(password), name=name, role=role, district_code=district)
    session.add(user)
    try:
        session.flush()
        if role != "citizen":
            record_account_event(session, user, "created", actor=created_by, role=role, district=district)
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict("This phone number is already registered.") from None
    return user


def authenticate(session, limiter: AttemptLimiter, limits: PasswordLimits, *,
                 phone: str, password: str, address: str) -> User:
    """Return the user for valid credentials; the attempt counts as `check_password` says."""
    user = session.scalar(select(User).where(User.phone == phone))
    if not check_password(limiter, limits, phone=phone, stored_hash=user.password_hash if user else None,
                          password=password, address=address):
        raise Unauthorized("Wrong phone number or password.")
    return user  # a suspended person is refused when the sign-in is written (remember_refresh_token)


def check_password(limiter: AttemptLimiter, limits: PasswordLimits, *, phone: str, stored_hash: str | None,
                   password: str, address: str) -> bool:
    """Whether `password` is the account's (`stored_hash` None: no account has this phone); RateLimited first
    when a limit is full, whether the password is right or not, so that a refusal tells nothing of it.

    Counting every attempt per phone alone let anyone keep any account locked out with a few requests a minute.
    So the tight limit is per phone *and* client address: an attacker at their address is refused while the
    owner, elsewhere, still gets in, and a success clears it. What bounds guessing spread over many addresses
    is a looser per-phone limit that counts wrong passwords only, from anywhere: it is set above what one
    address may try in its window, so that filling it, which locks the owner out too, takes many addresses at
    full rate (and a phone already signed in stays signed in)."""
    limiter.hit(limits.per_address, "password-addr", address)
    limiter.hit(limits.per_phone_and_address, "password-phone-addr", phone, address)
    limiter.check(limits.failures_per_phone, "password-failures", phone)
    if not verify_secret(stored_hash, password):
        limiter.hit(limits.failures_per_phone, "password-failures", phone)
        return False
    limiter.clear(limits.per_phone_and_address, "password-phone-addr", phone, address)
    return True


def record_account_event(session, person: User, kind: str, *, actor: User | None, **data):
    """Add to a staff account's audit trail (models.AccountEvent), in the caller's transaction."""
    session.add(AccountEvent(user_id=person.id, kind=kind, actor_id=actor.id if actor else None, data=data))


def remember_refresh_token(session, *, user: User, jti: str, expires_at: datetime):
    """Store an issued refresh token so it can be revoked. The person's row is held FOR SHARE meanwhile: a
    suspension (which locks it for update) either waits and then ends this sign-in too, or came first and the
    login is refused here (after the password was checked: a stranger does not learn of the suspension), so no
    sign-in begun before a suspension comes back to life at reinstatement. The same lock orders it with a password
    change: a login that checked the old password just before the change is refused here, not left signed in
    with a password its owner has just replaced."""
    held = session.scalar(select(User.password_hash).where(User.id == user.id, not_suspended())
                          .with_for_update(read=True))
    if held is None:
        session.rollback()
        raise Forbidden("This account is suspended; ask an administrator of the service.")
    if held != user.password_hash:  # changed since this login checked it: the old password no longer signs in
        session.rollback()
        raise Unauthorized("Wrong phone number or password.")
    session.add(RefreshToken(jti=jti, user_id=user.id, expires_at=expires_at))
    session.commit()


def hold_unsuspended(session, user_id) -> bool:
    """Lock the person's row FOR SHARE until the caller's commit; False for a suspended (or deleted) person.
    Whatever the caller then adds for the person (a sign-in, a push device) a suspension ends too, rather than
    leaving it behind. Take it before any other lock of the person's (a suspension locks the row first)."""
    return session.scalar(select(User.id).where(User.id == user_id, not_suspended())
                          .with_for_update(read=True)) is not None


def signed_in_user(session, user_id: str, sign_in: str | None) -> User | None:
    """The person a token names, unless the sign-in it was issued under has been signed out or has expired, or
    the person is suspended: one read, the same that loading the person alone costs. A token that names no sign-in
    (`sign_in` None) lives until it expires or its person is suspended."""
    try:
        person = uuid.UUID(user_id)
    except (TypeError, ValueError):  # only a token we did not sign could carry this; it names no one
        return None
    return session.scalars(_SIGNED_IN, {"id": person, "sign_in": sign_in}).first()


# Built once: every request runs it. A NULL sign-in matches no refresh token, so it never counts as ended.
_SIGNED_IN = select(User).where(
    User.id == bindparam("id"), not_suspended(),
    ~exists().where(RefreshToken.jti == bindparam("sign_in", type_=String), sign_in_ended()))


def standing(session, *, user_ids, sign_ins) -> tuple[dict, set]:
    """What a sweep of open sockets checks them against, in two reads: {user id: district} of the people who
    may still act (existing, not suspended), and which of these sign-ins have ended: signed out, or expired (a
    socket lives as long as its sign-in could be refreshed, not only as long as the access token it showed)."""
    districts = dict(session.execute(_STANDING_PEOPLE, {"ids": list(set(user_ids))}).all())
    ended = set(session.scalars(_ENDED_SIGN_INS, {"jtis": list(set(sign_ins))}))
    return districts, ended


# Each list travels as one array parameter (`= ANY(:ids)`): an IN list of thousands of parameters costs the
# process several times more to bind and send, with the GIL held among its socket threads.
_STANDING_PEOPLE = select(User.id, User.district_code).where(
    User.id == any_(bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))), not_suspended())
_ENDED_SIGN_INS = select(RefreshToken.jti).where(
    RefreshToken.jti == any_(bindparam("jtis", type_=ARRAY(String))), sign_in_ended())


def sign_out(session, *, user: User, sign_in: str, escalate_after_s: float):
    """End one sign-in (logout): its refresh token is revoked, its access tokens refused, the push devices it
    registered forgotten and its sockets closed on every api process. A shared or handed-on phone then
    receives nothing more of this person's: no alert, no ward's position. Staff signing out of their last
    sign-in leave their shift, as at `logout-all`."""
    _lock_if_staff(session, user)
    row = session.get(RefreshToken, sign_in)
    if row is None or row.user_id != user.id:
        session.rollback()
        raise NotFound("Unknown refresh token.")
    row.revoked_at = row.revoked_at or utcnow()
    session.execute(delete(PushDevice).where(PushDevice.sign_in == sign_in))
    tell = _end_shift_if_signed_out(session, user, escalate_after_s=escalate_after_s)
    session.commit()
    close_sockets_of(user.id, sign_in=sign_in)
    tell()


def sign_out_everywhere(session, *, user: User, escalate_after_s: float):
    """End every sign-in of the person (a lost phone): every refresh token revoked, every push device forgotten,
    every socket closed. Whoever asks signs in again, here too. Staff leave their shift with it."""
    _lock_if_staff(session, user)
    end_every_sign_in(session, user.id)
    tell = _end_shift_if_signed_out(session, user, escalate_after_s=escalate_after_s)
    session.commit()
    close_sockets_of(user.id)
    tell()


def _lock_if_staff(session, user: User):
    """Lock a staff member's row before their sign-ins change: two sign-outs at once then cannot each see the
    other's sign-in still alive (`_end_shift_if_signed_out`), and the lock comes in the order a suspension or a
    device registration takes it (the person, then their sign-ins)."""
    if user.role in STAFF_ROLES:
        session.execute(select(User.id).where(User.id == user.id).with_for_update())


def _end_shift_if_signed_out(session, user: User, *, escalate_after_s: float):
    """Staff with no sign-in left leave their shift, in the caller's transaction, their row locked first
    (`_lock_if_staff`); returns what to tell once committed. With nothing signed in they would receive nothing,
    while counting as on shift (an SOS in their district would wait its full escalation time for them) and
    holding what they took."""
    if user.role not in STAFF_ROLES:
        return lambda: None
    from safety_api.services import staff  # staff -> incidents -> accounts: imported when used
    still_in = session.scalar(select(RefreshToken.jti).where(RefreshToken.user_id == user.id,
                                                             ~sign_in_ended()).limit(1))
    if still_in is not None:
        return lambda: None
    session.execute(update(User).where(User.id == user.id).values(on_duty=False))
    return staff.end_shift(session, user, escalate_after_s=escalate_after_s)


def end_every_sign_in(session, user_id, *, but: str | None = None):
    """Revoke every refresh token of the person and forget every push device, in the caller's transaction, all but
    those of the sign-in `but` if given; the caller commits, then closes the sockets (`close_sockets_of`). A device
    being registered meanwhile holds its sign-in FOR SHARE (`devices.register_device`): the revocation waits for
    it, and the delete then sees it."""
    tokens = [RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)]
    devices = [PushDevice.user_id == user_id]
    if but is not None:
        tokens.append(RefreshToken.jti != but)
        devices.append(PushDevice.sign_in.is_distinct_from(but))
    session.execute(update(RefreshToken).where(*tokens).values(revoked_at=utcnow()))
    session.execute(delete(PushDevice).where(*devices))


def change_password(session, limiter: AttemptLimiter, limits: PasswordLimits, *, user: User, password: str,
                    new_password: str, address: str, sign_in: str | None):
    """Replace the person's password, confirmed with the current one (counted as a login is). Every other sign-in
    ends, as at `logout-all`: a phone or console that a leaked password opened is closed, while the one making
    the change stays signed in (all of them end when its token names no sign-in). A staff account's audit trail
    records it."""
    if not check_password(limiter, limits, phone=user.phone, stored_hash=user.password_hash, password=password,
                          address=address):
        raise Unauthorized("Confirm with your current password to change it.")
    if new_password == password:
        raise Invalid("The new password is the current one.",
                      errors=[{"field": "new_password", "message": "Must differ from the current password."}])
    new_hash = hash_secret(new_password)
    # Only over the hash just checked: of two changes at once, the second finds it replaced. The row lock also
    # orders this with logins in flight (remember_refresh_token).
    changed = session.execute(update(User).where(User.id == user.id, User.password_hash == user.password_hash,
                                                 not_suspended())
                              .values(password_hash=new_hash).execution_options(synchronize_session=False))
    if changed.rowcount != 1:
        session.rollback()
        raise Conflict("The password was changed or the account suspended meanwhile; sign in again.")
    end_every_sign_in(session, user.id, but=sign_in)
    if user.role != "citizen":
        record_account_event(session, user, "password_changed", actor=user)
    session.commit()
    close_sockets_of(user.id, but=sign_in)


def change_pins(session, limiter: AttemptLimiter, limits: PasswordLimits, *, user: User, password: str,
                address: str, cancel_pin: str, duress_pin: str):
    """Set new PINs once the account's password confirms it is the person: whoever holds their signed-in phone
    could otherwise set a cancel PIN of their own, truly cancel the SOS and defeat the duress PIN. The password
    is judged first and counted as a login is (not with the PIN attempts), so a refusal is the same whatever
    PINs were sent and tells nothing of the PINs or of the PIN attempts."""
    if not check_password(limiter, limits, phone=user.phone, stored_hash=user.password_hash, password=password,
                          address=address):
        raise Unauthorized("Confirm with your password to change the PINs.")
    set_pins(session, user=user, cancel_pin=cancel_pin, duress_pin=duress_pin)


def set_pins(session, *, user: User, cancel_pin: str, duress_pin: str):
    """Store the cancel and duress PINs, hashed; they must differ."""
    if cancel_pin == duress_pin:
        raise Invalid("The duress PIN must differ from the cancel PIN.",
                      errors=[{"field": "duress_pin", "message": "Must differ from cancel_pin."}])
    user.cancel_pin_hash = hash_secret(cancel_pin)
    user.duress_pin_hash = hash_secret(duress_pin)
    session.commit()


def get_user_by_phone(session, phone: str) -> User | None:
    """Look a user up by normalised phone."""
    return session.scalar(select(User).where(User.phone == phone))
