"""Push devices: the sign-in (refresh token) that registered each, so that signing out stops its pushes; a
delivery whose device left its recipient before the send is `withdrawn`.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    # NULL for devices registered before this column, or with a token that names no sign-in: those go only when
    # their person signs out everywhere.
    op.add_column("push_devices", sa.Column("sign_in", sa.String(64), nullable=True))
    op.create_foreign_key("fk_push_devices_sign_in_refresh_tokens", "push_devices", "refresh_tokens",
                          ["sign_in"], ["jti"], ondelete="SET NULL")
    op.create_index("ix_push_devices_sign_in", "push_devices", ["sign_in"])
    op.drop_constraint(op.f("ck_deliveries_status"), "deliveries", type_="check")
    op.create_check_constraint(op.f("ck_deliveries_status"), "deliveries", f"status IN {WITHDRAWN}")


OLD = "('pending', 'sending', 'delivered', 'dead', 'failed')"
WITHDRAWN = "('pending', 'sending', 'delivered', 'dead', 'failed', 'withdrawn')"


def downgrade():
    op.execute("UPDATE deliveries SET status = 'failed' WHERE status = 'withdrawn'")
    op.drop_constraint(op.f("ck_deliveries_status"), "deliveries", type_="check")
    op.create_check_constraint(op.f("ck_deliveries_status"), "deliveries", f"status IN {OLD}")
    op.drop_index("ix_push_devices_sign_in", table_name="push_devices")
    op.drop_constraint("fk_push_devices_sign_in_refresh_tokens", "push_devices", type_="foreignkey")
    op.drop_column("push_devices", "sign_in")
