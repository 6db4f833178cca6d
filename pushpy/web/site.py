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
from pushpy.web.http import channel_class
from pushpy.web.stats import watch_site

DEFAULT_ROOT = "/pushlet/"
_PACKAGE = Path(__file__).resolve().parent.parent


def find_webroot(package: Path = _PACKAGE) -> Path:
    """The demo web root: ``pushpy/_webroot`` when installed, else the checkout's ``webroot/``.

    ``setup.cfg`` ships the repository's ``webroot/`` folder as the package
    data ``pushpy/_webroot`` (a ``package_dir`` mapping, nothing is copied in
    the tree), so a wheel or ``pip install .`` carries it; a source checkout
    has no ``pushpy/_webroot`` and serves ``webroot/`` directly.

    :param package: the ``pushpy`` package folder.
    """
    installed = package / "_webroot"
    return installed if installed.is_dir() else package.parent / "webroot"


#: The web root shipped with pushpy (demo pages and the client scripts).
DEFAULT_WEBROOT = find_webroot()


class WebRoot(File):
    """The static web root.

    A path segment that holds a NUL or is not UTF-8 is a quiet 404 (``File``
    would answer 500 or log a failure for each such request), and folders are
    not listed.
    """

    def getChild(self, path: bytes, request: object) -> object:
        if isinstance(path, bytes):
            try:
                path.decode("utf-8")
            except UnicodeDecodeError:
                return self.childNotFound
            if b"\x00" in path:
                return self.childNotFound
        return super().getChild(path, request)

    def directoryListing(self) -> object:
        return self.childNotFound


def normalize_root(root: str) -> list[bytes]:
    """The path segments of a mount root such as ``/pushlet/``; checked per spec 14.1.2."""
    segments = [s for s in root.strip("/").split("/") if s]
    if any("lib" in s for s in segments):
        raise UsageError(
            f"the mount root {root!r} must not contain 'lib' (Pushlet clients cut their URL at it)")
    return [s.encode() for s in segments]


def build_resource(server: PushServer, *, webroot: str | Path | None = None,
                   root: str = DEFAULT_ROOT) -> Resource:
    """The site's root resource: ``root`` holds the web root and ``pushlet.srv``."""
    folder = Path(webroot) if webroot else DEFAULT_WEBROOT
    if folder.is_dir():
        mount: Resource = WebRoot(str(folder))
    else:
        mount = Resource()
    resources = server.resources()
    for name, resource in resources.items():
        mount.putChild(name, resource)
    segments = normalize_root(root)
    top = _mount(mount, segments) if segments else mount
    if b"socket.io" in resources:  # also where Socket.IO clients look by default
        _place(top, server.config.socketio_path, resources[b"socket.io"])
    return top


def _place(top: Resource, path: str, resource: Resource) -> None:
    """Mount ``resource`` at ``path`` below ``top``, reusing the folders already there."""
    parts = [p.encode() for p in path.strip("/").split("/") if p]
    if not parts:
        return
    parent = top
    for part in parts[:-1]:
        child = parent.children.get(part)
        if child is None:
            child = Resource()
            parent.putChild(part, child)
        parent = child
    parent.putChild(parts[-1], resource)


def _mount(mount: Resource, segments: list[bytes]) -> Resource:
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
    # Raw spaces in queries (spec 14.1.3); bodies bounded by limit.body.bytes.
    site.protocol = channel_class(server.config.limit_body_bytes)
    watch_site(site, server)  # request errors: counted by kind, logged (pushpy.web.stats)
    return site
