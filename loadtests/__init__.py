"""Locust load tests over HTTP only: the user, the ramp shape, the SLO gate and the runner behind `make loadtest`."""
