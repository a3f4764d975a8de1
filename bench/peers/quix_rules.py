"""The ten band rules of bench/kafka_e2e.sh, written for Quix Streams (bench/peers.sh runs it).

Each Sluice rule is

    SELECT deviceName() AS dn, items.temp.value AS temp, items.Power.value AS power,
           items.Position.value.latitude AS lat, gmtCreate AS ts
    FROM "/sys/+/+/thing/event/property/post"
    WHERE items.temp.value >= 10*i AND items.temp.value < 10*i + 10

with output key `${dn}` and header `band = i`, to one output topic. Here: a record whose
`iot-topic` header matches the rules' topic filter is projected once (deviceName() is the
topic's third level), then ten branches of the dataframe, one per rule, each filter on their
band, add the `band` header (the input's headers, `iot-topic`, are kept, as Sluice keeps it)
and produce to the output topic keyed by `dn`.

Usage: python quix_rules.py BROKERS INPUT_TOPIC OUTPUT_TOPIC CONSUMER_GROUP
Producer settings: those of Sluice's Kafka sink with its defaults (so both write the same
way), unless QUIX_PRODUCER=default (librdkafka's and Quix Streams' own defaults).
"""

import os
import sys
import tempfile

from quixstreams import Application

RULES = 10


def producer_config():
    extra = {}
    # Quix Streams partitions by murmur2 (Java's); Sluice by librdkafka's default
    # (consistent_random, crc32), as the input was: QUIX_PARTITIONER=consistent_random for that.
    if os.environ.get("QUIX_PARTITIONER"):
        extra["partitioner"] = os.environ["QUIX_PARTITIONER"]
    if os.environ.get("QUIX_PRODUCER") == "default":
        return extra
    # KafkaSinkConfig::default() and client_config() in src/sink/kafka/config.rs.
    return extra | {
        "enable.idempotence": True,
        "compression.type": "lz4",
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 100_000,
        "topic.metadata.propagation.max.ms": 10_000,
    }


def device_name(headers):
    """deviceName() of a record whose `iot-topic` matches /sys/+/+/thing/event/property/post,
    else None (no rule applies)."""
    for name, value in headers or ():
        if name == "iot-topic":
            levels = (value.decode() if isinstance(value, bytes) else value).split("/")
            if (
                len(levels) == 8
                and levels[0] == ""
                and levels[1] == "sys"
                and levels[4:] == ["thing", "event", "property", "post"]
            ):
                return levels[3]
            return None
    return None


def path(doc, *keys):
    for k in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(k)
    return doc


def project(value, key, timestamp, headers):
    dn = device_name(headers)
    if dn is None or not isinstance(value, dict):
        return None
    return {
        "dn": dn,
        "temp": path(value, "items", "temp", "value"),
        "power": path(value, "items", "Power", "value"),
        "lat": path(value, "items", "Position", "value", "latitude"),
        "ts": value.get("gmtCreate"),
    }


def in_band(lo, hi):
    def where(row):
        t = row["temp"]
        return isinstance(t, (int, float)) and not isinstance(t, bool) and lo <= t < hi

    return where


def with_band(band):
    band = str(band).encode()

    def headers(value, key, timestamp, hs):
        # `hs` is already a copy (set_headers makes one).
        hs.append(("band", band))
        return hs

    return headers


def main():
    brokers, source, sink, group = sys.argv[1:5]
    app = Application(
        broker_address=brokers,
        consumer_group=group,
        auto_offset_reset="earliest",
        # The script creates the topics; no state, so no changelog topics.
        auto_create_topics=False,
        use_changelog_topics=False,
        # Quix makes its (here empty) state folder even for a stateless app: not in the tree.
        state_dir=os.environ.get("QUIX_STATE_DIR") or tempfile.mkdtemp(prefix="quix-state-"),
        # Sluice commits its offsets every second.
        commit_interval=1.0,
        producer_extra_config=producer_config(),
        loglevel=os.environ.get("QUIX_LOGLEVEL", "WARNING"),
    )
    inp = app.topic(source, key_deserializer="bytes", value_deserializer="json")
    out = app.topic(sink, key_serializer="string", value_serializer="json")

    sdf = app.dataframe(inp)
    sdf = sdf.apply(project, metadata=True)
    sdf = sdf.filter(lambda row: row is not None)
    for i in range(RULES):
        # Not reassigning `sdf` makes each rule a branch of the same dataframe.
        rule = sdf.filter(in_band(i * 10, i * 10 + 10))
        rule = rule.set_headers(with_band(i))
        rule.to_topic(out, key=lambda row: row["dn"])
    app.run()


if __name__ == "__main__":
    main()
