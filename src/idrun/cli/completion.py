"""Shell completion scripts for bash, zsh and fish, generated from the click options
and the option table, whose rows say what each value completes with (Option.complete).

``python3 -m idrun.cli.completion OUTDIR`` writes ``OUTDIR/bash/idrun``,
``OUTDIR/zsh/_idrun`` and ``OUTDIR/fish/idrun.fish`` (the Debian package installs
them; see debian/rules). The scripts are static: completing costs no Python start.
They cover the subcommands, every option, the values the options take (choices,
user names, files) and, after ``--`` or the first word that is no option, the
command and its own completion.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..options import CHOICE, DIR, PATH, USER, VOLUME
from .info import CommandInfo, OptionInfo, commands


def _words(items) -> str:
    return " ".join(items)


def _bash_value_case(cmd: CommandInfo) -> str:
    """``case $prev in`` arms completing each option's value for one command."""
    arms = []
    for o in cmd.options:
        if not o.takes_next_word:
            continue
        pattern = "|".join(o.names)
        if o.kind == VOLUME:
            action = f'_idrun_volume "{_words(o.choices)}"'
        elif o.kind == CHOICE:
            action = f'COMPREPLY=($(compgen -W "{_words(o.choices)}" -- "$cur"))'
        elif o.kind == USER:
            action = 'COMPREPLY=($(compgen -u -- "$cur"))'
        elif o.kind == PATH:
            action = 'compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur"))'
        elif o.kind == DIR:
            action = 'compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur"))'
        else:
            action = "COMPREPLY=()"
        arms.append(f"            {pattern}) {action}; return 0 ;;")
    return "\n".join(arms)


def _bash_options_arm(cmd: CommandInfo) -> str:
    opts = _words(n for o in cmd.options for n in o.names)
    valued = _words(n for o in cmd.options if o.takes_next_word for n in o.names)
    return f"""        {cmd.sub or "launch"})
            opts="{opts}"
            valued=" {valued} " ;;"""


def _bash_values_arm(cmd: CommandInfo) -> str:
    return f"""        {cmd.sub or "launch"})
            case $prev in
{_bash_value_case(cmd)}
            esac ;;"""


def bash(cmds: list[CommandInfo]) -> str:
    subs = _words(c.sub for c in cmds if c.sub)
    options = "\n".join(_bash_options_arm(c) for c in cmds)
    values = "\n".join(_bash_values_arm(c) for c in cmds)
    return f"""# bash completion for idrun; generated from its click options by idrun.cli.completion.
# shellcheck shell=bash

# Readline splits words at ':' and '=' too (COMP_WORDBREAKS): rejoin the parts
# that touch in COMP_LINE into the words idrun sees ("0:0:1", "--userns=host").
# Sets words, firsts (each word's first index in COMP_WORDS) and cword.
_idrun_words() {{
    local i pos=0 rest trimmed gap w
    words=() firsts=() cword=0
    for (( i = 0; i < ${{#COMP_WORDS[@]}}; i++ )); do
        w=${{COMP_WORDS[i]}}
        rest=${{COMP_LINE:pos}}
        trimmed=${{rest#"${{rest%%[![:space:]]*}}"}}
        gap=$(( ${{#rest}} - ${{#trimmed}} ))
        if (( i == 0 || gap > 0 )) || [[ -z $w ]]; then
            words+=("$w"); firsts+=("$i")
        else
            words[${{#words[@]}}-1]+=$w
        fi
        pos=$(( pos + gap + ${{#w}} ))
        if (( i == COMP_CWORD )); then cword=$(( ${{#words[@]}} - 1 )); break; fi
    done
}}

# The command after '--' (or after the launcher's options) completes as itself.
_idrun_command() {{
    local off=${{firsts[$1]}}
    if declare -F _command_offset >/dev/null; then
        _command_offset "$off"
    elif (( COMP_CWORD == off )); then
        COMPREPLY=($(compgen -c -- "$cur"))
    else
        compopt -o filenames 2>/dev/null
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}

# -v SRC:DST[:OPTS]: host paths for SRC; nothing for DST (a path inside, which the
# host cannot list); after the second ':' the option words ($1), each after a ','.
# COMPREPLY holds what replaces readline's own word, which ends at the last ':' or '='.
_idrun_volume() {{
    local opt=${{cur##*[:,]}} word=${{COMP_WORDS[COMP_CWORD]}}
    if [[ $cur != *:* ]]; then
        compopt -o filenames 2>/dev/null
        COMPREPLY=($(compgen -f -- "$cur"))
    elif [[ $cur == *:*:* && $opt != *=* ]]; then
        [[ $word == : ]] && word=
        local pre=
        [[ $word == *,* ]] && pre=${{word%,*}},
        compopt -o nospace 2>/dev/null
        COMPREPLY=($(compgen -P "$pre" -W "$1" -- "$opt"))
    else
        COMPREPLY=()
    fi
}}

_idrun() {{
    local words firsts cword cur prev="" key=launch start=1 i w opts valued
    COMPREPLY=()
    _idrun_words
    cur=${{words[cword]}}
    case ${{words[1]}} in
        {'|'.join(c.sub for c in cmds if c.sub)}) if (( cword > 1 )); then key=${{words[1]}}; start=2; fi ;;
    esac
    if [[ $cur == --*=* ]]; then
        prev=${{cur%%=*}}; cur=${{cur#*=}}
    elif (( cword > start )); then
        prev=${{words[cword-1]}}
    fi
    case $key in
{options}
    esac
    if [[ $key == launch ]]; then
        # The launcher's options end at '--' or at the first word that is none.
        i=1
        while (( i < cword )); do
            w=${{words[i]}}
            if [[ $w == -- ]]; then _idrun_command $((i + 1)); return 0; fi
            if [[ $w != -* ]]; then _idrun_command "$i"; return 0; fi
            [[ $valued == *" $w "* ]] && (( i++ ))
            (( i++ ))
        done
        # Options done and the word under the cursor is none: it is the command.
        if (( i == cword && cword > 1 )) && [[ ${{words[cword]}} != -* ]]; then
            _idrun_command "$i"; return 0
        fi
    fi
    case $key in
{values}
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ $key == launch ]] && (( cword == 1 )); then
        COMPREPLY=($(compgen -W "{subs}" -- "$cur"))
    elif [[ $key == show ]]; then
        COMPREPLY=($(cd /proc 2>/dev/null && compgen -G '[0-9]*' -- "$cur"))
    fi
    return 0
}}
complete -F _idrun idrun
"""


def _zsh_escape(text: str) -> str:
    return (text.replace("\\", "\\\\").replace("'", "'\\''").replace("[", "\\[")
            .replace("]", "\\]").replace(":", "\\:"))


def _zsh_action(o: OptionInfo) -> str:
    if o.kind == CHOICE:
        return f"({_words(o.choices)})"
    return {USER: "_users", PATH: "_files", DIR: "_files -/",
            VOLUME: "_idrun_volume"}.get(o.kind, " ")


def _zsh_volume(cmds: list[CommandInfo]) -> str:
    """-v SRC:DST[:OPTS]: files, then nothing (DST is inside), then the option words."""
    words = next((o.choices for c in cmds for o in c.options if o.kind == VOLUME), ())
    plain = " ".join(w for w in words if not w.endswith("="))
    valued = " ".join(w for w in words if w.endswith("="))
    return f"""_idrun_volume() {{
    if compset -P '*:*:'; then
        compset -P '*,'
        [[ $PREFIX == *=* ]] && return 1
        compadd -q -S , -- {plain}
        compadd -S '' -- {valued}
    elif compset -P '*:'; then
        _message 'DST: a path inside the namespace'
    else
        _files
    fi
}}"""


def _zsh_spec(o: OptionInfo) -> str:
    help_text = _zsh_escape(o.help.split(". ")[0].rstrip("."))
    names = o.names if len(o.names) == 1 else None
    value = f":{_zsh_escape(o.metavar or '')}:{_zsh_action(o)}" if o.takes_value else ""
    repeat = "*" if o.multiple else ""
    if names and o.optional_value:
        # --files or --files=N: an optional value, only in the same word
        return f"'{repeat}{o.names[0]}=-[{help_text}]:{value}'"
    if names:
        return f"'{repeat}{o.names[0]}[{help_text}]{value}'"
    group = " ".join(o.names)
    spellings = ",".join(o.names)
    excl = "" if o.multiple else f"({group})"
    return f"'{excl}{repeat}'{{{spellings}}}'[{help_text}]{value}'"


def zsh(cmds: list[CommandInfo]) -> str:
    funcs = []
    for c in cmds:
        specs = " \\\n        ".join(_zsh_spec(o) for o in c.options)
        tail = ""
        if c.sub is None:
            tail = " \\\n        '(-)1:command:_command_names -e' '*::arguments:_normal'"
        elif c.sub == "show":
            tail = " \\\n        '1::pid:_pids'"
        name = "_idrun_" + (c.sub or "launch")
        args = "-s -S" if c.sub is None else "-s"
        funcs.append(f"{name}() {{\n    _arguments {args} \\\n        {specs}{tail}\n}}")
    # _describe takes the text after the first colon as it is: quote it, escape nothing else
    subs = " ".join("'{}:{}'".format(c.sub, c.help.splitlines()[0].replace("'", "'\\''"))
                    for c in cmds if c.sub)
    return ("#compdef idrun\n# zsh completion for idrun; generated from its click options by "
            "idrun.cli.completion.\n\n" + _zsh_volume(cmds) + "\n\n" + "\n\n".join(funcs) + f"""

_idrun() {{
    local -a subcommands
    subcommands=({subs})
    if (( CURRENT > 2 )) && (( ${{subcommands[(I)${{words[2]}}:*]}} )); then
        local sub=${{words[2]}}
        shift words; (( CURRENT-- ))
        _idrun_$sub
    elif (( CURRENT == 2 )) && [[ $PREFIX != -* ]]; then
        _describe -t subcommands 'idrun command' subcommands
    else
        _idrun_launch
    fi
}}

_idrun "$@"
""")


def _fish_line(o: OptionInfo, cond: str) -> str:
    parts = ["complete -c idrun", f"-n '{cond}'"]
    for n in o.names:
        parts.append(f"-l {n[2:]}" if n.startswith("--") else f"-s {n[1:]}")
    if o.takes_value and not o.takes_next_word:
        parts.append("-f")           # --files or --files=N: the next word is not its value
    elif o.takes_value:
        parts.append("-r")
        if o.kind == CHOICE:
            parts.append(f"-f -a '{_words(o.choices)}'")
        elif o.kind == VOLUME:
            parts.append(f"-f -a '(__idrun_volume {_words(o.choices)})'")
        elif o.kind == USER:
            parts.append("-f -a '(__fish_complete_users)'")
        elif o.kind == DIR:
            parts.append("-f -a '(__fish_complete_directories (commandline -ct | string replace -r -- \"^--?[^=]*=\" \"\"))'")
        elif o.kind == PATH:
            parts.append("-F")
        else:
            parts.append("-f")
    help_text = o.help.split(". ")[0].rstrip(".").replace("\\", "\\\\").replace("'", "\\'")
    parts.append(f"-d '{help_text}'")
    return " ".join(parts)


def fish(cmds: list[CommandInfo]) -> str:
    subs = " ".join(c.sub for c in cmds if c.sub)
    valued = _words(n for o in cmds[0].options if o.takes_next_word for n in o.names)
    head = f"""# fish completion for idrun; generated from its click options by idrun.cli.completion.

# Where the cursor is: "sub" (in a subcommand), "empty" (no option yet), "options"
# (among the launcher's options), "value" (on an option's value) or "command"
# (past '--' or the command's first word).
function __idrun_state
    set -l words (commandline -opc)
    if contains -- "$words[2]" {subs}; echo sub; return; end
    set -l skip 0
    set -l given 0
    for w in $words[2..-1]
        if test $skip = 1; set skip 0; continue; end
        if test "$w" = --; or not string match -q -- '-*' $w; echo command; return; end
        contains -- $w {valued}; and set skip 1
        set given (math $given + 1)
    end
    if test $skip = 1; echo value
    else if test $given = 0; echo empty
    else; echo options; end
end

function __idrun_in_launcher
    contains -- (__idrun_state) empty options value
end

# Whether the token under the cursor is (part of) the command to run.
function __idrun_wants_command
    set -l state (__idrun_state)
    test $state = command; and return 0
    test $state = options; and not string match -q -- '-*' (commandline -ct)
end

# The command line from the command's first word on, for its own completion.
function __idrun_command_words
    set -l words (commandline -opc)
    set -l i 2
    while test $i -le (count $words)
        set -l w $words[$i]
        if test "$w" = --; set i (math $i + 1); break; end
        string match -q -- '-*' $w; or break
        contains -- $w {valued}; and set i (math $i + 1)
        set i (math $i + 1)
    end
    printf '%s\\n' $words[$i..-1] (commandline -ct)
end

# -v SRC:DST[:OPTS]: paths for SRC, nothing for DST (a path inside), then the option
# words given as arguments, each after a ','.
function __idrun_volume
    set -l tok (commandline -ct | string replace -r -- '^--volume=' '')
    set -l parts (string split -m 2 -- : $tok)
    switch (count $parts)
        case 1
            __fish_complete_path $tok
        case 3
            set -l last (string split -- , $parts[3])[-1]
            string match -q -- '*=*' $last; and return
            set -l pre (string replace -r -- '[^,:]*$' '' $tok)
            for word in $argv
                echo $pre$word
            end
    end
end

complete -c idrun -f
complete -c idrun -n 'test (__idrun_state) = empty' -a '{subs}'
complete -c idrun -n __idrun_wants_command -x -a '(__fish_complete_subcommand --commandline (__idrun_command_words))'
complete -c idrun -n '__fish_seen_subcommand_from show' -a '(__fish_complete_pids)'
"""
    lines = []
    for c in cmds:
        cond = "__idrun_in_launcher" if c.sub is None else f"__fish_seen_subcommand_from {c.sub}"
        lines += [_fish_line(o, cond) for o in c.options]
    return head + "\n".join(lines) + "\n"


def write_all(outdir: str | Path) -> list[Path]:
    """Write the three scripts under ``outdir``; return their paths."""
    cmds = commands()
    out = Path(outdir)
    files = {out / "bash" / "idrun": bash(cmds), out / "zsh" / "_idrun": zsh(cmds),
             out / "fish" / "idrun.fish": fish(cmds)}
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)


if __name__ == "__main__":  # pragma: no cover
    for p in write_all(sys.argv[1] if len(sys.argv) > 1 else "build/completion"):
        print(p)
