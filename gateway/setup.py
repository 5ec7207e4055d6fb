"""Former name of :mod:`gateway.bootstrap`, kept only while callers move to that name."""

from gateway.bootstrap import *  # noqa: F403
