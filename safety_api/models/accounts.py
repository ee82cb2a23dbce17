"""People and what belongs to them: credentials, refresh tokens, push devices, guardian links."""
import uuid

from sqlalchemy import and_, func, or_
from sqlalchemy.dialects.postgresql import JSONB, UUID

from safety_api.extensions import db

ROLES = ("citizen", "operator", "scout", "admin")
STAFF_ROLES = ("operator", "scout", "admin")
DISTRICT_BOUND_ROLES = ("operator", "scout")
ACCOUNT_EVENTS = ("created", "suspended", "reinstated", "moved", "password_set", "password_changed")


def _uuid():
    return uuid.uuid4()


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = (
        db.CheckConstraint(f"role IN {ROLES}", name="role"),
        # Operators and scouts always belong to a district; others never do.
        db.CheckConstraint(
            f"(role IN {DISTRICT_BOUND_ROLES}) = (district_code IS NOT NULL)", name="district_binding"),
    )

    id = db.Column(UUID(as_uuid=True), primary_key=True, default=_uuid)
    phone = db.Column(db.String(16), nullable=False, unique=True)
    name = db.Column(db.Text, nullable=False)
    password_hash = db.Column(db.Text, nullable=False)
    role = db.Column(db.String(16), nullable=False, server_default="citizen")
    district_code = db.Column(db.String(5), db.ForeignKey("districts.code"), index=True)
    cancel_pin_hash = db.Column(db.Text)
    duress_pin_hash = db.Column(db.Text)
    on_duty = db.Column(db.Boolean, nullable=False, server_default="false")
    # Set by an admin (staff only): every sign-in ended, every request and login refused until reinstated.
    suspended_at = db.Column(db.DateTime(timezone=True))
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())


def not_suspended():
    """As a SQL condition: whoever may act at all (`users.suspended_at` unset)."""
    return User.suspended_at.is_(None)


def on_shift():
    """Who works now, as a SQL condition: on duty and not suspended. A shift switched on by a request that passed
    its gate just before the suspension committed still counts for nothing."""
    return and_(User.on_duty.is_(True), not_suspended())


class AccountEvent(db.Model):
    """The audit trail of what admins do to accounts: who created, suspended, reinstated or moved whom, or set their
    password, and why; and the staff member's own password changes."""

    __tablename__ = "account_events"
    __table_args__ = (db.CheckConstraint(f"kind IN {ACCOUNT_EVENTS}", name="kind"),)

    id = db.Column(db.BigInteger, primary_key=True)
    user_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                        index=True)
    kind = db.Column(db.String(16), nullable=False)
    actor_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="SET NULL"))
    data = db.Column(JSONB, nullable=False, server_default="{}")
    at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())


class RefreshToken(db.Model):
    """Issued refresh tokens, so that each can be revoked."""

    __tablename__ = "refresh_tokens"

    jti = db.Column(db.String(64), primary_key=True)
    user_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="CASCADE"),
                        nullable=False, index=True)
    expires_at = db.Column(db.DateTime(timezone=True), nullable=False)
    revoked_at = db.Column(db.DateTime(timezone=True))


def sign_in_ended():
    """As a SQL condition on refresh_tokens: the sign-in is over (signed out, or past its expiry)."""
    return or_(RefreshToken.revoked_at.is_not(None), RefreshToken.expires_at <= func.now())


class PushDevice(db.Model):
    """One row per push token: dead tokens are deleted, never kept in a joined string."""

    __tablename__ = "push_devices"
    __table_args__ = (db.CheckConstraint("platform IN ('android', 'ios', 'web')", name="platform"),)

    id = db.Column(UUID(as_uuid=True), primary_key=True, default=_uuid)
    user_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="CASCADE"),
                        nullable=False, index=True)
    token = db.Column(db.Text, nullable=False, unique=True)
    platform = db.Column(db.String(8), nullable=False)
    # The sign-in (refresh token) that registered it: signing out of that sign-in stops the phone's pushes.
    sign_in = db.Column(db.String(64), db.ForeignKey("refresh_tokens.jti", ondelete="SET NULL"), index=True)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())
    last_seen_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())


class GuardianLink(db.Model):
    """A guardian relationship: started by the protected person, accepted by the guardian."""

    __tablename__ = "guardian_links"
    __table_args__ = (
        db.UniqueConstraint("protected_id", "guardian_id", name="uq_guardian_links_pair"),
        db.CheckConstraint("status IN ('pending', 'active')", name="status"),
        db.CheckConstraint("protected_id <> guardian_id", name="not_self"),
    )

    id = db.Column(UUID(as_uuid=True), primary_key=True, default=_uuid)
    protected_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="CASCADE"),
                             nullable=False, index=True)
    guardian_id = db.Column(UUID(as_uuid=True), db.ForeignKey("users.id", ondelete="CASCADE"),
                            nullable=False, index=True)
    status = db.Column(db.String(8), nullable=False, server_default="pending")
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())
    accepted_at = db.Column(db.DateTime(timezone=True))
