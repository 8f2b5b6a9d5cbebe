"""Development tools shared by the local cloud, the simulator, the demo, tests and benchmarks.

Never deployed (`.funcignore` leaves it out) and never imported by the Functions app. What it owns:

- `files`: the one writer of files that hold secrets (atomic, 0600 from the first byte).
- `keys`: the one generator of keys and tokens.
- `urls`: the one URL masker (a query string can carry a function key or a SAS signature).
- `checkout`: where this checkout is (examples, `node_modules`, the default state directory).
- `cli`: what every command-line entry point shares (a closed stdout ends it quietly).
- `azurite`: Azurite's Table service as a child process.
"""
