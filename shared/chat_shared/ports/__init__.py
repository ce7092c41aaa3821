"""Storage ports: the Protocols each service's domain code talks to.

A port says what the domain needs from storage; every engine (SQLite, Cassandra)
has one adapter implementing it, so the domain never names an engine.
"""
