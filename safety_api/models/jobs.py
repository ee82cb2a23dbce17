"""The outbox: durable jobs written in the same transaction as the change that owes them."""
from sqlalchemy.dialects.postgresql import JSONB

from safety_api.extensions import db

JOB_STATES = ("pending", "running", "done", "failed")


class Job(db.Model):
    __tablename__ = "jobs"
    __table_args__ = (
        db.CheckConstraint(f"status IN {JOB_STATES}", name="status"),
        # The claim query scans only due work.
        db.Index("ix_jobs_due", "run_at", postgresql_where=db.text("status IN ('pending', 'running')")),
    )

    id = db.Column(db.BigInteger, primary_key=True)
    kind = db.Column(db.String(64), nullable=False)
    payload = db.Column(JSONB, nullable=False, server_default="{}")
    # A timer or delivery that must happen once carries a key; a second insert is a no-op.
    dedupe_key = db.Column(db.Text, unique=True)
    status = db.Column(db.String(8), nullable=False, server_default="pending")
    run_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())
    attempts = db.Column(db.Integer, nullable=False, server_default="0")
    max_attempts = db.Column(db.Integer, nullable=False, server_default="8")
    locked_by = db.Column(db.Text)
    locked_until = db.Column(db.DateTime(timezone=True))
    last_error = db.Column(db.Text)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())
    finished_at = db.Column(db.DateTime(timezone=True))
