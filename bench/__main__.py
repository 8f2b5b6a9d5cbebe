"""Run every benchmark and print Markdown tables (the README quotes the latest run)."""

from __future__ import annotations

import argparse
import importlib
import platform
import sys

SUITES = {
    "allocation": "bench.allocation_bench",
    "dps": "bench.dps_bench",
    "console": "bench.console_bench",
    "durability": "bench.durability_bench",
    "emulator": "bench.emulator_bench",
    "fleet": "bench.fleet_bench",
    "import": "bench.import_bench",
    "scale": "bench.scale_bench",
    "webhook": "bench.webhook_bench",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("suites", nargs="*", choices=[*SUITES, []], help="default: all")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    args = parser.parse_args(argv)
    print(f"Python {platform.python_version()} on {platform.machine()}, {platform.system()}\n")
    for name in args.suites or list(SUITES):
        module = importlib.import_module(SUITES[name])
        print(module.run(quick=args.quick))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
