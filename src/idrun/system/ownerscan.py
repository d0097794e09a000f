"""The walk behind ``idrun map --files``: count the on-disk owners under a mount's source.

Reads owners only: ``os.scandir`` and one ``lstat`` per entry, symlinks not followed,
at most ``limit`` entries (SRC itself included), so a huge tree costs a bounded time.
What the owners mean inside is ``ownership``'s (pure) business.
"""
import os
import stat

from ..errors import IdrunError, quoted
from ..mapping.ownership import OwnerCount


def count_owners(root: str, limit: int) -> OwnerCount:
    """The uids and gids of ``root`` and what lies under it, depth first, bounded."""
    try:
        st = os.lstat(root)
    except OSError as e:
        raise IdrunError(f"--files: cannot read {quoted(root)}: {e.strerror}",
                         "give a volume whose SRC exists and you can read") from None
    # on-disk id → [entries, first path]; lists while counting, tuples when done
    uids: dict[int, list] = {st.st_uid: [1, ""]}
    gids: dict[int, list] = {st.st_gid: [1, ""]}
    entries, cut, unreadable = 1, False, 0
    stack = [root] if stat.S_ISDIR(st.st_mode) else []
    prefix = len(root.rstrip("/")) + 1
    while stack and not cut:
        try:
            it = os.scandir(stack.pop())
        except OSError:
            unreadable += 1
            continue
        with it:
            for entry in it:
                if entries >= limit:
                    cut = True
                    break
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:       # gone since the listing
                    continue
                entries += 1
                seen = uids.get(st.st_uid)
                if seen is None:
                    uids[st.st_uid] = [1, entry.path[prefix:]]
                else:
                    seen[0] += 1
                seen = gids.get(st.st_gid)
                if seen is None:
                    gids[st.st_gid] = [1, entry.path[prefix:]]
                else:
                    seen[0] += 1
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
    return OwnerCount(root, entries, limit, cut, unreadable,
                      {k: (v[0], v[1]) for k, v in uids.items()},
                      {k: (v[0], v[1]) for k, v in gids.items()})
