"""idrun's machine-readable output: every ``--json`` document leaves through here.

Each carries ``"schema": SCHEMA_VERSION`` and is described by ``schema.json``
(shipped in the package; ``schema_path()`` finds it). The version changes only
when a field is removed or changes meaning; new fields may appear within one.
"""
from __future__ import annotations

from .errors import EXIT_IDRUN

SCHEMA_VERSION = 1


def dumps(doc: dict) -> str:
    """``doc`` as one line of JSON, ``"schema"`` first."""
    import json
    return json.dumps({"schema": SCHEMA_VERSION, **doc})


def error_doc(message: str, hint: str | None, exit_status: int = EXIT_IDRUN) -> dict:
    """The object printed on stdout when a ``--json`` run fails."""
    return {"error": {"message": message, "hint": hint, "exit_status": exit_status}}


def schema_path():
    """Where schema.json is installed (a pathlib.Path)."""
    from pathlib import Path
    return Path(__file__).with_name("schema.json")


def validate(doc: dict) -> dict:
    """Check ``doc`` against schema.json (needs the ``jsonschema`` package); return it.

    Raises ``jsonschema.ValidationError`` naming the offending field.
    """
    import json

    import jsonschema
    schema = json.loads(schema_path().read_text())
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    return doc
