"""Batched position fan-out: the newest position per subject, flushed to each room every few hundred ms."""
import threading

from flask import current_app

from safety_api.extensions import socketio
from safety_api.realtime import broadcast


class PositionBatcher:
    """Collects positions per (namespace, room, event) and emits them as one message per flush."""

    def __init__(self, interval_s: float = 0.3):
        self.interval_s = interval_s
        self._pending: dict = {}
        self._lock = threading.Lock()  # the queue
        # Held by a flush from taking the queue until its emits are out, and by `discard`: a subject discarded
        # while a flush that took its position is still emitting waits for it, so the news that the subject ended
        # (sent after the discard) comes after that position, never before it.
        self._emitting = threading.Lock()
        self._started = False

    def add(self, *, namespace: str, room, event: str, item: dict):
        """Queue an item; a newer item for the same subject replaces the older one.

        `room` may be a tuple of rooms (a walk's watchers, one room per person allowed): it is emitted once to
        all of them. Items are kept per app (the one in context) and emitted through that app's Socket.IO
        server."""
        app = current_app._get_current_object()
        with self._lock:
            self._pending.setdefault((app, namespace, room, event), {})[(item["kind"], item["id"])] = item
            if not self._started:
                self._started = True
                socketio.start_background_task(self._run)

    def discard(self, *, kind: str, subject_id: str):
        """Drop what is queued for one subject that has just ended (an escort completed): its last positions must
        not reach the viewers after the news that it ended. Only this process's queue: another api process may
        still send what it holds, within one flush interval."""
        with self._emitting, self._lock:
            for key, items in list(self._pending.items()):
                items.pop((kind, subject_id), None)
                if not items:
                    del self._pending[key]

    def flush(self):
        """Emit everything queued: one publish per room, never one per fix."""
        with self._emitting:
            with self._lock:
                pending, self._pending = self._pending, {}
            for (app, namespace, room, event), items in pending.items():
                with app.app_context():
                    broadcast.to_room(namespace, room, event, {"items": list(items.values())})

    def _run(self):
        while True:
            socketio.sleep(self.interval_s)
            self.flush()


batcher = PositionBatcher()
