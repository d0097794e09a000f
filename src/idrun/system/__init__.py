"""The system layer: system calls, /proc, shadow's helpers, host facts,
preconditions, the lease registry, errno diagnosis.

May import the foundation and mapping.
"""
