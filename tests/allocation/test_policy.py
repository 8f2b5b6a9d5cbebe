"""Loading policy files: valid files load, invalid ones name file, rule and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from allocation.errors import PolicyError
from allocation.policy import load_policy
from allocation.rules import DEFAULT_RULE_NAME, IdMatchKind, Strategy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*policy*.toml")), ids=lambda p: p.name)
def test_example_policies_load(path: Path) -> None:
    """Every policy shipped in examples/ (named *policy*.toml) is valid."""
    policy = load_policy(path.read_text(), source=path.name)
    assert policy.rules[-1].name == DEFAULT_RULE_NAME


def test_tutorial_policy_shape() -> None:
    """The tutorial policy has two suffix rules and denies everything else."""
    policy = load_policy(
        (EXAMPLES / "tutorial-policy.toml").read_text(), source="tutorial-policy.toml"
    )
    toasters, heatpumps, default = policy.rules
    assert toasters.registration_id is not None
    assert toasters.registration_id.kind is IdMatchKind.SUFFIX
    assert heatpumps.hub_patterns == ("*-heatpumps-*",)
    assert default.deny == "Unrecognized device registration"


def test_defaults_apply_to_rules() -> None:
    """A rule without a strategy takes defaults.strategy; 'first' is an alias of static."""
    policy = load_policy(
        '[defaults]\nstrategy = "sticky"\n[[rules]]\nname = "a"\n[[rules]]\nname = "b"\nstrategy = "first"\n',
        source="p.toml",
    )
    assert policy.rules[0].strategy is Strategy.STICKY
    assert policy.rules[1].strategy is Strategy.STATIC


def test_weights_are_read() -> None:
    """Weights map host-name globs to numbers; the first matching glob wins, default 1."""
    policy = load_policy('[weights]\n"big-*" = 3\n"*" = 0.5\n', source="p.toml")
    assert policy.weight("BIG-1.azure-devices.net") == 3.0
    assert policy.weight("small.azure-devices.net") == 0.5
    assert load_policy("", source="p.toml").weight("any") == 1.0


@pytest.mark.parametrize(
    ("text", "location", "fragment"),
    [
        ("rules = [", "file", "not valid TOML"),
        ("colour = 1", "top level", "unknown key 'colour'"),
        ("version = 2", "version", "expected 1"),
        ('[defaults]\nstrategy = "random"', "defaults.strategy", "expected one of"),
        ('[defaults]\nunmatched = "allow"', "defaults.unmatched", "deny"),
        ('[weights]\n"a*" = -1', "weights.'a*'", "0 to 100"),
        ('[weights]\n"a*" = true', "weights.'a*'", "0 to 100"),
        ("rules = 3", "rules", "array of tables"),
        ('[[rules]]\nname = "r"\nhub = ["x"]', "rules[0] (r)", "unknown key 'hub'"),
        ('[[rules]]\nname = "r"\nhubs = []', "rules[0] (r).hubs", "non-empty list"),
        ('[[rules]]\nname = "r"\nstrategy = "rr"', "rules[0] (r).strategy", "expected one of"),
        (
            '[[rules]]\n[rules.match]\nregistration_id = { ends = "x" }',
            "rules[0].match.registration_id",
            "exactly one",
        ),
        (
            '[[rules]]\n[rules.match]\nregistration_id = { prefix = "a", suffix = "b" }',
            "rules[0].match.registration_id",
            "exactly one",
        ),
        (
            '[[rules]]\n[rules.match]\nregistration_id = { regex = "(" }',
            "rules[0].match.registration_id.regex",
            "regular",
        ),
        (
            "[[rules]]\n[rules.match]\nenrollment_group = []",
            "rules[0].match.enrollment_group",
            "group id",
        ),
        (
            '[[rules]]\n[rules.match]\nreprovisioning = "yes"',
            "rules[0].match.reprovisioning",
            "true or false",
        ),
        (
            '[[rules]]\n[rules.match]\npayload = { "a..b" = 1 }',
            "rules[0].match.payload.a..b",
            "dotted path",
        ),
        (
            '[[rules]]\n[rules.match]\npayload = { "a" = { like = 1 } }',
            "rules[0].match.payload.a",
            "equals, matches",
        ),
        (
            '[[rules]]\n[rules.match]\npayload = { "a" = { matches = "[" } }',
            "rules[0].match.payload.a.matches",
            "regular",
        ),
        ("[[rules]]\n[rules.match]\ncolour = 1", "rules[0].match", "unknown key 'colour'"),
        (
            '[[rules]]\nname = "r"\ndeny = "no"\nhubs = ["*"]',
            "rules[0] (r).deny",
            "cannot also set hubs",
        ),
        ('[[rules]]\nname = "r"\ndeny = ""', "rules[0] (r).deny", "non-empty string"),
        (
            '[[rules]]\nname = "r"\n[rules.initial_twin]\nreported = {}',
            "rules[0] (r).initial_twin",
            "unknown key",
        ),
        (
            '[[rules]]\nname = "r"\n[rules.initial_twin]\ntags = { a = "{colour}" }',
            "rules[0] (r).initial_twin.tags.a",
            "unknown placeholder {colour}",
        ),
        (
            '[[rules]]\nname = "r"\npayload = { a = "{payload}" }',
            "rules[0] (r).payload.a",
            "needs a field",
        ),
        (
            '[[rules]]\nname = "r"\npayload = { a = "{hub.x}" }',
            "rules[0] (r).payload.a",
            "has no fields",
        ),
        (
            '[[rules]]\nname = "r"\npayload = { a = "{hub:>3}" }',
            "rules[0] (r).payload.a",
            "format spec",
        ),
        (
            '[[rules]]\nname = "r"\npayload = { a = "{hub" }',
            "rules[0] (r).payload.a",
            "placeholder syntax",
        ),
        (
            '[[rules]]\nname = "r"\npayload = { a = "{match.site}" }',
            "rules[0] (r)",
            "needs match.registration_id",
        ),
        (
            '[[rules]]\nname = "r"\npayload = { a = "{match.site}" }\n[rules.match]\n'
            'registration_id = { regex = "(?P<zone>.*)" }',
            "rules[0] (r)",
            "names no group",
        ),
        ('[[rules]]\nname = "r"\n[[rules]]\nname = "r"', "rules[1].name", "earlier rule"),
        ('[[rules]]\nname = "r"\npayload = { a = inf }', "rules[0] (r).payload.a", "finite"),
        (
            '[[rules]]\nname = "r"\n[rules.initial_twin]\ndesired = { t = [1.5, nan] }',
            "rules[0] (r).initial_twin.properties.desired.t[1]",
            "JSON has no inf or nan",
        ),
    ],
)
def test_invalid_policy_names_location(text: str, location: str, fragment: str) -> None:
    """Each invalid policy raises PolicyError naming the file, the rule and the field."""
    with pytest.raises(PolicyError) as raised:
        load_policy(text, source="policy.toml")
    assert raised.value.source == "policy.toml"
    assert raised.value.location == location
    assert fragment in raised.value.message
    assert str(raised.value).startswith(f"policy.toml: {location}: ")


def test_escaped_braces_are_literal() -> None:
    """Doubled braces in a template stand for literal braces."""
    policy = load_policy('[[rules]]\nname = "r"\npayload = { a = "{{x}}" }\n', source="p.toml")
    template = policy.rules[0].payload
    assert template is not None
    assert template.render({}) == {"a": "{x}"}
