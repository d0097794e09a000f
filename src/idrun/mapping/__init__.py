"""The mapping layer: pure parsing, range algebra, resolution and the plan.

Imports only the foundation (errors, keywords, jsonout); no I/O on import.
"""
