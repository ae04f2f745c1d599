"""Pure parts of concurrency and rate limits (issue 19, items 1 and 2): rates, the token
bucket's math, which slots to try, which scopes limit a task, the waits, the message's
fields, and bad input refused naming the field (model, options, CLI)."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from stratoq.adapters.transport import TaskMessage
from stratoq.cli import main as cli
from stratoq.core.errors import ConfigError
from stratoq.core.limits import (
    Bucket,
    Limits,
    LimitsState,
    Plan,
    Rate,
    TaskLimits,
    TtlCache,
    earliest_end,
    parse_rate,
    plan,
    refill,
    reserve,
    slot_order,
)
from stratoq.core.models import TaskRequest
from stratoq.core.policy import WAIT_CAPS, WaitReason, wait_delay
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


def test_a_bucket_holds_one_seconds_worth_at_least_one() -> None:
    assert parse_rate("10/s").burst == 10
    assert parse_rate("1000/h").burst == 1  # smooth: one every 3.6 s, not 1000 at once
    assert parse_rate("60/m").burst == 1


# ------------------------------------------------------------------ the bucket
def test_a_new_bucket_lets_one_task_start_at_once_then_spaces_the_rest() -> None:
    rate = parse_rate("10/s")
    bucket, wait = reserve(None, rate, 5_000)
    assert (bucket, wait) == (Bucket(0.0, 5_000), 0)
    waits = []
    for _ in range(5):
        bucket, wait = reserve(bucket, rate, 5_000)
        waits.append(wait)
    # Each waiter gets its own token time, 100 ms apart: none has to poll.
    assert waits == [100, 200, 300, 400, 500]
    assert bucket.tokens == pytest.approx(-5)


def test_refill_accrues_with_time_up_to_the_burst_and_never_goes_back() -> None:
    rate = parse_rate("10/s")
    assert refill(Bucket(-2.0, 1_000), rate, 1_300) == pytest.approx(1.0)
    assert refill(Bucket(0.0, 1_000), rate, 60_000) == 10  # one second's worth at most
    # Another worker's clock behind the last write adds nothing, takes nothing away.
    assert refill(Bucket(3.0, 1_000), rate, 900) == 3.0
    bucket, wait = reserve(Bucket(3.0, 1_000), rate, 900)
    assert (bucket.at_ms, wait) == (1_000, 0)


def test_a_promised_token_comes_due_after_the_deficit_at_the_rate() -> None:
    rate = parse_rate("60/m")  # one a second
    bucket, wait = reserve(Bucket(-2.5, 10_000), rate, 10_000)
    assert wait == 3_500
    assert bucket.tokens == pytest.approx(-3.5)


def test_starts_over_any_window_stay_within_the_rate_plus_the_burst() -> None:
    # 200 tasks arriving together at 10/s: start times (now + wait) are 100 ms apart.
    rate = parse_rate("10/s")
    bucket: Bucket | None = None
    starts = []
    for _ in range(200):
        bucket, wait = reserve(bucket, rate, 0)
        starts.append(wait)
    for begin in range(0, 19_000, 500):
        in_window = [s for s in starts if begin <= s < begin + 1000]
        assert len(in_window) <= rate.burst


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
