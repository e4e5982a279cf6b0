"""Engine, sessions, models and migrations. Dialect differences live here only."""

import logging

# aiosqlite logs every statement with its parameters at DEBUG: contacts' full
# numbers. Its logger stays at INFO whatever level the application logs at.
logging.getLogger("aiosqlite").setLevel(logging.INFO)
