"""Everything a launch decides and builds before its first process, for the CLI and the API.

Both callers describe what they want (a ``Request``, the launch options, a
``MountRequest``) and get a ``Prelaunch`` back: options checked with their
implications, the mapping resolved (with the --userns=auto block leased to this
process), the mounts checked and, for a real launch, their id-mapped trees built.
``engine`` then runs it; ``release`` gives back what a launch that did not start
holds. So the CLI and the API cannot differ in what they accept or refuse (the
options themselves are checked by ``options.launch_options``).
"""
from __future__ import annotations

from ..mapping.plan import Plan, Request, is_auto
from .steps import LaunchOptions


class Prelaunch:
    """What ``prelaunch`` decided and holds. A plain class: a NamedTuple costs more to
    define than this module is worth on the launch path."""

    __slots__ = ("plan", "opts", "mounts", "lease", "warnings", "notes")

    def __init__(self, plan: Plan, opts: LaunchOptions, mounts: object | None = None,
                 lease: object | None = None, warnings: tuple[str, ...] = (),
                 notes: tuple[str, ...] = ()) -> None:
        self.plan = plan
        self.opts = opts                # with the prepared mounts when ``hold``
        self.mounts = mounts            # the checked volumes.MountPlan, or None
        self.lease = lease              # the --userns=auto lease this process owns
        self.warnings = warnings        # for the user, before anything starts
        self.notes = notes              # said only when something is launched

    def release(self) -> None:
        """Give back the lease and close the id-mapped trees; safe to call again."""
        if self.opts.mounts is not None:
            self.opts.mounts.release()  # type: ignore[attr-defined]
        if self.lease is not None:
            from ..system.leases import release
            release(self.lease)  # type: ignore[arg-type]


def prelaunch(request: Request, opts: LaunchOptions, mounts=None, *, hold: bool,
              rootless: bool | None = None, caller: tuple[int, int] | None = None,
              subuid_file: str | None = None, subgid_file: str | None = None) -> Prelaunch:
    """Resolve and check everything; with ``hold`` (a real launch, not a dry run) lease the
    auto block and build the id-mapped trees. Nothing is left held on an error.

    ``rootless``, ``caller`` and the sub-id files simulate another caller (``idrun
    map``); the auto block is then not looked up, since the registry is not theirs."""
    from ..system.hostinfo import gather, privileged
    from ..mapping.resolve import resolve
    host = gather(request, rootless=rootless, caller=caller, subuid_file=subuid_file,
                  subgid_file=subgid_file, full=not hold)
    lease = None
    if is_auto(request.userns) and caller is None and host.rootless != privileged():
        from ..system.leases import reserve_auto_block
        host, lease = reserve_auto_block(request, host, hold=hold)
    done = Prelaunch(None, opts, lease=lease)  # type: ignore[arg-type]
    try:
        plan = resolve(request, host)
        warnings = list(plan.warnings)
        notes: list[str] = []
        if hold:
            plan.require_target()
            from ..options import unreachable_terminals
            # A launch says only what is likely a mistake; --verbose says everything
            # idrun map and --dry-run show.
            notes += plan.notes if opts.verbose else plan.launch_notes
            warnings += unreachable_terminals(plan.uid.lines, plan.userns, plan.caller_uid,
                                              plan.rootless, plan.uid.intermediate)
        mplan = None
        if mounts is not None:
            from .mounts import plan_mounts, prepare
            mplan = plan_mounts(mounts, plan)
            if mplan is not None:
                warnings += mplan.warnings
                if hold and opts.verbose:
                    notes += mplan.notes
                if plan.rootless and any(m.readonly for m in mplan.mounts):
                    from ..system.caps import for_read_only
                    caps, w = for_read_only(opts.caps, True, True, opts.cap_added)
                    opts = done.opts = opts._replace(caps=caps)
                    warnings += [w] if w else []
                if hold:
                    from .run import idmap_userns
                    done.opts = opts._replace(mounts=prepare(mplan, plan.rootless,
                                                             idmap_userns))
        done.plan, done.mounts = plan, mplan
        done.warnings, done.notes = tuple(warnings), tuple(notes)
        return done
    except BaseException:
        done.release()
        raise
