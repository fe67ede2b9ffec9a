"""The fork-server protocol and both sides' decisions, without processes or trio."""

from __future__ import annotations

import errno

import pytest

from ade.worker.fork_protocol import (
    ASSIGNMENT_LIMIT,
    EXITED,
    FDS_PER_JOB,
    FDS_PER_PREPARED,
    FORK_FAILED,
    PREPARE,
    READY,
    START,
    STARTED,
    Assignment,
    Exited,
    Fork,
    ForkFailed,
    ForkServerState,
    Frame,
    Misbehaved,
    Ready,
    Refuse,
    Started,
    TemplateState,
    decode_frame,
    encode_frame,
)


def test_frames_round_trip_and_short_data_is_no_frame() -> None:
    data = encode_frame(START, 7, -3, b"payload")
    assert decode_frame(data) == Frame(START, 7, -3, b"payload")
    assert decode_frame(data[:10]) is None
    assert decode_frame(b"") is None


def test_assignment_round_trips_and_refuses_what_is_not_one() -> None:
    assignment = Assignment("/jobs/a", {"job_dir": "/jobs/a"}, {"PATH": "/bin"})
    assert Assignment.decode(assignment.encode()) == assignment
    with pytest.raises(ValueError, match="malformed assignment"):
        Assignment.decode(b"{not json")
    with pytest.raises(ValueError, match="malformed assignment"):
        Assignment.decode(b'{"job_dir": "/x", "spec": {}}')
    with pytest.raises(ValueError, match="wrong field types"):
        Assignment.decode(b'{"job_dir": 3, "spec": {}, "env": {}}')
    with pytest.raises(ValueError, match="exceeds"):
        Assignment("/j", {}, {"X": "y" * ASSIGNMENT_LIMIT}).encode()


def test_the_template_forks_only_for_a_well_formed_start() -> None:
    state = TemplateState()
    start = decode_frame(encode_frame(START, 5, 0, b"{}"))
    assert state.on_frame(start, FDS_PER_JOB) == Fork(5)
    assert state.on_frame(None, FDS_PER_JOB) == Refuse("short frame")
    assert state.on_frame(Frame(b"Z", 1, 0), FDS_PER_JOB) == Refuse("unknown frame kind b'Z'")
    assert state.on_frame(start, 3) == Refuse("START with 3 fds, expected 4")
    # Ahead of a job: the four pipes and the one its assignment will arrive on.
    prepare = decode_frame(encode_frame(PREPARE, 6, 0, b"{}"))
    assert state.on_frame(prepare, FDS_PER_PREPARED) == Fork(6, prepare=True)
    assert state.on_frame(prepare, FDS_PER_JOB) == Refuse("PREPARE with 4 fds, expected 5")
    big = Frame(START, 6, 0, b"x" * (ASSIGNMENT_LIMIT + 1))
    assert state.on_frame(big, FDS_PER_JOB) == Refuse("assignment too large")


def test_the_template_reports_each_job_child_once_and_ignores_other_pids() -> None:
    state = TemplateState()
    assert decode_frame(state.forked_child(5, 4242)) == Frame(STARTED, 5, 4242)
    assert state.reaped(999, 0) is None  # not a job's child
    assert decode_frame(state.reaped(4242, 9)) == Frame(EXITED, 5, 9)
    assert state.reaped(4242, 9) is None
    assert state.forked == 1


def test_the_service_follows_a_launch_from_ready_to_exited() -> None:
    state = ForkServerState()
    assert not state.ready
    assert state.on_reply(Frame(READY, 0, 100), 0) == Ready(100)
    assert state.ready and state.template_pid == 100
    token = state.begin_launch()
    assert state.on_reply(Frame(STARTED, token, 200), 0) == Started(token, 200)
    assert state.running == {token: 200}
    assert state.on_reply(Frame(EXITED, token, 0), 0) == Exited(token, 0)
    assert state.running == {} and state.restarts == 0
    assert state.begin_launch() == token + 1


@pytest.mark.parametrize(
    ("frame", "fds", "reason"),
    [
        (None, 0, "malformed frame from the template"),
        (Frame(READY, 0, 1, b"extra"), 0, "malformed frame from the template"),
        (Frame(READY, 0, 1), 1, "malformed frame from the template"),
        (Frame(b"?", 0, 1), 0, "unknown frame kind b'?' from the template"),
        (Frame(READY, 0, 101), 0, "unexpected READY from the template"),
        (Frame(STARTED, 99, 300), 0, "STARTED for a launch not in flight (99)"),
        (Frame(EXITED, 42, 0), 0, "EXITED for a job not running (42)"),
    ],
)
def test_whatever_does_not_fit_is_misbehaviour(frame: Frame | None, fds: int, reason: str) -> None:
    state = ForkServerState()
    state.on_reply(Frame(READY, 0, 100), 0)
    assert state.on_reply(frame, fds) == Misbehaved(reason)


def test_a_started_for_pid_1_or_lower_is_misbehaviour() -> None:
    # killpg(1) or killpg(0) would signal init or our own group: never accept such a pid.
    state = ForkServerState()
    state.on_reply(Frame(READY, 0, 100), 0)
    token = state.begin_launch()
    assert isinstance(state.on_reply(Frame(STARTED, token, 1), 0), Misbehaved)


def test_losing_the_template_counts_a_restart_and_forgets_its_jobs() -> None:
    state = ForkServerState()
    state.on_reply(Frame(READY, 0, 100), 0)
    token = state.begin_launch()
    state.on_reply(Frame(STARTED, token, 200), 0)
    state.template_lost("the template exited")
    assert (state.ready, state.running, state.launching) == (False, {}, set())
    assert (state.restarts, state.last_restart_reason) == (1, "the template exited")
    assert state.on_reply(Frame(READY, 0, 300), 0) == Ready(300)


@pytest.mark.parametrize(
    "status",
    [
        -1,  # no wait status at all
        0xFFFF,  # not an exit, not a signal death
        0x137F,  # "stopped by SIGSTOP": a child that has not ended
        2**40,  # beyond any int the kernel returns
    ],
)
def test_an_exited_with_a_status_no_dead_process_has_is_misbehaviour(status: int) -> None:
    # The supervisor turns the status into an exit code (os.waitstatus_to_exitcode): a status
    # that is none must be the template's fault, never an exception in the service.
    state = ForkServerState()
    state.on_reply(Frame(READY, 0, 100), 0)
    token = state.begin_launch()
    state.on_reply(Frame(STARTED, token, 200), 0)
    assert state.on_reply(Frame(EXITED, token, status), 0) == Misbehaved(
        f"EXITED with an impossible wait status ({status})"
    )


@pytest.mark.parametrize("kind", [READY, STARTED])
def test_a_pid_beyond_any_pid_is_misbehaviour(kind: bytes) -> None:
    # killpg() of such a "pid" raises OverflowError in the service instead of killing anything.
    state = ForkServerState()
    if kind == STARTED:
        state.on_reply(Frame(READY, 0, 100), 0)
    token = state.begin_launch()
    assert isinstance(state.on_reply(Frame(kind, token, 2**40), 0), Misbehaved)


def test_a_started_for_an_abandoned_launch_after_the_next_launch_is_no_misbehaviour() -> None:
    # A launch cancelled while the template is busy is answered after the next launch was
    # sent: the late STARTED is expected (the service kills that child), not a broken template.
    state = ForkServerState()
    state.on_reply(Frame(READY, 0, 100), 0)
    first = state.begin_launch()
    second = state.begin_launch()
    assert state.on_reply(Frame(STARTED, first, 200), 0) == Started(first, 200)
    assert state.on_reply(Frame(STARTED, second, 201), 0) == Started(second, 201)
    assert state.on_reply(Frame(STARTED, second, 202), 0) == Misbehaved(
        f"STARTED for a launch not in flight ({second})"
    )
    assert state.running == {first: 200, second: 201}


def test_a_fork_the_template_cannot_do_fails_that_launch_only() -> None:
    template = TemplateState()
    assert decode_frame(template.fork_failed(7, errno.EAGAIN)) == Frame(FORK_FAILED, 7, 11)
    assert template.children == {} and template.forked == 0
    state = ForkServerState()
    state.on_reply(Frame(READY, 0, 100), 0)
    token = state.begin_launch()
    assert state.on_reply(Frame(FORK_FAILED, token, errno.EAGAIN), 0) == ForkFailed(token, 11)
    assert (state.launching, state.running, state.restarts) == (set(), {}, 0)
    # The same answer again, or for a launch never sent, or with no errno: misbehaviour.
    for frame in (
        Frame(FORK_FAILED, token, errno.EAGAIN),
        Frame(FORK_FAILED, 99, errno.EAGAIN),
        Frame(FORK_FAILED, state.begin_launch(), 0),
    ):
        assert isinstance(state.on_reply(frame, 0), Misbehaved)
