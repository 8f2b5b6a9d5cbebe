"""The console's policy questions: one decision without registering, and what moves with a hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocation import default_policy, load_policy
from emulator.console.policy_lab import LabError, Question, decide_command, hub_moves, try_policy
from tests.strategies import json_values, registration_ids

ROOT = Path(__file__).resolve().parents[3]
TUTORIAL = load_policy((ROOT / "examples" / "tutorial-policy.toml").read_text(), source="tutorial")
TOASTERS = "contoso-toasters-hub.azure-devices.net"
HEATPUMPS = "contoso-heatpumps-hub.azure-devices.net"
THREE = ["a.azure-devices.net", "b.azure-devices.net", "c.azure-devices.net"]


def test_the_tutorial_policy_decides_rule_hub_and_twin() -> None:
    """A toaster gets the toasters rule, its hub and the rule's initial twin; a stranger is denied
    with the policy's reason."""
    question = Question(
        registration_id="breakroom499-contoso-tstrsd-007",
        linked_hubs=[TOASTERS, HEATPUMPS],
        group="contoso-custom",
    )
    decision = try_policy(TUTORIAL, question)
    assert decision["outcome"] == "assigned"
    assert (decision["rule"], decision["hub"], decision["strategy"]) == (
        "toasters",
        TOASTERS,
        "hash",
    )
    assert decision["initial_twin"]["tags"] == {"deviceType": "toaster"}
    denied = try_policy(TUTORIAL, Question(registration_id="stranger", linked_hubs=[TOASTERS]))
    assert denied == {
        "outcome": "denied",
        "rule": "(default)",
        "reason": "Unrecognized device registration",
    }


def test_the_equivalent_command_asks_the_same_question() -> None:
    """`python -m webhook decide` with the same id, hubs, group and payload."""
    question = Question(
        registration_id="dev 1", linked_hubs=[TOASTERS], group="g", payload={"model": "x"}
    )
    assert decide_command("examples/tutorial-policy.toml", question) == (
        "python -m webhook decide examples/tutorial-policy.toml --registration-id 'dev 1' "
        f'--hub {TOASTERS} --group g --payload \'{{"model":"x"}}\''
    )


def test_adding_a_hub_moves_only_some_devices_all_to_the_new_hub() -> None:
    """Consistent hashing: a fourth hub takes about a quarter of the ids, from every hub, and no
    id moves between the old hubs."""
    result = hub_moves(
        default_policy(),
        template="dev-{n}",
        count=2000,
        linked_hubs=THREE,
        add="d.azure-devices.net",
    )
    assert result["before"].keys() == set(THREE)
    assert {flow["to"] for flow in result["flows"]} == {"d.azure-devices.net"}
    assert 300 < result["moved"] < 700
    assert result["after"]["d.azure-devices.net"] == result["moved"]


def test_draining_a_hub_moves_exactly_its_devices() -> None:
    """Drained: every id it had moves to the others, no other id moves."""
    result = hub_moves(
        default_policy(), template="dev-{n}", count=1000, linked_hubs=THREE, drain=THREE[1]
    )
    assert result["moved"] == result["before"][THREE[1]]
    assert {flow["from"] for flow in result["flows"]} == {THREE[1]}
    assert THREE[1] not in result["after"]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"template": "no-placeholder", "add": "d.net"}, "template"),
        ({"template": "x{n}", "count": 0, "add": "d.net"}, "count"),
        ({"template": "x{n}", "count": 10**6, "add": "d.net"}, "count"),
        ({"template": "x{n}"}, "change"),
        ({"template": "x{n}", "add": "d.net", "drain": THREE[0]}, "change"),
        ({"template": "x{n}", "add": THREE[0]}, "add"),
        ({"template": "x{n}", "add": "not a host"}, "add"),
        ({"template": "x{n}", "drain": "elsewhere.net"}, "drain"),
    ],
)
def test_bad_questions_name_their_field(arguments: dict[str, Any], field: str) -> None:
    """Each refusal names the field and what was expected."""
    arguments.setdefault("count", 10)
    with pytest.raises(LabError) as raised:
        hub_moves(default_policy(), linked_hubs=THREE, **arguments)
    assert raised.value.field == field
    assert "expected" in str(raised.value)


@settings(max_examples=150, deadline=None)
@given(
    registration_id=st.one_of(registration_ids(), st.text(max_size=200)),
    payload=st.one_of(st.none(), json_values),
    group=st.one_of(st.none(), st.text(max_size=40)),
    current=st.one_of(st.none(), st.sampled_from([TOASTERS, HEATPUMPS, "other.net"])),
)
def test_any_question_gets_a_decision_or_a_named_refusal(
    registration_id: str, payload: Any, group: str | None, current: str | None
) -> None:
    """Whatever the page sends, the lab answers a decision or a LabError, nothing else."""
    question = Question(
        registration_id=registration_id,
        linked_hubs=[TOASTERS, HEATPUMPS],
        group=group,
        payload=payload,
        current_hub=current,
    )
    try:
        decision = try_policy(TUTORIAL, question)
    except LabError as error:
        refused: LabError | None = error
    else:
        refused = None
    if refused is not None:
        assert refused.field
        return
    assert decision["outcome"] in ("assigned", "denied")
    if decision["outcome"] == "assigned":
        assert decision["hub"] in (TOASTERS, HEATPUMPS)


@settings(max_examples=60, deadline=None)
@given(
    template=st.text(max_size=60).map(lambda text: text + "{n}"),
    count=st.integers(-5, 60),
    add=st.one_of(st.none(), st.text(max_size=30)),
)
def test_any_moves_question_gets_an_answer_or_a_named_refusal(
    template: str, count: int, add: str | None
) -> None:
    """Templates, counts and hub names of any kind: counts that add up, or a LabError."""
    try:
        result = hub_moves(
            TUTORIAL,
            template=template,
            count=count,
            linked_hubs=[TOASTERS],
            add=add,
            drain=None if add is not None else TOASTERS,
        )
    except LabError as error:
        refused: LabError | None = error
    else:
        refused = None
    if refused is not None:
        assert refused.field in ("template", "count", "add", "change", "drain")
        return
    assert sum(result["before"].values()) == sum(result["after"].values()) == count
    assert result["moved"] == sum(flow["count"] for flow in result["flows"])
