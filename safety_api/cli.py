"""Command line: `flask --app wsgi create-admin | load-demo | geo import KIND FILE | staff ...`, where `staff`
suspends, reinstates or sets the password of a staff account."""
import os

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import text

from safety_api.extensions import db


def _data(name: str) -> str:
    return os.path.join(current_app.config["DATA_DIR"], name)


@click.command("create-admin")
@click.option("--phone", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="asked for when not given, so that it stays out of the shell's history")
@click.option("--name", default="관리자")
def create_admin(phone, password, name):
    """Create the first admin account."""
    from safety_api.services import accounts
    user = _in_service(accounts.create_staff, phone=_phone(phone), password=_password(password), name=name,
                       role="admin",
                       district=None)
    click.echo(f"admin {user.phone} created (id {user.id})")


staff_cli = AppGroup("staff", help="Staff accounts, from the deployment itself (admins use the API).")


@staff_cli.command("suspend")
@click.option("--phone", required=True)
@click.option("--reason", required=True)
def staff_suspend(phone, reason):
    """Suspend a staff account, an admin's included: for an admin account that is compromised, or the only one."""
    import time

    from safety_api.realtime.open_sockets import CLOSE_AGAIN_AFTER_S
    from safety_api.services import staff
    person = _staff_by_phone(phone)
    if person.suspended_at is not None:
        click.echo(f"{person.role} {person.phone} was already suspended")
        return
    _in_service(staff.suspend, admin=None, user_id=person.id, reason=_reason(reason),
                escalate_after_s=current_app.config["SOS_ESCALATE_AFTER_S"])
    # The second pass of the sockets' close runs on a timer of this process: wait for it before exiting (each
    # api process's sweep would close what it misses within SOCKET_SWEEP_S anyway).
    time.sleep(CLOSE_AGAIN_AFTER_S + 0.5)
    click.echo(f"{person.role} {person.phone} suspended")


@staff_cli.command("reinstate")
@click.option("--phone", required=True)
@click.option("--reason", required=True)
def staff_reinstate(phone, reason):
    """Lift a staff account's suspension."""
    from safety_api.services import staff
    person = _staff_by_phone(phone)
    if person.suspended_at is None:
        click.echo(f"{person.role} {person.phone} was not suspended")
        return
    _in_service(staff.reinstate, admin=None, user_id=person.id, reason=_reason(reason))
    click.echo(f"{person.role} {person.phone} reinstated")


@staff_cli.command("set-password")
@click.option("--phone", required=True)
@click.option("--reason", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="asked for when not given, so that it stays out of the shell's history")
def staff_set_password(phone, reason, password):
    """Give a staff account a new password, an admin's included (the only admin's forgotten one): its sign-ins
    and shift end as at a suspension; the person logs in with the new password."""
    import time

    from safety_api.realtime.open_sockets import CLOSE_AGAIN_AFTER_S
    from safety_api.services import staff
    person = _staff_by_phone(phone)
    _in_service(staff.set_password, admin=None, user_id=person.id, password=_password(password),
                reason=_reason(reason), escalate_after_s=current_app.config["SOS_ESCALATE_AFTER_S"])
    time.sleep(CLOSE_AGAIN_AFTER_S + 0.5)  # the sockets' second close runs on this process's timer (see suspend)
    click.echo(f"{person.role} {person.phone}: new password set")


def _password(password: str) -> str:
    """The password as the API accepts it (8 to 128 characters), or a clean error."""
    from marshmallow import ValidationError

    from safety_api.api.schemas import Password
    try:
        return Password().deserialize(password)
    except ValidationError:
        raise click.BadParameter("give a password of 8 to 128 characters", param_hint="--password") from None


def _reason(reason: str) -> str:
    """The reason as the API reads it (trimmed, 1 to 500 characters), or a clean error."""
    from marshmallow import ValidationError

    from safety_api.api.schemas import Reason
    try:
        return Reason().deserialize(reason)
    except ValidationError:
        raise click.BadParameter("give a reason of 1 to 500 characters", param_hint="--reason") from None


def _in_service(action, **kwargs):
    from safety_api.errors import DomainError
    try:
        return action(db.session, **kwargs)
    except DomainError as exc:
        raise click.ClickException(exc.detail) from None


def _phone(phone: str) -> str:
    """The phone number as the API reads it (normalised), or a clean error."""
    from marshmallow import ValidationError

    from safety_api.api.schemas import Phone
    try:
        return Phone().deserialize(phone)
    except ValidationError as exc:
        raise click.ClickException(str(exc.messages)) from None


def _staff_by_phone(phone):
    from safety_api.models.accounts import STAFF_ROLES
    from safety_api.services import accounts
    person = accounts.get_user_by_phone(db.session, _phone(phone))
    if person is None or person.role not in STAFF_ROLES:
        raise click.ClickException(f"no staff account with the phone {phone}")
    return person


@click.command("load-demo")
@click.option("--only-missing", is_flag=True,
              help="Load only the parts whose tables are empty, keeping what was imported or edited since.")
def load_demo(only_missing):
    """Load the demo data: Seoul's districts and dongs, and Gwanak's safety geodata.

    Loading again puts the demo's rows back: the demo's street network replaces any other, each facility layer
    becomes the demo's file (an import is the whole layer of its kind), meeting points return to the demo's
    names and places. --only-missing (docker-compose runs it at every start) leaves each part alone once its
    tables hold rows."""
    for name, tables, loader in DEMO_PARTS:
        if only_missing and any(_has_rows(table) for table in tables):
            click.echo(f"{name}: already loaded, kept")
        else:
            loader(click.echo)


def _has_rows(table: str) -> bool:
    return db.session.scalar(text(f'SELECT EXISTS (SELECT 1 FROM "{table}")'))


def load_boundaries(echo):
    """Seoul's districts and administrative dongs."""
    from geo.boundaries import read_districts, read_dongs
    from safety_api.services import districts
    n_districts, n_dongs = districts.load_boundaries(
        db.session, districts=read_districts(_data("seoul_districts.geojson")),
        dongs=read_dongs(_data("seoul_admin_dongs.geojson")))
    echo(f"districts: {n_districts}, dongs: {n_dongs}")


geo_cli = AppGroup("geo", help="Safety geodata.")

# The demo's Gwanak layers, as published (see data/SOURCES.md).
GWANAK_LAYERS = [("cctv", "gwanak_ansimi_cctv.csv"), ("bell", "gwanak_emergency_bells.csv"),
                 ("police", "gwanak_police_stations.csv"), ("safe_house", "gwanak_women_safe_houses.csv"),
                 ("parcel_box", "gwanak_safe_parcel_boxes.csv"), ("streetlight", "seoul_streetlights.csv")]
GWANAK_NETWORK = "gwanak_nangok_walk.osm"


def safety_params():
    from safety_api.services.geodata import SafetyParams
    cfg = current_app.config
    return SafetyParams(cctv_m=cfg["SAFETY_CCTV_M"], bell_m=cfg["SAFETY_BELL_M"], light_m=cfg["SAFETY_LIGHT_M"],
                        safe_house_m=cfg["SAFETY_SAFE_HOUSE_M"])


def import_layer(kind: str, path: str, echo) -> int:
    """Import one public-data file as the whole layer of its kind; report bad rows by number and load the rest."""
    from geo.public_data import read_facilities
    from safety_api.services import geodata
    result = read_facilities(kind, path)
    try:
        report = _in_service(geodata.import_facilities, kind=kind, result=result)
    except click.ClickException:
        _echo_row_errors(result.errors, echo)
        raise
    echo(f"{kind}: {report.loaded} loaded, {report.removed} removed (not in the file), "
         f"{len(report.errors)} rows rejected")
    _echo_row_errors(result.errors, echo)
    return report.loaded


def _echo_row_errors(errors, echo):
    for err in errors[:20]:
        echo(f"  row {err.row}: {err.reason}")
    if len(errors) > 20:
        echo(f"  ... and {len(errors) - 20} more")


def import_network(path: str, echo) -> int:
    """Import the OSM walking network and compute its safety attributes."""
    from geo.osm import read_walk_network
    from safety_api.services import geodata
    count = geodata.load_street_network(db.session, edges=read_walk_network(path), params=safety_params())
    echo(f"street network: {count} edges with safety attributes")
    return count


@geo_cli.command("import")
@click.argument("kind", type=click.Choice([k for k, _ in GWANAK_LAYERS] + ["network"]))
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def geo_import(kind, file):
    """Import a public-data FILE of KIND as that kind's whole layer (or `network` for an OSM walking extract)."""
    if kind == "network":
        import_network(file, click.echo)
    else:
        import_layer(kind, file, click.echo)
        if kind in ("cctv", "bell", "streetlight", "safe_house"):
            _recompute(click.echo)


@geo_cli.command("recompute")
def geo_recompute():
    """Recompute every street edge's safety attributes (after changing the radii)."""
    _recompute(click.echo)


def _recompute(echo):
    from safety_api.services import geodata
    geodata.compute_safety_attributes(db.session, params=safety_params())
    echo("safety attributes recomputed")


def load_gwanak_geodata(echo):
    """The demo's facilities and street network."""
    for kind, name in GWANAK_LAYERS:
        import_layer(kind, _data(name), echo)
    import_network(_data(GWANAK_NETWORK), echo)


def load_meeting_points(echo):
    """Gwanak's named bus stops and stations from the OSM extract, as escort meeting points (by source_id)."""
    from geo.osm import read_meeting_points
    from safety_api.services import meeting_points
    echo(f"meeting points: {meeting_points.load(db.session, records=read_meeting_points(_data(GWANAK_NETWORK)))}")


# The demo's parts in order, each with the tables it fills (--only-missing skips a part any of them has rows
# in); each capability appends its own.
DEMO_PARTS = [("districts", ("districts", "dongs"), load_boundaries),
              ("Gwanak geodata", ("facilities", "street_edges"), load_gwanak_geodata),
              ("meeting points", ("meeting_points",), load_meeting_points)]


def init_app(app: Flask):
    app.cli.add_command(create_admin)
    app.cli.add_command(load_demo)
    app.cli.add_command(geo_cli)
    app.cli.add_command(staff_cli)
