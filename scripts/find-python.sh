#!/bin/sh
# find-python.sh X.Y — print an interpreter for Python X.Y, or nothing.
# Looks on PATH first, then in pyenv's versions (where this machine keeps 3.12).
v=$1
p=$(command -v "python$v" 2>/dev/null) && [ -x "$p" ] && "$p" -c 'pass' 2>/dev/null && { echo "$p"; exit 0; }
root=${PYENV_ROOT:-$HOME/.pyenv}
for d in $(ls -d "$root"/versions/"$v".* 2>/dev/null | sort -V -r); do
    [ -x "$d/bin/python$v" ] && { echo "$d/bin/python$v"; exit 0; }
done
exit 0
