"""Delivery channels: FCM push, the emit-only Socket.IO emitter, and message builders.

Takes and returns plain values; imports neither Flask nor ``safety_api`` nor ``geo``. Each
failure is isolated and reported back (dead push tokens as ``PushOutcome.status == "dead"``).
"""
from notifications.push import (
                                PushMessage,
                                PushOutcome,
                                PushSender,
                                backoff_seconds,
                                init_firebase_app,
)
from notifications.sockets import SocketEmitter

__all__ = ["PushMessage", "PushOutcome", "PushSender", "SocketEmitter", "backoff_seconds",
           "init_firebase_app"]
