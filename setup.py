"""Build hook for idrun's one optional C extension (metadata lives in pyproject.toml).

idrun._clonespawn makes the Python API's launches cheap (a vfork-class child instead of
os.fork()); see src/idrun/_clonespawn.c. It is optional: without a C compiler the build
still succeeds and the API falls back to os.fork().
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("idrun._clonespawn", ["src/idrun/_clonespawn.c"],
                             optional=True)])
