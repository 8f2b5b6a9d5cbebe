"""The allocation webhook's shell: HTTP bodies in, decisions out, nothing secret in the log.

``function_app.py`` turns ``func.HttpRequest`` into bytes and ``Answer`` back into
``func.HttpResponse``; everything in between lives here so the same handler serves the Functions
host, the emulator's local host and the tests.
"""
