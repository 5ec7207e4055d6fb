"""The gateway's domain: services that take typed inputs and a caller, and return domain objects.

Nothing here knows of HTTP: no routes, headers or responses. Authorisation is asked of
:mod:`gateway.authz`, every access is recorded through :mod:`gateway.events`, and the
object store's errors mean one thing everywhere (:mod:`gateway.services.objects`).
"""
