"""SOS: incidents, their events, push deliveries, location fixes, protected persons, bell devices.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_geospatial_table('bell_devices',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('key_prefix', sa.String(length=12), nullable=False),
    sa.Column('location', Geography(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeogFromText', name='geography', nullable=False), nullable=False),
    sa.Column('owner_id', sa.UUID(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_bell_devices_owner_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bell_devices')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_bell_devices_key_hash'))
    )
    op.create_geospatial_index('idx_bell_devices_location', 'bell_devices', ['location'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_table('deliveries',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('recipient_id', sa.UUID(), nullable=True),
    sa.Column('token', sa.Text(), nullable=False),
    sa.Column('message', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('status', sa.String(length=12), server_default='pending', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('provider_id', sa.Text(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'sending', 'delivered', 'dead', 'failed')", name=op.f('ck_deliveries_status')),
    sa.ForeignKeyConstraint(['recipient_id'], ['users.id'], name=op.f('fk_deliveries_recipient_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deliveries'))
    )
    op.create_index(op.f('ix_deliveries_subject'), 'deliveries', ['subject'], unique=False)
    op.create_table('location_fixes',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('subject_kind', sa.String(length=8), nullable=False),
    sa.Column('subject_id', sa.UUID(), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=True),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('accuracy_m', sa.Float(), nullable=True),
    sa.Column('t', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('incident_id', sa.UUID(), nullable=True),
    sa.CheckConstraint("subject_kind IN ('sos', 'walk', 'escort')", name=op.f('ck_location_fixes_subject_kind')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_location_fixes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_location_fixes')),
    sa.UniqueConstraint('subject_kind', 'subject_id', 't', name='uq_location_fixes_subject_t')
    )
    op.create_index(op.f('ix_location_fixes_user_id'), 'location_fixes', ['user_id'], unique=False)
    op.create_table('protected_persons',
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('agency', sa.Text(), nullable=False),
    sa.Column('case_reference', sa.Text(), nullable=False),
    sa.Column('contact_phones', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_by', sa.UUID(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_protected_persons_created_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_protected_persons_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_protected_persons'))
    )
    op.create_geospatial_table('incidents',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('caller_id', sa.UUID(), nullable=True),
    sa.Column('bell_device_id', sa.UUID(), nullable=True),
    sa.Column('walk_id', sa.UUID(), nullable=True),
    sa.Column('idempotency_key', sa.String(length=128), nullable=True),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='open', nullable=False),
    sa.Column('caller_status', sa.String(length=16), server_default='open', nullable=False),
    sa.Column('duress', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('priority', sa.String(length=8), server_default='normal', nullable=False),
    sa.Column('district_code', sa.String(length=5), nullable=True),
    sa.Column('location', Geography(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeogFromText', name='geography', nullable=False), nullable=False),
    sa.Column('accuracy_m', sa.Float(), nullable=True),
    sa.Column('nearest_cctvs', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('last_fix', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('acknowledged_by', sa.UUID(), nullable=True),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('dispatched_agency', sa.Text(), nullable=True),
    sa.Column('outcome', sa.String(length=24), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("priority IN ('normal', 'high', 'critical')", name=op.f('ck_incidents_priority')),
    sa.CheckConstraint("status IN ('open', 'acknowledged', 'dispatched', 'resolved', 'cancelled')", name=op.f('ck_incidents_status')),
    sa.CheckConstraint("trigger IN ('button', 'shake', 'voice', 'walk_escalation', 'device')", name=op.f('ck_incidents_trigger')),
    sa.ForeignKeyConstraint(['acknowledged_by'], ['users.id'], name=op.f('fk_incidents_acknowledged_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['bell_device_id'], ['bell_devices.id'], name=op.f('fk_incidents_bell_device_id_bell_devices'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['caller_id'], ['users.id'], name=op.f('fk_incidents_caller_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['district_code'], ['districts.code'], name=op.f('fk_incidents_district_code_districts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incidents')),
    sa.UniqueConstraint('caller_id', 'idempotency_key', name='uq_incidents_idempotency')
    )
    op.create_geospatial_index('idx_incidents_location', 'incidents', ['location'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_incidents_caller_id'), 'incidents', ['caller_id'], unique=False)
    op.create_index('ix_incidents_district_status', 'incidents', ['district_code', 'status'], unique=False)
    op.create_table('incident_events',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('incident_id', sa.UUID(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('actor_id', sa.UUID(), nullable=True),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_incident_events_actor_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['incident_id'], ['incidents.id'], name=op.f('fk_incident_events_incident_id_incidents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incident_events'))
    )
    op.create_index(op.f('ix_incident_events_incident_id'), 'incident_events', ['incident_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_incident_events_incident_id'), table_name='incident_events')
    op.drop_table('incident_events')
    op.drop_index('ix_incidents_district_status', table_name='incidents')
    op.drop_index(op.f('ix_incidents_caller_id'), table_name='incidents')
    op.drop_geospatial_index('idx_incidents_location', table_name='incidents', postgresql_using='gist', column_name='location')
    op.drop_geospatial_table('incidents')
    op.drop_table('protected_persons')
    op.drop_index(op.f('ix_location_fixes_user_id'), table_name='location_fixes')
    op.drop_table('location_fixes')
    op.drop_index(op.f('ix_deliveries_subject'), table_name='deliveries')
    op.drop_table('deliveries')
    op.drop_geospatial_index('idx_bell_devices_location', table_name='bell_devices', postgresql_using='gist', column_name='location')
    op.drop_geospatial_table('bell_devices')
