"""Who the client is behind reverse proxies: the address every per-client limit is keyed on."""
from werkzeug.middleware.proxy_fix import ProxyFix


def init_app(app):
    """Take the client's address from X-Forwarded-For as the trusted proxies in front wrote it.

    Off by default (TRUSTED_PROXY_HOPS 0): a client reaching the api directly could write the header itself and
    pick a fresh address for every login attempt. Behind nginx every request comes from nginx's address, so
    without this one attacker's attempts would fill the limit that every other client shares. With n hops,
    the n-th address from the end is the client's (each proxy appends the address it was reached from). Install
    after the Socket.IO middleware, so that sockets are seen from the same address."""
    hops = app.config["TRUSTED_PROXY_HOPS"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=0, x_host=0, x_port=0, x_prefix=0)
