"""The chaos benchmark's fault mix (loadtests/chaos.py) and its command line."""

from __future__ import annotations

import math

import pytest
from loadtests.chaos import FAULT_KINDS, fault_spec, main

from stratoq.local.faults import KINDS, parse_spec


def test_the_spec_gives_every_kind_an_equal_share_of_the_total_rate_on_each_service() -> None:
    rules = parse_spec(fault_spec(0.05))
    assert set(FAULT_KINDS) == set(KINDS)
    for service in ("dynamodb", "sqs"):
        mine = [r for r in rules if r.service == service and r.action == "*"]
        assert [r.kind for r in mine] == list(FAULT_KINDS)
        # Rules are tried in order; a rule applies if none before it drew its rate.
        untouched, shares = 1.0, []
        for rule in mine:
            shares.append(untouched * rule.rate)
            untouched *= 1 - rule.rate
        assert all(math.isclose(s, 0.05 / len(KINDS), rel_tol=1e-4) for s in shares)
        assert math.isclose(1 - untouched, 0.05, rel_tol=1e-4)


@pytest.mark.parametrize("argv", [["--tasks", "0"], ["--fault-rate", "1.5"], ["--kill-every", "0"]])
def test_bad_arguments_exit_2_with_a_sentence(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "--tasks must be positive, --fault-rate in [0, 1)" in capsys.readouterr().err
