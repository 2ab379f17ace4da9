import pytest
from hypothesis import given
from hypothesis import strategies as st

from linpath.config.steps import Step, kept_steps
from linpath.data.source import iterations_per_epoch
from linpath.errors import LinpathError


def test_mnist_schedule_has_the_papers_30_states():
    steps = kept_steps(18760)
    assert steps[:12] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    assert steps[12:-1] == list(range(2000, 19000, 1000))
    assert steps[-1] == 18760
    assert len(steps) == 30


def test_cifar_schedule_keeps_73_states_plus_final():
    steps = kept_steps(62560)
    assert len(steps) == 74 and steps[-2] == 62000 and steps[-1] == 62560


def test_iterations_per_epoch_rounds_up():
    assert iterations_per_epoch(60000, 128) == 469
    assert iterations_per_epoch(50000, 128) == 391
    assert Step.parse("40ep").to_iterations(469) == 18760


@pytest.mark.parametrize(
    "text,expected",
    [
        ("40ep", (40, 0)),
        ("18760it", (0, 18760)),
        ("2ep100it", (2, 100)),
        ("300", (0, 300)),
        (" 3ep ", (3, 0)),
    ],
)
def test_step_strings(text, expected):
    s = Step.parse(text)
    assert (s.epochs, s.iterations) == expected


@pytest.mark.parametrize("text", ["12xx", "", "ep", "it", "-3", "1.5ep", "3it2ep"])
def test_bad_step_strings_are_refused(text):
    with pytest.raises(LinpathError, match="not a step"):
        Step.parse(text)


@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_step_strings_round_trip(epochs, iterations):
    s = Step(epochs, iterations)
    assert Step.parse(str(s)).to_iterations(391) == epochs * 391 + iterations


@given(st.integers(1, 200000))
def test_schedule_is_sorted_unique_and_ends_at_last(last):
    steps = kept_steps(last)
    assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == last
