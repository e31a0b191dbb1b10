"""The scheduler: a heap of timed messages, due in deadline order, FIFO on ties."""

import mido
from hypothesis import given
from hypothesis import strategies as st

from instrument.scheduler import Scheduler, TimedMessage


def _msg(note: int) -> mido.Message:
    return mido.Message("note_on", note=note, velocity=64)


def test_due_returns_messages_in_deadline_order_and_removes_them():
    s = Scheduler()
    for t, n in [(0.3, 3), (0.1, 1), (0.2, 2), (0.5, 5)]:
        s.push(TimedMessage(t, _msg(n)))
    assert s.due(0.05) == []
    assert [m.message.note for m in s.due(0.3)] == [1, 2, 3]
    assert len(s) == 1 and s.next_deadline() == 0.5 and s.horizon() == 0.5


def test_equal_deadlines_leave_in_push_order():
    s = Scheduler()
    off = TimedMessage(1.0, mido.Message("note_off", note=60))
    on = TimedMessage(1.0, mido.Message("note_on", note=60, velocity=90))
    s.push(off)
    s.push(on)
    assert [m.message.type for m in s.due(1.0)] == ["note_off", "note_on"]


def test_drop_after_removes_only_the_future():
    s = Scheduler()
    for t in (0.1, 0.2, 0.3, 0.4):
        s.push(TimedMessage(t, _msg(int(t * 10))))
    dropped = s.drop_after(0.2)
    assert [m.deadline for m in dropped] == [0.3, 0.4]
    assert [m.deadline for m in s.due(10.0)] == [0.1, 0.2]
    assert s.horizon() is None and s.next_deadline() is None


@given(st.lists(st.floats(0, 100, allow_nan=False), max_size=50), st.floats(0, 100, allow_nan=False))
def test_due_and_drop_partition_everything(deadlines, cut):
    s = Scheduler()
    for i, t in enumerate(deadlines):
        s.push(TimedMessage(t, _msg(i % 128)))
    future = s.drop_after(cut)
    past = s.due(cut)
    assert len(future) + len(past) == len(deadlines)
    assert all(m.deadline > cut for m in future) and all(m.deadline <= cut for m in past)
    assert [m.deadline for m in past] == sorted(m.deadline for m in past)
