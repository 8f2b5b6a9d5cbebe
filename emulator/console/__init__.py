"""The web console of the local cloud: provisioning, enrollments, hubs, devices and drills in a page.

Owns: the console's listener and its login token (`server`), its routes (`api`), the live feed of
what happens (`feed`, bounded: a browser never slows a device), the policy questions asked
without registering anything (`policy_lab`, pure), the narrow seams it reads and acts through
(`sources`: the operator API in-process, the hubs' service API, the Functions app's admin
routes), and the page itself (`static/`: plain HTML, CSS and JavaScript, no build step, nothing
fetched from elsewhere).

Does not own: what its actions change (`dps`, `hub`, `faults`, through the operator and service
APIs, so effects are those of the commands), nor the events it shows (`activity`).
"""

from emulator.console.server import ConsoleServer

__all__ = ["ConsoleServer"]
