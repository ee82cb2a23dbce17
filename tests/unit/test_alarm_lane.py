"""The alarm lane: location writers hold back while an SOS is being raised, never for long."""
import threading
import time

from safety_api.services.group_commit import AlarmLane


def waiter(lane: AlarmLane, timeout_s: float) -> threading.Thread:
    thread = threading.Thread(target=lane.wait_clear, args=(timeout_s,), daemon=True)
    thread.start()
    return thread


def test_a_writer_goes_on_at_once_when_no_alarm_is_being_raised():
    thread = waiter(AlarmLane(), timeout_s=30)
    thread.join(5)
    assert not thread.is_alive()


def test_a_writer_waits_until_every_alarm_in_flight_is_told():
    lane = AlarmLane()
    with lane:
        with lane:  # two SOS at once
            thread = waiter(lane, timeout_s=30)
            time.sleep(0.2)
            assert thread.is_alive()
        time.sleep(0.2)
        assert thread.is_alive(), "one alarm is still being raised"
    thread.join(5)
    assert not thread.is_alive()


def test_a_flood_of_alarms_cannot_hold_the_fixes_back_for_longer_than_the_yield():
    lane = AlarmLane()
    with lane:
        started = time.monotonic()
        lane.wait_clear(0.3)
        assert time.monotonic() - started < 5
