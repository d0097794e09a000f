"""The pure part of --cap-add/--cap-drop: names, the resulting set, the rootless ro rule."""
import pytest

from idrun.system import caps
from idrun.errors import IdrunError


def test_names_as_podman_takes_them():
    assert caps.parse_cap("CAP_SYS_ADMIN", "--cap-add") == {21}
    assert caps.parse_cap("sys_admin", "--cap-add") == {21}
    assert caps.parse_cap("Net_Admin", "--cap-drop") == {12}
    assert caps.parse_cap("all", "--cap-drop") == caps.ALL
    with pytest.raises(IdrunError, match="unknown capability"):
        caps.parse_cap("CAP_BOGUS", "--cap-drop")
    with pytest.raises(IdrunError):
        caps.parse_cap("", "--cap-add")


def test_resolve():
    assert caps.resolve() is None                      # the default: python-prctl unloaded
    assert caps.resolve(cap_drop=["ALL"]) == frozenset()
    assert caps.resolve(["net_admin"], ["ALL"]) == {12}
    assert caps.resolve(["CAP_CHOWN"], ["chown"]) == caps.ALL    # an added one wins
    assert caps.resolve(cap_drop=["sys_admin"]) == caps.ALL - {21}


def test_rootless_read_only_mount_leaves_sys_admin_out():
    assert caps.for_read_only(None, rootless=False, has_ro=True) == (None, None)
    assert caps.for_read_only(None, rootless=True, has_ro=False) == (None, None)
    assert caps.for_read_only(None, True, True) == (caps.ALL - {21}, None)
    assert caps.for_read_only(frozenset({12, 21}), True, True) == ({12}, None)
    kept, warning = caps.for_read_only(caps.ALL, True, True, frozenset({21}))
    assert kept == caps.ALL and "advisory" in warning


def test_describe():
    assert "default" in caps.describe(None)
    assert caps.describe(frozenset()) == "none"
    assert caps.describe(frozenset({12})) == "CAP_NET_ADMIN"
    assert caps.describe(caps.ALL - {21}) == "all except CAP_SYS_ADMIN"
