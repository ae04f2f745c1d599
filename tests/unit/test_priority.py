"""Priority queues: key naming, routing, settings, and the pollers' choice of queue."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from stratoq.core.errors import ConfigError
from stratoq.core.priority import (
    PriorityChooser,
    PriorityMode,
    check_keys,
    expand,
    idle_counts,
    logical_queues,
    parse_mode,
    parse_weights,
    queue_key,
    route,
    split_key,
    weighted_order,
)
from stratoq.core.settings import Settings

KEYS = ["default:high", "default", "default:low"]


class ScriptedRandom(random.Random):
    """Returns the given numbers from random(), in order: a choice made on purpose."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self._values = list(values)

    def random(self) -> float:
        return self._values.pop(0)


# ------------------------------------------------------------------ naming and routing
def test_keys_name_a_logical_queue_and_a_priority() -> None:
    assert queue_key("default", "default") == "default"
    assert queue_key("default", "high") == "default:high"
    assert queue_key("emails", "low") == "emails:low"
    assert split_key("default:high") == ("default", "high")
    assert split_key("emails:low") == ("emails", "low")
    assert split_key("emails") == ("emails", "default")
    assert logical_queues(["a:high", "a", "b", "a:low", "b:low"]) == ["a", "b"]


def test_route_falls_back_to_the_default_queue_without_a_priority_queue() -> None:
    assert route(KEYS, "default", "high") == "default:high"
    assert route(KEYS, "default", "low") == "default:low"
    assert route(KEYS, "default", "default") == "default"
    # A deployment configured before priorities existed: everything to the one queue.
    assert route(["default"], "default", "high") == "default"
    assert route(["default", "emails"], "emails", "low") == "emails"


def test_expand_names_to_the_queues_a_poller_reads() -> None:
    keys = ["default", "default:low", "emails", "default:high", "emails:high"]
    assert expand(keys, ["default"]) == ["default:high", "default", "default:low"]
    assert expand(keys, ["default", "emails"]) == [
        "default:high",
        "emails:high",
        "default",
        "emails",
        "default:low",
    ]
    # One priority queue alone: a dedicated high-priority poller.
    assert expand(keys, ["default:high"]) == ["default:high"]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["default", "default:urgent"], "<queue>:high or <queue>:low"),
        (["default", ":high"], "<queue>:high or <queue>:low"),
        (["default", "emails:high"], "not 'emails'"),
    ],
)
def test_bad_priority_keys_are_refused(keys: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_keys(keys)


def test_settings_read_priority_queues_mode_and_weights() -> None:
    env = {
        "STRATOQ_QUEUES": "default=http://q/d,default:high=http://q/h,default:low=http://q/l",
        "STRATOQ_PRIORITY_MODE": "Strict",
        "STRATOQ_PRIORITY_WEIGHTS": "10, 2, 1",
    }
    s = Settings.from_env(env)
    assert s.queues == {
        "default": "http://q/d",
        "default:high": "http://q/h",
        "default:low": "http://q/l",
    }
    assert s.priority_mode is PriorityMode.STRICT
    assert s.priority_weights == (10, 2, 1)
    assert Settings.from_env(s.to_env()) == s  # children get the same settings
    plain = Settings.from_env({})
    assert plain.priority_mode is PriorityMode.WEIGHTED
    assert plain.priority_weights == (6, 3, 1)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STRATOQ_PRIORITY_MODE": "fifo"}, "STRATOQ_PRIORITY_MODE must be weighted or strict"),
        ({"STRATOQ_PRIORITY_WEIGHTS": "6,3"}, "STRATOQ_PRIORITY_WEIGHTS must be three"),
        ({"STRATOQ_PRIORITY_WEIGHTS": "6,0,1"}, "from 1 to 1000"),
        ({"STRATOQ_PRIORITY_WEIGHTS": "a,b,c"}, "like 6,3,1"),
        ({"STRATOQ_QUEUES": "default=x,default:top=y"}, "default:top"),
    ],
)
def test_bad_priority_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_parsers_name_the_option_they_read() -> None:
    with pytest.raises(ConfigError, match="--priority-mode must be"):
        parse_mode("both", "--priority-mode")
    assert parse_weights(" 1,1,1 ", "--priority-weights") == (1, 1, 1)


# ------------------------------------------------------------------ the choice
def test_weighted_order_draws_each_position_by_the_remaining_weights() -> None:
    # 6/3/1: [0, 0.6) high, [0.6, 0.9) default, [0.9, 1) low.
    assert weighted_order(KEYS, [6, 3, 1], ScriptedRandom([0.95, 0.0])) == [
        "default:low",
        "default:high",
        "default",
    ]
    # Second draw among default (3) and low (1): 0.8 * 4 = 3.2 falls on low.
    assert weighted_order(KEYS, [6, 3, 1], ScriptedRandom([0.1, 0.8])) == [
        "default:high",
        "default:low",
        "default",
    ]
    assert weighted_order(KEYS, [6, 3, 1], ScriptedRandom([0.7, 0.5])) == [
        "default",
        "default:high",
        "default:low",
    ]


def test_weighted_choice_follows_the_weights() -> None:
    chooser = PriorityChooser(KEYS, PriorityMode.WEIGHTED, (6, 3, 1), random.Random(7))
    firsts = Counter(chooser.order()[0] for _ in range(10_000))
    assert firsts["default:high"] / 10_000 == pytest.approx(0.6, abs=0.02)
    assert firsts["default"] / 10_000 == pytest.approx(0.3, abs=0.02)
    assert firsts["default:low"] / 10_000 == pytest.approx(0.1, abs=0.02)


def test_weighted_an_empty_queue_hands_its_share_on_in_proportion() -> None:
    # The poller skips queues it found empty: with default empty, high and low share
    # 6:1, the Plackett-Luce property of drawing without replacement.
    chooser = PriorityChooser(KEYS, PriorityMode.WEIGHTED, (6, 3, 1), random.Random(11))
    picks = Counter(next(k for k in chooser.order() if k != "default") for _ in range(14_000))
    assert picks["default:low"] / 14_000 == pytest.approx(1 / 7, abs=0.015)


def test_weighted_low_still_progresses_behind_a_high_backlog() -> None:
    chooser = PriorityChooser(KEYS, PriorityMode.WEIGHTED, (6, 3, 1), random.Random(3))
    firsts = [chooser.order()[0] for _ in range(200)]
    assert firsts.count("default:low") > 0


def test_every_order_lists_every_queue_once() -> None:
    for mode in PriorityMode:
        chooser = PriorityChooser(KEYS, mode, (6, 3, 1), random.Random(5))
        for _ in range(50):
            assert sorted(chooser.order()) == sorted(KEYS)


def test_strict_always_tries_high_then_default_then_low() -> None:
    chooser = PriorityChooser(
        ["default", "default:low", "default:high"], PriorityMode.STRICT, rng=ScriptedRandom([])
    )
    for _ in range(5):
        assert chooser.order() == ["default:high", "default", "default:low"]


def test_strict_logical_queues_of_one_priority_take_turns() -> None:
    chooser = PriorityChooser(["a:high", "b:high", "a", "b"], PriorityMode.STRICT)
    orders = [chooser.order() for _ in range(2)]
    assert {o[0] for o in orders} == {"a:high", "b:high"}
    assert all(set(o[:2]) == {"a:high", "b:high"} and set(o[2:]) == {"a", "b"} for o in orders)


def test_a_chooser_needs_a_queue() -> None:
    with pytest.raises(ValueError, match="at least one queue"):
        PriorityChooser([])


def test_idle_long_polls_prefetch_only_on_the_highest_priority() -> None:
    keys = ["default:high", "default", "default:low"]
    assert idle_counts(keys, want=10, free=4) == {
        "default:high": 10,
        "default": 4,
        "default:low": 4,
    }
    assert idle_counts(keys, want=3, free=4) == {"default:high": 3, "default": 3, "default:low": 3}


def test_idle_long_polls_without_a_high_queue_let_default_prefetch() -> None:
    assert idle_counts(["default", "default:low"], want=10, free=2) == {
        "default": 10,
        "default:low": 2,
    }
    assert idle_counts([], want=10, free=2) == {}
