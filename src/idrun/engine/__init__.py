"""The launch engine: the child spec, process ownership, the failure report,
the child's steps, mounts, the init, the status fd, the pre-launch.

May import the foundation, options, mapping and system.
"""
