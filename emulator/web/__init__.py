"""The emulator's HTTP: one server stack and one client.

Owns: serving ASGI apps (Starlette) on uvicorn over h11, with the limits every listener shares
(`server`), and the one outbound client, httpx, for webhooks and event delivery (`client`).

Does not own: any route or answer; those are the service API's, the operator API's and the
Functions host's.
"""
