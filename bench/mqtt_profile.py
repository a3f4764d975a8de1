#!/usr/bin/env python3
"""Where Sluice's CPU goes in a `perf record` of bench/mqtt_e2e.sh (PERF_DIR=…).

Usage: python3 bench/mqtt_profile.py PERF_DIR/perf-file.data [N]
       LEAVES=text python3 bench/mqtt_profile.py …   (also the top leaf functions of the
       categories whose name holds `text`)

Each sample (a stack, `--call-graph dwarf`) is put in the first category of CATEGORIES that one
of its frames matches, whatever the frame's depth: the order is the priority (the log line's
write(2) counts as logging, not as a socket write). With N (the requests of the run) each
share is also given in µs per request, from Sluice's CPU-s as bench/mqtt_e2e.sh printed it
(pass it as CPU_S=…), else only percentages.
"""

import collections
import os
import re
import subprocess
import sys

# (category, regex on a frame's symbol), highest priority first.
CATEGORIES = [
    ("logging: tracing fmt to stderr (channel log)", r"tracing_subscriber::|tracing_core::event::Event::dispatch"),
    ("metrics: prometheus", r"^prometheus::|<prometheus::"),
    ("librdkafka threads", r"^rd_kafka|^rd_|^lz4|^LZ4|^cnd_|^thrd_"),
    ("kafka sink: produce + delivery", r"sluice::sink::kafka|rdkafka::"),
    ("file sink: fdatasync", r"fdatasync|do_fsync"),
    ("reply: JSON body + completion", r"sluice::source::mqtt::completion|reply_body"),
    ("ack: done callbacks", r"sluice::flow::Ack::done"),
    ("file sink: line serialize + write", r"FileSink as sluice::sink::Sink>::run|tokio::fs::|buf_writer::BufWriter"),
    ("stage: judge (registry validation)", r"sluice::devices::validate|sluice::integration::judge"),
    ("stage: decode", r"sluice::engine::input::decode|sluice::doc::Node::parse"),
    ("stage: rules (eval + output JSON)", r"sluice::engine::process::Engine::eval|sluice::engine::eval::"),
    ("stage: split + rest", r"sluice::engine::stage::|sluice::engine::pipeline::worker"),
    ("mqtt completer task", r"sluice::source::mqtt::complete::"),
    ("mqtt request processor task", r"sluice::source::mqtt::process::"),
    ("rumqttc: socket write (writev)", r"writev|sendmsg|tcp_sendmsg"),
    ("rumqttc: socket read (recv)", r"__libc_recv|recvfrom|tcp_recvmsg"),
    ("rumqttc: state + framing", r"^rumqttc::|<rumqttc::"),
    ("mqtt event loop task", r"sluice::source::mqtt::MqttSource::event_loop"),
    ("tokio: park (epoll, futex wait)", r"epoll_wait|futex_wait|Condvar>::wait|park_timeout|park::Inner::park|Parker::park"),
    ("tokio: scheduler + wakeups", r"^tokio::|<tokio::"),
]


def samples(path):
    out = subprocess.run(["perf", "script", "-i", path, "-F", "comm,ip,sym"], capture_output=True, text=True, check=True).stdout
    comm, frames = None, []
    for line in out.splitlines():
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
        elif not line.startswith("\t"):
            comm, frames = line.strip(), []
        else:
            parts = line.strip().split(None, 1)
            frames.append(parts[1] if len(parts) > 1 else parts[0])
    if comm is not None:
        yield comm, frames


def main():
    path = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    cpu_s = float(os.environ.get("CPU_S", "0"))
    rules = [(c, re.compile(r)) for c, r in CATEGORIES]
    counts = collections.Counter()
    leaves = collections.defaultdict(collections.Counter)
    total = 0
    for comm, frames in samples(path):
        total += 1
        cat = "other"
        if comm.startswith("rdk:") or comm.startswith("producer_pollin"):
            # librdkafka's own threads (named by the thread, whatever the frames).
            cat = f"thread {comm}"
        else:
            syms = [re.sub(r" \(inlined\)$", "", f) for f in frames]
            for c, r in rules:
                if any(r.search(s) for s in syms):
                    cat = c
                    break
        counts[cat] += 1
        if frames:
            leaves[cat][re.sub(r" \(inlined\)$", "", frames[0])[:110]] += 1
    print(f"{path}: {total} samples")
    for cat, k in counts.most_common():
        share = k / total
        us = f"  {share * cpu_s * 1e6 / n:5.1f} µs/request" if n and cpu_s else ""
        print(f"  {share * 100:5.1f} %{us}  {cat}")
        if os.environ.get("LEAVES") and os.environ["LEAVES"] in cat:
            for leaf, m in leaves[cat].most_common(12):
                print(f"          {m * 100 / total:5.1f} %  {leaf}")


if __name__ == "__main__":
    main()
