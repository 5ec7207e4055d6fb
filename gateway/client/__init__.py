"""The gateway's client: profiles, HTTP, push, pull, access and audit commands.

It needs only the base install (click, requests, rich, cryptography, PyNaCl) and the
shared pure libraries :mod:`gateway.age`, :mod:`gateway.audit` (``merkle``, ``note``,
``leaf``, ``verify``) and :mod:`gateway.manifest`; nothing here imports the server stack.
"""
