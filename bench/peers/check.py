"""Checks a peer's output against Sluice's, record by record (bench/peers.sh runs it).

Usage: python check.py BROKERS SLUICE_TOPIC PEER_TOPIC N

Reads both topics to their end and matches records by `ts` (the input's gmtCreate, unique per
input record). Fails unless both hold exactly N records, each input record once, with the same
key, the same JSON fields and values, and the same `band` header. Prints one record of each
side for the eye, and whether the value bytes are identical too.
"""

import json
import sys

from confluent_kafka import Consumer, TopicPartition


def read_all(brokers, topic):
    c = Consumer({"bootstrap.servers": brokers, "group.id": "bench-check", "enable.auto.commit": False})
    md = c.list_topics(topic, timeout=10).topics[topic]
    parts = []
    ends = {}
    for p in md.partitions:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if hi > lo:
            parts.append(TopicPartition(topic, p, lo))
            ends[p] = hi
    c.assign(parts)
    out = []
    while ends:
        for m in c.consume(num_messages=10_000, timeout=1.0):
            if m.error():
                raise SystemExit(f"{topic}: {m.error()}")
            out.append(m)
            if m.partition() in ends and m.offset() + 1 >= ends[m.partition()]:
                del ends[m.partition()]
    c.close()
    return out


def by_ts(msgs, topic):
    recs = {}
    for m in msgs:
        v = json.loads(m.value())
        hs = dict((k, bytes(val or b"")) for k, val in (m.headers() or []))
        r = (m.key(), v, hs.get("band"), m.value(), [k for k, _ in (m.headers() or [])])
        if v.get("ts") in recs:
            raise SystemExit(f"{topic}: two records with ts {v.get('ts')}")
        recs[v.get("ts")] = r
    return recs


def main():
    brokers, ours, theirs, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    a = by_ts(read_all(brokers, ours), ours)
    b = by_ts(read_all(brokers, theirs), theirs)
    if len(a) != n or len(b) != n:
        raise SystemExit(f"check: {ours} holds {len(a)} records, {theirs} {len(b)}, expected {n}")
    if a.keys() != b.keys():
        raise SystemExit(f"check: {len(a.keys() ^ b.keys())} records in only one of {ours}, {theirs}")
    diff = [ts for ts in a if a[ts][:3] != b[ts][:3]]
    same_bytes = sum(a[ts][3] == b[ts][3] for ts in a)
    ts = min(a)
    print(f"   {ours:<9} key={a[ts][0]!r} band={a[ts][2]!r} value={a[ts][3].decode()} headers={a[ts][4]}")
    print(f"   {theirs:<9} key={b[ts][0]!r} band={b[ts][2]!r} value={b[ts][3].decode()} headers={b[ts][4]}")
    if diff:
        ts = diff[0]
        raise SystemExit(f"check: {len(diff)} records differ, e.g. ts {ts}: {a[ts][:3]} against {b[ts][:3]}")
    print(f"   check: {theirs} matches {ours} on all {n} records (key, fields, band); value bytes identical in {same_bytes}")


if __name__ == "__main__":
    main()
