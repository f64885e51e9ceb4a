"""smtpscript.memo: results kept by the arguments' identity, in bounded memory."""

from __future__ import annotations

from smtpscript.memo import by_identity


def test_the_same_objects_give_the_same_result_and_equal_ones_do_not_share_it():
    calls = []

    @by_identity(maxsize=8)
    def wrap(value: object) -> list[object]:
        calls.append(value)
        return [value]

    one = [1]
    other = [1]  # equal, not the same object
    assert wrap(one) is wrap(one)
    assert wrap(other) is not wrap(one)
    assert calls == [one, other]


def test_past_maxsize_it_starts_again_and_stays_bounded():
    @by_identity(maxsize=4)
    def wrap(value: object) -> object:
        return object()

    kept = [[n] for n in range(10)]  # alive: ids are not reused
    results = [wrap(value) for value in kept]
    assert wrap(kept[-1]) is results[-1]  # the newest survived the last clearing
    assert wrap(kept[0]) is not results[0]  # the oldest was let go, made anew
