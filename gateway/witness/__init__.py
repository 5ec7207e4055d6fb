"""A C2SP tlog-witness program: cosigns the checkpoints of the logs it lists.

``loglist`` reads the list of logs (``logs/v0``), ``state`` keeps each log's latest cosigned
checkpoint durably and under a lock, ``core`` decides each add-checkpoint request as
c2sp.org/tlog-witness says, ``app`` is its HTTP interface, ``server`` runs it under gunicorn,
``cli`` is the ``gateway witness`` command group. It depends only on the pure formats of
:mod:`gateway.audit`, never on the gateway's database or server.
"""
