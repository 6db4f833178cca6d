# test-case-name: tests.cluster.test_redis_backplane
"""Presence in Redis: members per subject, each tagged with its node, nodes with a heartbeat.

A subject's members are one hash, ``<prefix>:presence:<subject>``, field
``<member>@<node>``, value the user; the set ``<prefix>:presence-keys`` names
those hashes.  Every node keeps ``<prefix>:node:<id>`` alive (``SET ... EX``)
while it is connected and is listed in ``<prefix>:nodes``; the scripts below
skip members whose node key has expired, so the members of a killed node stop
counting within the node TTL (:data:`NODE_TTL` by default).  Each heartbeat also
*reaps*: one script (atomic, so exactly one node reaps each dead node) removes
the dead nodes' members and returns the (subject, user) pairs now absent, whose
``leave`` the caller announces.  A node that finds itself reaped (it was cut off
from Redis past its TTL) is told so, and sets its members again (:data:`SYNC`), as
it does after an outage during which some of its enters and leaves failed.  A session
moving between nodes is briefly a member on both (a user's count may be one too
high until the old copy ends).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from pushpy.cluster.link import RedisLink, Script

#: Seconds a node's members stay without its heartbeat (default).
NODE_TTL = 15.0

_LIVE = """
local function live(nodes)
  local out = {}
  local flat = redis.call('HGETALL', KEYS[1])
  for i = 1, #flat, 2 do
    local field, user = flat[i], flat[i + 1]
    local node = string.match(field, '@([^@]*)$')
    if node and redis.call('EXISTS', nodes .. node) == 1 then
      out[field] = user
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

#: KEYS: subject hash, presence-keys set; ARGV: node-key prefix, user, field.  1 when the user was absent.
ENTER = Script(_LIVE + """
local members = live(ARGV[1])
local before = has(members, ARGV[2], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[3], ARGV[2])
redis.call('SADD', KEYS[2], KEYS[1])
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


#: KEYS: node key, nodes set; ARGV: node id, TTL (ms).  1 when this node was not listed
#: (its first beat, or it was reaped, or Redis lost its state).
BEAT = Script("""
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
return redis.call('SADD', KEYS[2], ARGV[1])
""")

#: KEYS: nodes set, presence-keys set; ARGV: node-key prefix, this node's id.
#: Removes the members of every listed node whose key expired; returns flat
#: (presence key, user) pairs of users now absent from that subject.
REAP = Script(_LIVE + """
local gone = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if node ~= ARGV[2] and redis.call('EXISTS', ARGV[1] .. node) == 0 then
    gone[node] = true
    redis.call('SREM', KEYS[1], node)
  end
end
if next(gone) == nil then return {} end
local out = {}
for _, key in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local flat = redis.call('HGETALL', key)
  local removed, left = {}, {}
  for i = 1, #flat, 2 do
    local field, user = flat[i], flat[i + 1]
    local node = string.match(field, '@([^@]*)$')
    if node and gone[node] then
      redis.call('HDEL', key, field)
      removed[user] = true
    elseif node and redis.call('EXISTS', ARGV[1] .. node) == 1 then
      left[user] = true
    end
  end
  for user in pairs(removed) do
    if not left[user] then out[#out + 1] = key; out[#out + 1] = user end
  end
  if redis.call('HLEN', key) == 0 then redis.call('SREM', KEYS[2], key) end
end
return out
""")


#: KEYS: presence-keys set; ARGV: node-key prefix, this node's id, presence-key prefix, then
#: (subject, user, member) triples: this node's members, all of them.  Makes this node's members
#: in Redis exactly those; returns flat (subject, user, action) of users now present
#: (``join``) or absent (``leave``) on a subject over the live nodes.
SYNC = Script("""
local nodes, node, prefix = ARGV[1], ARGV[2], ARGV[3]
local wanted, keys = {}, {}
for i = 4, #ARGV, 3 do
  local key = prefix .. ARGV[i]
  wanted[key] = wanted[key] or {}
  wanted[key][ARGV[i + 2] .. '@' .. node] = ARGV[i + 1]
  keys[key] = true
end
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do keys[key] = true end
local out = {}
for key in pairs(keys) do
  local want = wanted[key] or {}
  local flat = redis.call('HGETALL', key)
  local before, after = {}, {}
  for i = 1, #flat, 2 do
    local field, user = flat[i], flat[i + 1]
    local owner = string.match(field, '@([^@]*)$')
    if owner == node then
      before[user] = true
      if want[field] == nil then redis.call('HDEL', key, field) end
    elseif owner and redis.call('EXISTS', nodes .. owner) == 1 then
      before[user] = true
      after[user] = true
    end
  end
  for field, user in pairs(want) do
    redis.call('HSET', key, field, user)
    after[user] = true
  end
  if next(want) ~= nil then redis.call('SADD', KEYS[1], key) end
  if redis.call('HLEN', key) == 0 then redis.call('SREM', KEYS[1], key) end
  local subject = string.sub(key, #prefix + 1)
  for user in pairs(after) do
    if not before[user] then out[#out + 1] = subject; out[#out + 1] = user; out[#out + 1] = 'join' end
  end
  for user in pairs(before) do
    if not after[user] then out[#out + 1] = subject; out[#out + 1] = user; out[#out + 1] = 'leave' end
  end
end
return out
""")


class RedisPresence:
    """The presence methods of :class:`~pushpy.cluster.redis_backplane.RedisBackplane`."""

    def __init__(self, link: RedisLink, prefix: str, node: str, node_ttl: float = NODE_TTL) -> None:
        self.link = link
        self.prefix = prefix
        self.node = node
        self.node_ttl = node_ttl
        self.nodes = f"{prefix}:node:"
        self.node_set = f"{prefix}:nodes"
        self.keys = f"{prefix}:presence-keys"
        self.key_prefix = f"{prefix}:presence:"

    def key(self, subject: str) -> str:
        return self.key_prefix + subject

    def heartbeat(self) -> Deferred:
        """Renew this node's key; fires True when the node was not listed (its members may be gone)."""
        d = self.link.eval(BEAT, [self.nodes + self.node, self.node_set],
                           [self.node, int(self.node_ttl * 1000)])
        return d.addCallback(lambda added: int(added) == 1)

    def reap(self) -> Deferred:
        """Remove the members of dead nodes; fires with the (subject, user) pairs now absent."""
        d = self.link.eval(REAP, [self.node_set, self.keys], [self.nodes, self.node])

        def pairs(flat: list[Any] | None) -> list[tuple[str, str]]:
            items = [str(item) for item in flat or []]
            return [(key[len(self.key_prefix):], user)
                    for key, user in zip(items[::2], items[1::2], strict=False)]

        return d.addCallback(pairs)

    def forget_node(self) -> Deferred:
        """Leave cleanly: this node's members stop counting now (its sessions have ended)."""
        return self.link.execute("DEL", self.nodes + self.node)

    def enter(self, subject: str, user: str, member: str) -> Deferred:
        d = self.link.eval(ENTER, [self.key(subject), self.keys],
                           [self.nodes, user, f"{member}@{self.node}"])
        return d.addCallback(lambda absent: int(absent) == 1)

    def leave(self, subject: str, user: str, member: str) -> Deferred:
        d = self.link.eval(LEAVE, [self.key(subject)], [self.nodes, user, f"{member}@{self.node}"])
        return d.addCallback(lambda absent: int(absent) == 1)

    def sync(self, members: list[tuple[str, str, str]]) -> Deferred:
        """Make this node's members exactly ``members`` ((subject, user, member) triples); fires
        with the (subject, user, action) changes of presence over the live nodes."""
        args: list[str] = [self.nodes, self.node, self.key_prefix]
        for triple in members:
            args += triple
        d = self.link.eval(SYNC, [self.keys], args)

        def changes(flat: list[Any] | None) -> list[tuple[str, str, str]]:
            items = [str(item) for item in flat or []]
            return list(zip(items[::3], items[1::3], items[2::3], strict=False))

        return d.addCallback(changes)

    def members(self, subject: str) -> Deferred:
        d = self.link.eval(COUNT, [self.key(subject)], [self.nodes])
        return d.addCallback(_counts)


def _counts(flat: list[Any] | None) -> dict[str, int]:
    items = list(flat or [])
    return {str(user): int(count) for user, count in zip(items[::2], items[1::2], strict=False)}
