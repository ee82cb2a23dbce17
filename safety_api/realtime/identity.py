"""Who a socket is, as its connect resolved them: kept under its namespace in the connection's session.

Flask-SocketIO keeps one session per connection, and a client may open /mobile and /control on one connection
(socket.io clients do by default). Kept under the namespace's own key, a refused connect (or another person's)
on one namespace never changes who the other namespace's socket is."""
from flask import request, session


def of_socket() -> dict:
    """This socket's identity (user_id, sign_in, role, district, name), as set at its connect."""
    return session.setdefault(request.namespace, {})
