"""The dashboard: server-rendered pages for labs, evaluators and auditors under ``/ui/``.

Design note. The pages call the same services and the same policy (:mod:`gateway.authz`)
as the API, with a :class:`~gateway.caller.Caller` built the same way, so a decision is
made in one place and an act is logged once, whichever door it came through. A principal
signs in once with its gateway token and gets a server-side session (:mod:`.sessions`);
every form carries a CSRF token bound to that session (:mod:`.csrf`); every answer carries
a strict Content-Security-Policy (:mod:`.base`). No page needs JavaScript.

This package's ``__init__`` imports nothing, so the offline report verifier
(:mod:`gateway.web.report`) runs in the client install, without Flask or SQLAlchemy.
"""
