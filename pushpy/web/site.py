"""A ready Twisted site: the static web root with the Pushlet endpoint inside it.

With the default root ``/pushlet/``, ``/pushlet/pushlet.srv`` is the endpoint
and ``/pushlet/lib/...`` the client scripts of the web root, so a client
script finds the endpoint beside its ``lib/`` folder (spec 12.1, 14.1.2).
"""

from __future__ import annotations

from pathlib import Path

from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import File
from twisted.web.util import Redirect

from pushpy.errors import UsageError
from pushpy.server import PushServer

DEFAULT_ROOT = "/pushlet/"
#: The web root shipped in the repository (demo pages and pushpy.js).
DEFAULT_WEBROOT = Path(__file__).resolve().parent.parent.parent / "webroot"


def normalize_root(root: str) -> list[bytes]:
    """The path segments of a mount root such as ``/pushlet/``; checked per spec 14.1.2."""
    segments = [s for s in root.strip("/").split("/") if s]
    if any("lib" in s for s in segments):
        raise UsageError(f"the mount root {root!r} must not contain 'lib' (Pushlet clients cut their URL at it)")
    return [s.encode() for s in segments]


def build_resource(server: PushServer, *, webroot: str | Path | None = None,
                   root: str = DEFAULT_ROOT) -> Resource:
    """The site's root resource: ``root`` holds the web root and ``pushlet.srv``."""
    folder = Path(webroot) if webroot else DEFAULT_WEBROOT
    if folder.is_dir():
        mount: Resource = File(str(folder))
    else:
        mount = Resource()
    mount.putChild(b"pushlet.srv", server.pushlet_resource())
    segments = normalize_root(root)
    if not segments:
        return mount
    top = Resource()
    parent = top
    for segment in segments[:-1]:
        child = Resource()
        parent.putChild(segment, child)
        parent = child
    parent.putChild(segments[-1], mount)
    top.putChild(b"", Redirect(("/" + "/".join(s.decode() for s in segments) + "/").encode()))
    return top


def build_site(server: PushServer, **kwargs: object) -> Site:
    """A :class:`~twisted.web.server.Site` serving :func:`build_resource`."""
    site = Site(build_resource(server, **kwargs))
    site.displayTracebacks = False
    return site
