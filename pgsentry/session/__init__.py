"""Per-connection protocol state machine: phase, transaction status, batch boundaries.

Decides what to forward, reply or hold. Must not do I/O or know about HTTP.
"""
