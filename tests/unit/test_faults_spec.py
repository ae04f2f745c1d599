"""The fault injector's spec (local/faults.py) and `stratoq dev --faults`."""

from __future__ import annotations

import pytest

from stratoq.cli import main as cli
from stratoq.local.faults import FaultInjector, FaultRule, FaultSpecError, parse_spec


def test_a_spec_names_service_action_kind_rate_and_options() -> None:
    rules = parse_spec(
        "dynamodb:UpdateItem=throttle:0.05, sqs:*=reset:0.02,"
        "*:*=delay:0.1:seconds=0.5:times=3,dynamodb:Query=lost:1:match=listing"
    )
    assert [(r.service, r.action, r.kind, r.rate) for r in rules] == [
        ("dynamodb", "UpdateItem", "throttle", 0.05),
        ("sqs", "*", "reset", 0.02),
        ("*", "*", "delay", 0.1),
        ("dynamodb", "Query", "lost", 1.0),
    ]
    assert (rules[2].seconds, rules[2].times, rules[3].match) == (0.5, 3, "listing")
    assert parse_spec("") == []
    assert parse_spec("sqs:SendMessage=503") == [FaultRule("sqs", "SendMessage", "503", 1.0)]


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("dynamodb=throttle:0.1", "expected SERVICE:ACTION=KIND:RATE"),
        ("dynamodb:*=explode:0.1", "kind 'explode' is not one of throttle"),
        ("dynamodb:*=throttle:lots", "rate 'lots' is not a number"),
        ("dynamodb:*=throttle:1.5", "rate must be between 0 and 1"),
        ("dynamodb:*=throttle:1:often=2", "unknown option 'often=2'"),
        ("dynamodb:*=delay:1:seconds=x", "seconds needs a number"),
    ],
)
def test_a_bad_spec_is_a_sentence_naming_the_rule(spec: str, says: str) -> None:
    with pytest.raises(FaultSpecError, match=says.replace("(", r"\(")):
        parse_spec(spec)


def test_choices_repeat_with_a_seed_and_times_caps_them() -> None:
    def run(seed: int) -> list[bool]:
        injector = FaultInjector("dynamodb:*=503:0.5,sqs:*=reset:1:times=2", seed=seed)
        picks = [injector.pick("dynamodb", "GetItem", b"") is not None for _ in range(40)]
        sqs = [injector.pick("sqs", "SendMessage", b"") for _ in range(5)]
        assert [r is not None for r in sqs] == [True, True, False, False, False]
        assert injector.state()["rules"][1]["injected"] == 2
        return picks

    assert run(7) == run(7)
    assert run(7) != run(8)
    assert 5 < sum(run(7)) < 35


def test_dev_refuses_a_bad_fault_spec_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["dev", "--faults", "dynamodb:*=explode"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --faults: fault rule 'dynamodb:*=explode': kind 'explode'" in err
    assert "Traceback" not in err
