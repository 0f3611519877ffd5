"""Sans-I/O PostgreSQL protocol 3.0 codec: framing, startup packets, messages, SQLSTATEs.

Must not import asyncio or sockets.
"""
