"""Alembic environment: the app's engine and metadata, with GeoAlchemy2's helpers."""
from alembic import context
from flask import current_app
from geoalchemy2 import alembic_helpers

config = context.config
db = current_app.extensions["migrate"].db


def _configure(**kw):
    context.configure(
        target_metadata=db.metadata,
        include_object=alembic_helpers.include_object,
        process_revision_directives=alembic_helpers.writer,
        render_item=alembic_helpers.render_item,
        compare_type=True,
        **kw,
    )


def run_offline():
    _configure(url=str(db.engine.url).replace("%", "%%"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online():
    with db.engine.connect() as connection:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
