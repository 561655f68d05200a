"""redis-py, a client nobody here wrote, against the server on 127.0.0.1:PORT.

Usage: redis_py_client.py PORT [2|3|default]. The protocol argument picks RESP2 or RESP3;
`default` leaves it to redis-py (RESP3 since redis-py 8, RESP2 before). Run by
it_clients.rs against corecast (1 and 2 shards) and against redis-server, so the
expectations below are Redis's own. Exits non-zero with a message on the first mismatch.
"""
import sys

import redis

port = int(sys.argv[1])
protocol = sys.argv[2] if len(sys.argv) > 2 else "default"
TIMEOUT = 10
effective_protocol = (
    int(protocol)
    if protocol != "default"
    else int(getattr(redis.utils, "DEFAULT_RESP_VERSION", 2))
)


def client():
    kwargs = {} if protocol == "default" else {"protocol": int(protocol)}
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=TIMEOUT, **kwargs)


def next_message(p):
    m = p.get_message(timeout=TIMEOUT)
    assert m is not None, "no message within the timeout"
    return m


r = client()
assert r.ping() is True
assert r.echo(b"bin\x00\r\nary") == b"bin\x00\r\nary"
assert r.client_setname("py-client") is True
assert r.client_getname() in ("py-client", b"py-client")

p = r.pubsub()
p.subscribe("news", "sports")
p.psubscribe("n*")
got = [next_message(p) for _ in range(3)]
assert [(m["type"], m["channel"], m["data"]) for m in got] == [
    ("subscribe", b"news", 1),
    ("subscribe", b"sports", 2),
    ("psubscribe", b"n*", 3),
], got

pub = client()
assert pub.publish("news", b"n1\x00\r\n") == 2  # the channel and the pattern
assert pub.publish("sports", "s1") == 1
assert pub.publish("nothing", "z1") == 1  # the pattern only
assert pub.publish("weather", "w1") == 0
want = [
    ("message", None, b"news", b"n1\x00\r\n"),
    ("pmessage", b"n*", b"news", b"n1\x00\r\n"),
    ("message", None, b"sports", b"s1"),
    ("pmessage", b"n*", b"nothing", b"z1"),
]
got = [next_message(p) for _ in range(4)]
assert [(m["type"], m["pattern"], m["channel"], m["data"]) for m in got] == want, got

assert sorted(pub.pubsub_channels()) == [b"news", b"sports"]
assert sorted(pub.pubsub_channels("n*")) == [b"news"]
assert pub.pubsub_numsub("news", "zz") == [(b"news", 1), (b"zz", 0)]
assert pub.pubsub_numpat() == 1

# PING in subscribed mode answers with a pong push.
p.ping()
m = next_message(p)
assert m["type"] == "pong", m

# Many messages arrive once and in order.
for i in range(500):
    pub.publish("sports", str(i))
seen = [next_message(p)["data"] for _ in range(500)]
assert seen == [str(i).encode() for i in range(500)], seen[:5]

p.unsubscribe("news")
m = next_message(p)
assert (m["type"], m["channel"], m["data"]) == ("unsubscribe", b"news", 2), m
assert pub.publish("news", "gone") == 1  # still matched by n*
m = next_message(p)
assert (m["type"], m["channel"]) == ("pmessage", b"news"), m
p.punsubscribe()
p.unsubscribe()
got = [next_message(p) for _ in range(2)]
assert sorted((m["type"], m["data"]) for m in got) == [
    ("punsubscribe", 1),
    ("unsubscribe", 0),
], got
p.close()

# RESP2 only: a command Redis does not allow while subscribed is refused, and the connection
# lives on. (RESP3 allows every command there; the differential tests cover that.)
if effective_protocol == 2:
    raw = client().connection_pool.get_connection()
    raw.send_command("SUBSCRIBE", "x")
    raw.read_response()
    raw.send_command("GET", "k")
    try:
        raw.read_response()
        raise AssertionError("GET in subscribed mode was accepted")
    except redis.exceptions.ResponseError as e:
        assert "only (P|S)SUBSCRIBE" in str(e), e
    raw.send_command("PING")
    assert raw.read_response() == [b"pong", b""]

# An unknown command gets Redis's error and the client keeps working.
try:
    r.execute_command("NOSUCHCOMMAND", "a")
    raise AssertionError("unknown command accepted")
except redis.exceptions.ResponseError as e:
    assert str(e).startswith("unknown command 'NOSUCHCOMMAND'"), e
assert r.ping() is True
print(f"ok (redis-py {redis.__version__}, RESP{effective_protocol})")
