"""The shared first deadline of new connections (:class:`asgisock.transport.state.Arrivals`).

A stateful property test on a real asyncio loop whose clock moves only when the test moves it:
connections arrive, are lost, and time passes, in any order; each connection still waiting
falls due exactly once, never before its arrival plus the timeout, and once the clock has
passed it; a lost one never does, and is not kept.
"""

from __future__ import annotations

import asyncio

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from asgisock.transport.state import Arrivals

TIMEOUT = 5.0


class Clocked(asyncio.SelectorEventLoop):
    """asyncio's own loop, on a clock the test sets: a timer runs in the first turn of the loop
    after the clock reaches it."""

    now = 1000.0

    def time(self) -> float:
        return self.now


class Connection:
    def __init__(self, number: int, arrived: float, clock: Clocked) -> None:
        self.number = number
        self.arrived = arrived
        self.clock = clock
        self.due_at: list[float] = []

    def arrival_due(self) -> None:
        self.due_at.append(self.clock.now)


class ArrivalsFlow(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = Clocked()
        self.arrivals = Arrivals(self.loop, TIMEOUT)
        self.connections: list[Connection] = []
        self.lost: set[int] = set()

    def teardown(self) -> None:
        self.loop.close()

    def turn(self) -> None:
        for _ in range(3):  # a timer re-armed for a deadline already passed runs in the next turn
            self.loop.run_until_complete(asyncio.sleep(0))

    @rule()
    def arrive(self) -> None:
        connection = Connection(len(self.connections), self.loop.now, self.loop)
        self.connections.append(connection)
        self.arrivals.add(connection, self.loop.now)

    @precondition(lambda self: self.connections)
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        connection = data.draw(st.sampled_from(self.connections))
        self.arrivals.discard(connection)  # twice is allowed: lost after it fell due
        self.lost.add(connection.number)

    @rule(seconds=st.sampled_from([0.0, 0.001, 0.5, 1.0, TIMEOUT - 0.001, TIMEOUT, TIMEOUT + 0.001, 7.5]))
    def wait(self, seconds: float) -> None:
        self.loop.now += seconds
        self.turn()

    @invariant()
    def each_falls_due_once_on_time(self) -> None:
        now = self.loop.now
        for connection in self.connections:
            deadline = connection.arrived + TIMEOUT
            assert len(connection.due_at) <= 1, connection.due_at
            if connection.due_at:
                assert connection.due_at[0] >= deadline
            elif connection.number not in self.lost:
                assert now < deadline, f"connection {connection.number} not due at {now}, deadline {deadline}"

    @invariant()
    def keeps_only_the_waiting(self) -> None:
        waiting = self.arrivals.waiting
        for connection in self.connections:
            if connection.number in self.lost or connection.due_at:
                assert connection not in waiting
            else:
                assert connection in waiting
        assert not waiting or self.arrivals.timer is not None


test_arrivals = ArrivalsFlow.TestCase
