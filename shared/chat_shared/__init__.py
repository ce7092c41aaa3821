"""Shared library of the chat services.

Settings, token verification, store access, the message ingest, Redis helpers and the
observability kit that every service mounts. Nothing here imports a service package.
"""
