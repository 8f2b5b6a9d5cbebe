"""A local host for this repository's Azure Functions app, without Core Tools.

Owns: serving a `FunctionApp`'s HTTP and Event Grid triggers with Azure's key checks and status
codes (`host`, on `web.server`), and the app's settings as `func start` reads them from
`local.settings.json` (`settings`).

Does not own: the app (`function_app.py`), its readiness rules (`webhook.readiness`).
"""
