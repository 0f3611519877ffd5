"""The only socket code: listener, client<->upstream pump, TLS, cancel routing, shutdown.

Must not make policy decisions itself.
"""
