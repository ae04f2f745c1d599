"""Pure parts of concurrency and rate limits (issue 19, items 1 and 2): rates, the token
bucket's math, which slots to try, which scopes limit a task, the waits, the message's
fields, and bad input refused naming the field (model, options, CLI)."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from stratoq.adapters.transport import TaskMessage, outgoing_for
from stratoq.cli import main as cli
from stratoq.core.errors import ConfigError
from stratoq.core.limits import (
    LATE_MS,
    Limits,
    LimitsState,
    Plan,
    Rate,
    TaskLimits,
    TtlCache,
    earliest_end,
    late,
    parse_rate,
    plan,
    slot_order,
    take,
)
from stratoq.core.models import TaskRequest
from stratoq.core.policy import (
    TOKEN_SLEEP_MS,
    WAIT_CAPS,
    HandBackFor,
    StartAfter,
    WaitReason,
    token_wait,
    wait_delay,
)
from stratoq.core.registry import TaskOptions
from stratoq.sdk.tasks import task


# ------------------------------------------------------------------ rates
@pytest.mark.parametrize(
    ("text", "rate"),
    [("10/s", Rate(10, 1000)), ("60/m", Rate(60, 60_000)), (" 1000 / h", Rate(1000, 3_600_000))],
)
def test_rates_parse_and_print_canonically(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate
    assert str(parse_rate(text)) == text.replace(" ", "")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("10/w", "unknown rate unit 'w'"),
        ("10/sec", "unknown rate unit 'sec'"),
        ("0/s", "1 to 1000000"),
        ("ten/s", "is not a rate"),
        ("10", "is not a rate"),
        ("10/", "unknown rate unit ''"),
    ],
)
def test_bad_rates_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_rate(text)


def test_a_rate_is_one_token_per_interval_never_a_burst() -> None:
    assert parse_rate("10/s").interval_ms == 100
    assert parse_rate("1000/h").interval_ms == 3_600  # one every 3.6 s, not 1000 at once
    assert parse_rate("7/s").interval_ms == pytest.approx(142.857, abs=0.001)


# ------------------------------------------------------------------ the bucket
def test_an_idle_bucket_gives_its_token_at_once_and_spaces_the_rest() -> None:
    rate = parse_rate("10/s")
    tat, [due] = take(None, rate, 5_000)
    assert (tat, due) == (5_100, 5_000)
    dues = []
    for _ in range(5):
        tat, [due] = take(tat, rate, 5_000)
        dues.append(due)
    # Each waiter gets its own token time, 100 ms apart: none has to poll.
    assert dues == [5_100, 5_200, 5_300, 5_400, 5_500]
    # Idle again (its next token is past due): the token is the taker's at once.
    assert take(5_600.0, rate, 9_000) == (9_100, [9_000])
    # A batch takes its tokens at once: one write for many tasks.
    assert take(9_100.0, rate, 9_000, 3) == (9_400, [9_100, 9_200, 9_300])


def test_a_token_promised_for_a_fraction_of_a_ms_comes_due_on_the_next_ms() -> None:
    rate = parse_rate("7/s")
    tat, [due] = take(1_000.5, rate, 1_000)
    assert due == 1_001
    assert tat == pytest.approx(1_143.357, abs=0.001)


def test_starts_in_any_window_stay_within_the_rate() -> None:
    # 200 tasks arriving together at 10/s: starts are 100 ms apart, 10 in any second.
    rate = parse_rate("10/s")
    tat: float | None = None
    starts = []
    for _ in range(200):
        tat, [due] = take(tat, rate, 0)
        starts.append(due)
    for begin in range(0, 19_000, 250):
        assert sum(1 for s in starts if begin <= s < begin + 1000) <= 10


def test_a_task_back_too_late_takes_a_new_token() -> None:
    assert not late(10_000, 10_000 + LATE_MS)
    assert late(10_000, 10_000 + LATE_MS + 1)


@pytest.mark.parametrize(
    ("due", "now", "expected"),
    [
        (5_000, 5_000, StartAfter(0)),  # its token now
        (4_000, 5_000, StartAfter(0)),  # late (within LATE_MS): at once, never waits more
        (5_001, 5_000, StartAfter(1)),
        (5_999, 5_000, StartAfter(999)),
        (6_000, 5_000, StartAfter(TOKEN_SLEEP_MS)),  # a whole second: still slept out here
        (6_001, 5_000, HandBackFor(1)),  # back 1 ms early, to sleep that 1 ms
        (6_999, 5_000, HandBackFor(1)),  # rounded down: 999 ms early, never 1 ms late
        (7_000, 5_000, HandBackFor(2)),
        (5_000 + 3_600_000, 5_000, HandBackFor(900)),  # SQS's longest, then another hop
    ],
)
def test_a_token_is_slept_out_within_a_second_else_handed_back_rounded_down(
    due: int, now: int, expected: StartAfter | HandBackFor
) -> None:
    assert token_wait(due, now) == expected


def test_a_task_following_the_decision_starts_at_its_token_never_before() -> None:
    # Whatever the distance to its token, a task handed back (arriving exactly after its
    # delay, or up to 900 ms after) then sleeping starts at its token, or after it only
    # by what SQS added: never before, and never a second late by rounding.
    for distance in range(0, 5_000, 37):
        for latency in (0, 1, 250, 900):
            now, due = 1_000_000, 1_000_000 + distance
            wait = token_wait(due, now)
            while isinstance(wait, HandBackFor):
                now += wait.seconds * 1000 + latency
                wait = token_wait(due, now)
            start = now + wait.ms
            assert start >= due
            assert start - due <= latency


def test_a_message_towards_its_token_is_delayed_rounded_down() -> None:
    msg = TaskMessage("t1", "acme", rate_paid_ms=10_700)
    towards_token = outgoing_for("default", msg, 10_700, 8_000)
    assert towards_token.delay_seconds == 2  # 2.7 s: arrives 0.7 s early, sleeps it out
    assert towards_token.message.not_before_ms is None  # its token says when
    soon = TaskMessage("t1", "acme", rate_paid_ms=8_900)
    assert outgoing_for("default", soon, 8_900, 8_000).delay_seconds == 0  # within a second
    # Any other due time keeps rounding up (a retry, a hop to a scheduled time).
    assert outgoing_for("default", TaskMessage("t2", "acme"), 10_700, 8_000).delay_seconds == 3


# ------------------------------------------------------------------ slots
def test_only_free_or_expired_slots_are_tried_in_a_random_order() -> None:
    holders = {0: 5_000, 2: 900, 3: 1_000}  # slot 2 ended, 3 ends now, 1 never held
    order = slot_order(holders, 4, 1_000, random.Random(1))
    assert sorted(order) == [1, 2, 3]
    orders = {tuple(slot_order(holders, 4, 1_000, random.Random(seed))) for seed in range(20)}
    assert len(orders) > 1  # racing workers spread over the free slots
    assert slot_order({0: 5_000, 1: 5_000}, 2, 1_000, random.Random(1)) == []
    assert earliest_end(holders, 1_000) == 5_000
    assert earliest_end({}, 1_000) is None


def test_a_slot_beyond_a_smaller_limit_is_never_tried() -> None:
    assert slot_order({}, 2, 0, random.Random(3)) in ([0, 1], [1, 0])


# ------------------------------------------------------------------ scopes
def test_a_task_without_limits_on_an_unlimited_queue_needs_nothing() -> None:
    assert plan("acme", "echo", "default", TaskLimits(), LimitsState()).empty
    other = LimitsState(queues={"emails": Limits(max_concurrency=1)})
    assert plan("acme", "echo", "default", TaskLimits(), other) == Plan()


def test_scopes_of_a_tasks_own_limits_are_its_tenants() -> None:
    own = TaskLimits("cust-1", 2, "10/s", "api")
    got = plan("acme", "sync", "default", own, LimitsState())
    assert got.slots == (("key:acme:cust-1", 2),)
    assert got.buckets == (("key:acme:api", Rate(10, 1000)),)
    # Without keys: the tenant's tasks of that name.
    bare = plan("acme", "sync", "default", TaskLimits(None, 3, "5/m", None), LimitsState())
    assert bare.slots == (("task:acme:sync", 3),)
    assert bare.buckets == (("task:acme:sync", Rate(5, 60_000)),)


def test_operator_limits_count_every_tenants_tasks_of_the_queue_or_name() -> None:
    state = LimitsState(
        queues={"default": Limits(4, "100/s")},
        task_names={"sync": Limits(rate_limit="1/s")},
    )
    got = plan("acme", "sync", "default", TaskLimits("c", 1), state)
    assert got.slots == (("key:acme:c", 1), ("queue:default", 4))
    assert got.buckets == (("queue:default", Rate(100, 1000)), ("name:sync", Rate(1, 1000)))


# ------------------------------------------------------------------ waits
@pytest.mark.parametrize("reason", [WaitReason.CONCURRENCY, WaitReason.RATE_LIMITED])
def test_limit_waits_start_short_and_grow_to_their_cap(reason: WaitReason) -> None:
    rng = random.Random(7)
    assert all(1 <= wait_delay(reason, 0, 10_000, rng) <= 2 for _ in range(50))
    cap = WAIT_CAPS[reason]
    late = [wait_delay(reason, 0, 3_600_000, rng) for _ in range(50)]
    assert all(cap <= d <= 2 * cap for d in late)
    assert WAIT_CAPS[WaitReason.CONCURRENCY] == 30


class Reads:
    def __init__(self) -> None:
        self.count = 0
        self.fail = False

    def __call__(self) -> LimitsState:
        self.count += 1
        if self.fail:
            raise OSError("throttled")
        return LimitsState(queues={"default": Limits(max_concurrency=self.count)})


def test_the_limits_cache_reads_once_per_ttl_and_keeps_the_last_on_failure() -> None:
    now = [0]
    reads = Reads()
    cache = TtlCache(reads, LimitsState(), ttl_ms=5_000, clock=lambda: now[0])
    assert cache.get().queues["default"].max_concurrency == 1
    now[0] = 4_999
    cache.get()
    assert reads.count == 1
    now[0] = 5_000
    reads.fail = True
    assert cache.get().queues["default"].max_concurrency == 1  # the last one known
    assert reads.count == 2


# ------------------------------------------------------------------ messages
def test_the_message_carries_the_tasks_limits_and_its_paid_token() -> None:
    msg = TaskMessage("t1", "acme", name="sync", limits=TaskLimits("c", 2, "10/s", None))
    body = msg.encode()
    assert '"ck":"c"' in body and '"mc":2' in body and '"rl":"10/s"' in body
    assert "rk" not in body and "rp" not in body
    assert TaskMessage.decode(body) == msg
    paid = TaskMessage("t1", "acme", rate_paid_ms=123)
    assert TaskMessage.decode(paid.encode()) == paid
    # A task without limits sends what it sent before.
    assert TaskMessage("t1", "acme").encode() == '{"id":"t1","t":"acme"}'


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('{"id":"t","mc":0}', "not a concurrency limit"),
        ('{"id":"t","rl":"3/w"}', "unknown rate unit"),
        ('{"id":"t","ck":5}', "ck is not a string"),
    ],
)
def test_a_message_with_broken_limits_is_malformed(body: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        TaskMessage.decode(body)


# ------------------------------------------------------------------ bad input
def _field_of(info: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": 1001}, "max_concurrency"),
        ({"rate_limit": "10/w"}, "rate_limit"),
        ({"concurrency_key": "k" * 257}, "concurrency_key"),
        ({"rate_limit_key": ""}, "rate_limit_key"),
    ],
)
def test_bad_limits_in_a_request_name_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        TaskRequest.model_validate({"name": "t", **fields})
    assert _field_of(info) == {field}


def test_a_request_keeps_its_rate_in_canonical_form() -> None:
    assert TaskRequest(name="t", rate_limit="10 / s").rate_limit == "10/s"
    assert TaskOptions(rate_limit="1000/h", max_concurrency=2).rate_limit == "1000/h"


def test_task_options_take_limits_and_refuse_bad_ones() -> None:
    @task("limits.sync", max_concurrency=2, rate_limit="5/s")
    def sync(payload: object) -> None: ...

    req = sync.with_options(concurrency_key="cust-9").request({"x": 1})
    assert (req.concurrency_key, req.max_concurrency, req.rate_limit) == ("cust-9", 2, "5/s")
    with pytest.raises(ConfigError, match="rate_limit"):
        task("limits.bad", rate_limit="5/fortnight")(lambda p: p)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["enqueue", "t", "--max-concurrency", "0"], "--max-concurrency: must be 1 to 1000"),
        (["enqueue", "t", "--rate-limit", "3/w"], "--rate-limit: unknown rate unit 'w'"),
        (["enqueue", "t", "--concurrency-key", "k" * 257], "a key has 1 to 256 characters"),
        (["queues", "limit", "default", "--rate-limit", "x"], "--rate-limit: 'x' is not a rate"),
    ],
)
def test_bad_limits_on_the_command_line_exit_2_with_a_sentence(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parser().parse_args(argv)
    assert info.value.code == 2
    assert says in capsys.readouterr().err
