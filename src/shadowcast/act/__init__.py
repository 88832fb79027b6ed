"""Actuation: apply a checked Plan through a pluggable Actuator, with rollback and audit."""
