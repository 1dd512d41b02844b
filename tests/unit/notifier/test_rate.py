from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kizuna_notifier.domain.rate import admit


def test_a_burst_goes_at_once_and_the_rest_is_spaced() -> None:
    admission = admit(0.0, 100.0, per_second=10, burst=5, wanted=8, max_wait=10)
    assert admission.delays[:5] == [0.0] * 5
    assert [round(d, 3) for d in admission.delays[5:]] == [0.1, 0.2, 0.3]
    assert admission.resume_at is None


def test_what_would_wait_too_long_is_deferred() -> None:
    admission = admit(0.0, 0.0, per_second=2, burst=1, wanted=10, max_wait=1.0)
    assert admission.delays == [0.0, 0.5, 1.0]
    assert admission.resume_at == 1.5
    again = admit(admission.tat, admission.resume_at, 2, 1, 7, 1.0)
    assert again.delays[0] == 0.0


@settings(deadline=None)
@given(
    per_second=st.floats(0.5, 500),
    burst=st.integers(1, 50),
    batches=st.lists(st.tuples(st.floats(0, 5), st.integers(0, 80)), min_size=1, max_size=30),
    max_wait=st.floats(0, 5),
)
def test_no_window_ever_sees_more_than_rate_times_length_plus_burst(
    per_second: float, burst: int, batches: list[tuple[float, int]], max_wait: float
) -> None:
    tat, now, send_times = 0.0, 0.0, []
    for gap, wanted in batches:
        now += gap
        admission = admit(tat, now, per_second, burst, wanted, max_wait)
        tat = admission.tat
        assert all(0 <= d <= max_wait + 1e-6 for d in admission.delays)
        assert admission.delays == sorted(admission.delays)
        assert (admission.resume_at is None) == (len(admission.delays) == wanted)
        send_times += [now + d for d in admission.delays]
    send_times.sort()
    # j - i + 1 <= rate * (t_j - t_i) + burst for every i <= j, checked with a running maximum
    # of rate * t_i - i
    best = -float("inf")
    for j, at in enumerate(send_times):
        best = max(best, per_second * at - j)
        assert (j + 1 - per_second * at) + best <= burst + 1e-6
