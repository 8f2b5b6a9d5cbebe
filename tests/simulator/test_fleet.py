"""`python -m simulator fleet`: the pure summary, progress line, registration ids and usage errors,
then 20 devices end to end against the emulator on 127.45.3.1."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.__main__ import main
from simulator.fleet import (
    CLIENTS_PER_PROCESS,
    DeviceOutcome,
    Progress,
    busy_delay,
    fleet_ids,
    percentile,
    render,
    spread,
    summarize,
)
from tests.emulator.e2e.harness import RunningEmulator, options
from tests.simulator.local_cloud import CONFIG, GROUP_PRIMARY, GROUP_SECONDARY, HUBS, secrets_in

BIND = "127.45.3.1"


@given(st.lists(st.floats(0, 100), min_size=1), st.floats(0.01, 1.0))
def test_percentile_is_a_member_at_or_above_the_fraction(
    values: list[float], fraction: float
) -> None:
    """Nearest rank: a value of the list with at least `fraction` of the values at or below it."""
    result = percentile(values, fraction)
    assert result in values
    assert sum(value <= result for value in values) >= fraction * len(values)


def test_summarize_counts_hubs_rules_latency_and_failures() -> None:
    """Hubs and rules count successes only; failures count by reason; p50 of 1..4 s is 2 s."""
    outcomes = [
        DeviceOutcome(registration_id=f"d{n}", hub=hub, rule=rule, provisioning_seconds=float(n))
        for n, hub, rule in [
            (1, "a", "toasters"),
            (2, "a", "toasters"),
            (3, "b", None),
            (4, "a", "x"),
        ]
    ] + [DeviceOutcome(registration_id="d5", failure="dps: denied")]
    summary = summarize(outcomes, seconds=2.0)
    assert (summary.devices, summary.succeeded, summary.failed) == (5, 4, 1)
    assert summary.per_hub == (("a", 3), ("b", 1))
    assert summary.per_rule == (("toasters", 2), ("(not reported)", 1), ("x", 1))
    assert (summary.latency_p50, summary.latency_p99) == (2.0, 4.0)
    assert summary.failures == (("dps: denied", 1),)
    assert summary.devices_per_second == 2.0
    text = render(summary)
    assert "4/5 device(s)" in text
    assert "dps: denied" in text
    assert "p50 2.00 s, p95 4.00 s, p99 4.00 s" in text


def test_progress_prints_plain_lines_without_a_terminal() -> None:
    """Not a TTY: one line per 10 %, no carriage returns."""
    stream = io.StringIO()
    progress = Progress(20, stream, tty=False, clock=lambda: 0.0)
    for number in range(20):
        progress.advance(ok=number != 3)
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert len(lines) == 10
    assert lines[-1] == f"[{'#' * 30}] 20/20  failed 1  0.0 s"


def test_progress_redraws_in_place_on_a_terminal() -> None:
    """A TTY: every update rewrites the same line; finish ends it."""
    stream = io.StringIO()
    progress = Progress(3, stream, tty=True, clock=lambda: 0.0)
    for _ in range(3):
        progress.advance(ok=True)
    progress.finish()
    assert stream.getvalue().count("\r") == 3
    assert stream.getvalue().endswith("3/3  failed 0  0.0 s\n")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """The emulator with the test group on BIND."""
    with RunningEmulator(options(tmp_path_factory.mktemp("fleet"), BIND, CONFIG)) as running:
        yield running


def _fleet(emulator: RunningEmulator, *extra: str) -> list[str]:
    return [
        "fleet",
        "--local",
        "--state-dir",
        str(emulator.emulator.options.state_dir),
        "--gateway",
        BIND,
        "--id-scope",
        "0ne00000001",
        *extra,
    ]


@pytest.mark.e2e
def test_fleet_provisions_twenty_devices_across_both_hubs(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """20 devices, 20 at a time: every one registered, on the hashed hubs, 2 messages each."""
    env = {"DPS_GROUP_PRIMARY_KEY": GROUP_PRIMARY, "DPS_GROUP_SECONDARY_KEY": GROUP_SECONDARY}
    code = main(_fleet(emulator, "--count", "20", "--prefix", "fleet-", "--concurrency", "20"), env)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "20/20 device(s)" in out
    assert "failures: none" in out
    hubs = emulator.emulator.hubs
    assert hubs is not None
    placed = {
        hub: emulator.call(
            lambda h=hub: [
                d for d in emulator.emulator.hub(h).device_ids() if d.startswith("fleet-")
            ]
        )
        for hub in HUBS
    }
    assert sum(len(ids) for ids in placed.values()) == 20
    for hub, ids in placed.items():
        if ids:
            assert re.search(rf"^{re.escape(hub)} +{len(ids)}$", out, re.MULTILINE)
    messages = [
        m for hub in HUBS for m in emulator.call(lambda h=hub: emulator.emulator.hub(h).messages)
    ]
    assert len([m for m in messages if m.device_id.startswith("fleet-")]) == 40
    assert f"[{'#' * 30}] 20/20  failed 0" in err
    assert secrets_in(out + err) == []


@pytest.mark.e2e
def test_fleet_with_wrong_group_keys_fails_every_device(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Keys from another group: exit 1 and the failures table says both keys were refused."""
    env = {
        "DPS_GROUP_PRIMARY_KEY": "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
        "DPS_GROUP_SECONDARY_KEY": "CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg=",
    }
    code = main(_fleet(emulator, "--count", "3", "--prefix", "stranger-"), env)
    out, _ = capsys.readouterr()
    assert code == 1
    assert "0/3 device(s)" in out
    assert re.search(r"^dps: both keys refused +3$", out, re.MULTILINE)


def test_fleet_without_group_keys_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """No group keys anywhere: exit 2 naming the flags and the environment variables."""
    assert main(["fleet", "--id-scope", "0ne00000001", "--count", "2"], {}) == 2
    assert "DPS_GROUP_PRIMARY_KEY" in capsys.readouterr().err


# --- registration ids and usage errors (no device is started) -----------------------------------


def test_fleet_ids_pad_the_number_to_counts_width() -> None:
    """{n} becomes the device's number, zero-padded to the width of --count."""
    assert fleet_ids(["sim-{n}"], 3) == ["sim-1", "sim-2", "sim-3"]
    assert fleet_ids(["sim-{n}"], 10)[:2] == ["sim-01", "sim-02"]
    assert fleet_ids(["sim-{n}"], 10)[-1] == "sim-10"
    assert fleet_ids(["{n}-of-many"], 100)[0] == "001-of-many"


def test_fleet_ids_use_the_templates_in_turn() -> None:
    """Several templates: device 1 uses the first, device 2 the second, and round again."""
    assert fleet_ids(["t{n}-contoso-tstrsd-007", "h{n}-contoso-hpsd-088"], 3) == [
        "t1-contoso-tstrsd-007",
        "h2-contoso-hpsd-088",
        "t3-contoso-tstrsd-007",
    ]


_templates = st.lists(
    st.text("abcxyz-", max_size=4).map(lambda head: head + "{n}"), min_size=1, max_size=4
)


@given(_templates, st.integers(1, 3000))
def test_fleet_ids_are_count_distinct_ids_numbered_in_order(
    templates: list[str], count: int
) -> None:
    """count ids, all different, id k from template (k-1) mod len with k at count's width."""
    ids = fleet_ids(templates, count)
    assert len(ids) == count
    assert len(set(ids)) == count
    width = len(str(count))
    for number, registration_id in enumerate(ids, start=1):
        template = templates[(number - 1) % len(templates)]
        assert registration_id == template.replace("{n}", str(number).zfill(width))


KEYS = {"DPS_GROUP_PRIMARY_KEY": GROUP_PRIMARY, "DPS_GROUP_SECONDARY_KEY": GROUP_SECONDARY}


@pytest.mark.parametrize(
    ("extra", "env", "expected"),
    [
        (
            ["--id-scope", "0ne00000001", "--id-template", "toaster-007"],
            KEYS,
            "--id-template 'toaster-007': expected {n} for the number",
        ),
        (
            ["--id-scope", "0ne00000001", "--id-template", "t{n}", "--id-template", "h-007"],
            KEYS,
            "--id-template 'h-007': expected {n}",
        ),
        (
            ["--id-scope", "0ne00000001", "--id-template", "bad id {n}"],
            KEYS,
            "--id-template: character ' ' at position 4 is not allowed",
        ),
        (
            ["--id-scope", "0ne00000001", "--group", "factory"],
            KEYS,
            "--group: only with --local",
        ),
        (
            ["--id-scope", "0ne00000001"],
            {"DPS_GROUP_PRIMARY_KEY": GROUP_PRIMARY},
            "--group-primary-key/--group-secondary-key: give both group keys or neither",
        ),
        (
            ["--id-scope", "0ne00000001", "--group-secondary-key", GROUP_SECONDARY],
            {},
            "--group-primary-key/--group-secondary-key: give both group keys or neither",
        ),
        ([], KEYS, "--id-scope: required (or --local to take it from the local cloud)"),
        (["--id-scope", "0ne00000001", "--count", "0"], KEYS, "--count/--concurrency"),
    ],
)
def test_fleet_usage_errors_name_the_option_and_start_nothing(
    capsys: pytest.CaptureFixture[str], extra: list[str], env: dict[str, str], expected: str
) -> None:
    """Each misuse exits 2 with one line naming the option, before any device or key is used."""
    assert main(["fleet", "--count", "2", *extra], env) == 2
    out, err = capsys.readouterr()
    assert f"fleet: error: {expected}" in err
    assert "device(s)" not in out + err
    assert secrets_in(out + err) == []


def test_fleet_id_template_and_prefix_exclude_each_other(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--id-template with --prefix is an argparse usage error (exit 2)."""
    argv = ["fleet", "--id-scope", "0ne00000001", "--count", "2", "--prefix", "p-"]
    assert main([*argv, "--id-template", "t{n}"], KEYS) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_busy_delay_doubles_from_one_second_up_to_the_cap_scaled_by_jitter() -> None:
    """1, 2, 4, 8, 16 s, then 30 s for good; jitter 0.5 halves each."""
    assert [busy_delay(n, 1.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert busy_delay(3, 0.5) == 2.0


@given(st.integers(1, 5000), st.integers(1, 3000), st.none() | st.integers(1, 40))
def test_spread_runs_every_device_once_within_the_concurrency(
    count: int, concurrency: int, processes: int | None
) -> None:
    """Every device in exactly one worker; shares add up to the fleet's in-flight bound; no
    worker is given more than CLIENTS_PER_PROCESS unless `processes` forces it; none idle."""
    shares = spread(count, concurrency, processes)
    indices = sorted(index for devices, _ in shares for index in devices)
    assert indices == list(range(count))
    assert sum(share for _, share in shares) == min(count, concurrency)
    assert all(share >= 1 and len(devices) >= 1 for devices, share in shares)
    if processes is None:
        assert all(share <= CLIENTS_PER_PROCESS for _, share in shares)


def test_throttled_retries_are_reported_apart_from_failures() -> None:
    """DPS's 429s and CONNACK 3 retries are counted by kind; they are not failures."""
    outcomes = [
        DeviceOutcome(registration_id="a", hub="h", provisioning_seconds=1.0, hub_busy_retries=2),
        DeviceOutcome(registration_id="b", hub="h", provisioning_seconds=1.0, dps_busy_retries=1),
    ]
    summary = summarize(outcomes, seconds=1.0, dps_throttled=5)
    assert summary.failed == 0
    assert summary.throttled_retries == 8
    text = render(summary)
    assert "throttled retries: 8 (not failures)" in text
    assert re.search(r"^dps: 429, retried by the SDK after retry-after +5$", text, re.MULTILINE)
    assert re.search(r"^hub: CONNACK 3, retried by the fleet +2$", text, re.MULTILINE)
    assert "failures: none" in text
    assert "throttled retries: none" in render(summarize(outcomes[:0], seconds=1.0))
