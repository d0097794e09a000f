"""The command line front end: the launcher, map, check, show, shared options,
help text, man page and completion generators.

May import every layer below it.
"""
