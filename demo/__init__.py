"""``make demo``: the whole flow on one machine (see demo/__main__.py); ``python -m demo.screenshots``:
the web console's screenshots for the README (demo/screenshots.py); both start their local cloud
with demo/cloud.py."""
