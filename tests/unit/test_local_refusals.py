"""A local run asks its engine in its own process; a refusal must reach it as a client
of the server is told it (client/refusals.as_answered), so the command names the same
part of the job and exits with the same code either way."""

from __future__ import annotations

from localcompute.cli import exits
from localcompute.client.refusals import as_answered
from localcompute.core.errors import (
    AlgorithmRefusedError,
    InputRefusedError,
    RefusedError,
    RemoteError,
)

DIDS = ["did:op:" + "a" * 64, "did:op:" + "b" * 64]


def test_an_inputs_refusal_names_the_input_by_its_did() -> None:
    answered = as_answered(RefusedError({"datasets[1]": "did_not_found"}), DIDS)
    assert isinstance(answered, InputRefusedError) and answered.status == 400
    assert answered.message.startswith(f"dataset {DIDS[1]}: did_not_found")
    assert exits.code_for(answered) == exits.EXIT_INPUT_UNAVAILABLE


def test_the_algorithms_refusal_is_the_algorithms() -> None:
    answered = as_answered(RefusedError({"dataset": "no_raw_algo_allowed"}), DIDS)
    assert isinstance(answered, AlgorithmRefusedError)
    assert exits.code_for(answered) == exits.EXIT_ALGORITHM_UNAVAILABLE


def test_a_sentence_stays_a_sentence() -> None:
    answered = as_answered(RefusedError("environment local is full"), DIDS)
    assert type(answered) is RemoteError and answered.message == "environment local is full"
    assert exits.code_for(answered) == exits.EXIT_FAILED
