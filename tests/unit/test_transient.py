"""Recording a finished Job through an API server outage: a write the server applied but never
answered must still lead to the followers being told."""

from __future__ import annotations

import pytest
from urllib3.exceptions import ProtocolError

from modelyard.controllers import transient
from modelyard.controllers.kube import ApiError, Forbidden


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("modelyard.controllers.transient.time.sleep", lambda _: None)


class Status:
    """A status the record goes into; `lose_answer` times the write is applied, then the
    connection drops before the answer."""

    def __init__(self, lose_answer: int = 0, fail_before_write: int = 0) -> None:
        self.written = False
        self.lose_answer, self.fail_before_write = lose_answer, fail_before_write

    def record(self) -> bool:
        if self.fail_before_write:
            self.fail_before_write -= 1
            raise ProtocolError("Connection aborted.", ConnectionRefusedError())
        if self.written:
            return False  # found recorded
        self.written = True
        if self.lose_answer:
            self.lose_answer -= 1
            raise ProtocolError("Connection aborted.", ConnectionResetError())
        return True


def test_a_write_whose_answer_was_lost_counts_as_recorded_by_us() -> None:
    status = Status(lose_answer=1)
    assert transient.recorded("recording", status.record)
    assert status.written


def test_an_attempt_cut_before_its_write_records_on_the_next() -> None:
    status = Status(fail_before_write=2)
    assert transient.recorded("recording", status.record)


def test_a_result_recorded_by_an_earlier_event_is_not_ours() -> None:
    status = Status()
    status.written = True
    assert not transient.recorded("recording", status.record)


def test_errors_that_are_not_the_connection_are_not_retried() -> None:
    def forbidden() -> bool:
        raise Forbidden(403, "Forbidden", b'{"message": "jobs.batch is forbidden"}')

    with pytest.raises(Forbidden):
        transient.recorded("recording", forbidden)


def test_an_api_server_that_is_restarting_is_waited_for() -> None:
    answers = [ApiError(503, "Service Unavailable", b""), ApiError(429, "Too Many Requests", b"")]

    def flaky() -> bool:
        if answers:
            raise answers.pop()
        return True

    assert transient.recorded("recording", flaky)
    assert not answers
