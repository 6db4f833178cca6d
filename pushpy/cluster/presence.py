# test-case-name: tests.cluster.test_redis_backplane
"""Presence in Redis: members per subject, each tagged with its node, nodes with a heartbeat.

A subject's members are one hash, ``<prefix>:presence:<subject>``, field
``<member>@<node>``, value the user.  Every node keeps ``<prefix>:node:<id>``
alive (``SET ... EX``) while it is connected; the scripts below skip and delete
members whose node key has expired, so the members of a killed node disappear
within :data:`NODE_TTL` seconds.  A session moving between nodes is briefly a
member on both (a user's count may be one too high until the old copy ends).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from pushpy.cluster.link import RedisLink, Script

#: Seconds a node's members stay without its heartbeat.
NODE_TTL = 15
HEARTBEAT = 5.0

_LIVE = """
local function live(nodes)
  local out = {}
  local flat = redis.call('HGETALL', KEYS[1])
  for i = 1, #flat, 2 do
    local field, user = flat[i], flat[i + 1]
    local node = string.match(field, '@([^@]*)$')
    if node and redis.call('EXISTS', nodes .. node) == 1 then
      out[field] = user
    else
      redis.call('HDEL', KEYS[1], field)
    end
  end
  return out
end
local function has(members, user, except)
  for field, who in pairs(members) do
    if who == user and field ~= except then return true end
  end
  return false
end
"""

#: KEYS: subject hash; ARGV: node-key prefix, user, field.  1 when the user was absent.
ENTER = Script(_LIVE + """
local members = live(ARGV[1])
local before = has(members, ARGV[2], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[3], ARGV[2])
if before then return 0 end
return 1
""")

#: KEYS: subject hash; ARGV: node-key prefix, user, field.  1 when the user is now absent.
LEAVE = Script(_LIVE + """
redis.call('HDEL', KEYS[1], ARGV[3])
local members = live(ARGV[1])
if has(members, ARGV[2], ARGV[3]) then return 0 end
return 1
""")

#: KEYS: subject hash; ARGV: node-key prefix.  Flat user, count pairs.
COUNT = Script(_LIVE + """
local counts = {}
for _, user in pairs(live(ARGV[1])) do counts[user] = (counts[user] or 0) + 1 end
local out = {}
for user, n in pairs(counts) do out[#out + 1] = user; out[#out + 1] = tostring(n) end
return out
""")


class RedisPresence:
    """The presence methods of :class:`~pushpy.cluster.redis_backplane.RedisBackplane`."""

    def __init__(self, link: RedisLink, prefix: str, node: str) -> None:
        self.link = link
        self.prefix = prefix
        self.node = node
        self.nodes = f"{prefix}:node:"

    def key(self, subject: str) -> str:
        return f"{self.prefix}:presence:{subject}"

    def heartbeat(self) -> Deferred:
        return self.link.execute("SET", self.nodes + self.node, "1", "EX", NODE_TTL)

    def forget_node(self) -> Deferred:
        return self.link.execute("DEL", self.nodes + self.node)

    def enter(self, subject: str, user: str, member: str) -> Deferred:
        d = self.link.eval(ENTER, [self.key(subject)], [self.nodes, user, f"{member}@{self.node}"])
        return d.addCallback(lambda absent: int(absent) == 1)

    def leave(self, subject: str, user: str, member: str) -> Deferred:
        d = self.link.eval(LEAVE, [self.key(subject)], [self.nodes, user, f"{member}@{self.node}"])
        return d.addCallback(lambda absent: int(absent) == 1)

    def members(self, subject: str) -> Deferred:
        d = self.link.eval(COUNT, [self.key(subject)], [self.nodes])
        return d.addCallback(_counts)


def _counts(flat: list[Any] | None) -> dict[str, int]:
    items = list(flat or [])
    return {str(user): int(count) for user, count in zip(items[::2], items[1::2], strict=False)}
