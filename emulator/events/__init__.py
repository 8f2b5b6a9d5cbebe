"""Device lifecycle events on their way out: Event Grid's form and at-least-once delivery.

Owns: shaping a hub's `LifecycleEvent` as IoT Hub's Event Grid event (`eventgrid`, pure) and posting
them with a bounded queue and retries (`delivery`, through `web.client`).

Does not own: producing the events (`hub`), or what receives them (the Functions app).
"""
