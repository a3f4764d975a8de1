//! Hot reload under load (real binary, real Mosquitto): rules are edited by hand, through the
//! API and by SIGHUP while requests flow, and the outputs are counted exactly. A reload swaps the
//! whole rule set between two messages: each message is evaluated by the old set or by the new
//! one, never both and never neither; a rule that does not compile never replaces a running one.

use sluice_testkit as support;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use support::admin::{file_records, wait_until, Admin, Instance};
use support::mosquitto::Publisher;
use support::{tail, write, Sluice};

const TOKEN: &str = "reload-token";
const N: usize = 3000;

fn rule(name: &str, where_: &str, topic: &str) -> String {
    format!("name = \"{name}\"\nsql = \"\"\"\nSELECT deviceKey, measurepoints.seq AS seq\nFROM \"sys/+/integration/measurepoint/post\"\n{where_}\n\"\"\"\n[[actions]]\ntopic = \"{topic}\"\n")
}

/// The `seq` values of a file-sink output topic, in order.
fn seqs(out: &std::path::Path, topic: &str) -> Vec<u64> {
    file_records(out, topic).iter().map(|r| r["value"]["seq"].as_u64().expect("seq")).collect()
}

/// Asserts `got` is exactly the values of `want` (ascending, each once).
fn exactly(what: &str, got: &[u64], want: impl Iterator<Item = u64>) {
    let want: Vec<u64> = want.collect();
    let mut sorted = got.to_vec();
    sorted.sort_unstable();
    let distinct: BTreeSet<u64> = got.iter().copied().collect();
    assert_eq!(distinct.len(), got.len(), "{what}: {} duplicate(s)", got.len() - distinct.len());
    assert_eq!(sorted.len(), want.len(), "{what}: {} records, expected {}", sorted.len(), want.len());
    assert_eq!(sorted, want, "{what}: wrong records");
}

#[test]
fn rules_change_under_load_without_loss_or_duplicates() {
    let Instance { mosquitto, rules, out, mut sluice, log, admin, dir: _dir } =
        Instance::start("sluice-reload-", TOKEN, true, &[("a.toml", &rule("a", "", "out-a")), ("b.toml", &rule("b", "WHERE measurepoints.seq % 2 = 0", "out-b"))]);
    let publisher = Publisher::connect(mosquitto.port, "loader");
    publisher.wait_for_sluice(Duration::from_secs(30));
    let pings = publisher.replies().len(); // 0: the pings' replies are not among them

    let published = AtomicUsize::new(0);
    // Each mark is `published` read right after a change was seen in effect: every request
    // numbered from there on was sent after the swap.
    let marks = std::thread::scope(|s| {
        s.spawn(|| {
            for seq in 0..N {
                let req = json!({"id": format!("s{seq}"), "version": "1.0", "method": "integration.measurepoint.post", "params": [{"deviceKey": format!("d{}", seq % 7), "measurepoints": {"seq": seq}, "time": 1700000000000_i64}]});
                publisher.publish("sys/pkR/integration/measurepoint/post", req.to_string());
                published.store(seq + 1, Ordering::SeqCst);
                if seq % 10 == 9 {
                    // Pacing the load (not a wait): the edits land while requests flow.
                    std::thread::sleep(Duration::from_millis(8));
                }
            }
        });
        let at = |n: usize| assert!(wait_until(Duration::from_secs(60), || published.load(Ordering::SeqCst) >= n), "publisher stalled");
        let timeout = Duration::from_secs(20);

        // 1. A broken hand edit of `a`: refused, `a` keeps running.
        at(N / 6);
        write(&rules.join("a.toml"), "name = \"a\"\nsql = \"SELECT seq FROM \\\"sys/+/integration/measurepoint/post\\\" WHERE\"\n[[actions]]\ntopic = \"out-a\"\n");
        assert!(wait_until(timeout, || admin.rule("a").is_some_and(|r| r["status"] == "invalid")), "broken edit not seen; log:\n{}", tail(&log, 20));
        // 2. A hand edit of `b` that sends its output elsewhere.
        at(N / 3);
        write(&rules.join("b.toml"), &rule("b", "WHERE measurepoints.seq % 2 = 0", "out-b2"));
        assert!(wait_until(timeout, || admin.rule("b").is_some_and(|r| r["actions"] == json!(["out-b2"]))), "edit of b not seen");
        let b_edited = published.load(Ordering::SeqCst);
        // 3. A new rule through the API.
        at(N / 2);
        let (st, v) = admin.post("/api/v1/rules", &rule("c", "", "out-c"));
        assert_eq!(st, 201, "{v}");
        let c_created = published.load(Ordering::SeqCst);
        // 4. Disabled through the API.
        at(2 * N / 3);
        let (st, v) = admin.post("/api/v1/rules/c/disable", "");
        assert_eq!(st, 200, "{v}");
        let c_disabled = published.load(Ordering::SeqCst);
        (b_edited, c_created, c_disabled)
    });
    let (b_edited, c_created, c_disabled) = marks;

    // Every request answered 200: the channel replies once its outputs are written.
    assert!(wait_until(Duration::from_secs(120), || publisher.replies().len() >= pings + N), "{} of {N} replies; log:\n{}", publisher.replies().len() - pings, tail(&log, 30));
    let replies = publisher.replies();
    let codes: BTreeSet<String> = replies[pings..].iter().map(|r| r.body["code"].to_string()).collect();
    assert_eq!(codes, BTreeSet::from(["200".to_string()]), "reply codes");
    let metrics = admin.metrics();
    let (_, a_errors) = admin.get("/api/v1/rules/a/errors");
    let status = sluice.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}; log:\n{}", tail(&log, 30));

    // `a` ran on every message, through the refused edit.
    exactly("out-a", &seqs(&out, "out-a"), 0..N as u64);
    // `b`'s even numbers: each exactly once, all before the edit in out-b, all after in out-b2.
    let (b1, b2) = (seqs(&out, "out-b"), seqs(&out, "out-b2"));
    let mut b_all = b1.clone();
    b_all.extend(&b2);
    exactly("out-b + out-b2", &b_all, (0..N as u64).filter(|s| s % 2 == 0));
    let cut = *b2.first().expect("out-b2 has records");
    assert!(b1.iter().all(|&s| s < cut), "out-b has records after the cut at {cut}");
    assert!(cut as usize <= b_edited + 1, "the edit took effect at {cut}, after it was seen at {b_edited}");
    // `c`: a contiguous run, from no later than its creation was answered to before its
    // disabling was answered (requests still in flight at either swap may fall either side).
    let c = seqs(&out, "out-c");
    let (first, last) = (*c.first().expect("out-c has records"), *c.last().unwrap());
    exactly("out-c", &c, first..last + 1);
    assert!(first as usize <= c_created, "c started at {first}, after its creation was answered at {c_created}");
    assert!((last as usize) < c_disabled, "c ran on {last}, after its disabling was answered at {c_disabled}");
    eprintln!("hot reload: {N} messages; b switched at {cut}; c ran on {first}..={last}; out-a {}, out-b {}, out-b2 {}, out-c {}", N, b1.len(), b2.len(), c.len());

    // The refused edit was counted and reported with its position.
    let compile = a_errors["compile"].as_array().cloned().unwrap_or_default();
    assert!(compile.iter().any(|e| e["path"].as_str().is_some_and(|p| p.ends_with("a.toml")) && e["line"] == 2), "the refused edit is reported with path:line:col: {a_errors}");
    assert!(metrics.lines().any(|l| l.starts_with("sluice_rule_reloads_total{result=\"error\"}")), "{metrics}");
    assert!(metrics.contains("sluice_rule_files_invalid 1"), "{metrics}");
}

/// With `watch = false`, edits wait for SIGHUP (or the API's reload).
#[test]
fn sighup_reloads_when_watching_is_off() {
    let Instance { mosquitto, rules, out, mut sluice, log, admin, dir: _dir } = Instance::start("sluice-hup-", TOKEN, false, &[("a.toml", &rule("a", "", "out-a"))]);

    write(&rules.join("a.toml"), &rule("a", "", "out-a2"));
    write(&rules.join("new.toml"), &rule("new", "", "out-new"));
    // A negative: with the watcher off, nothing reloads; 8 debounce periods to go wrong.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(admin.rule("a").unwrap()["actions"], json!(["out-a"]), "not watching: no reload yet");
    assert!(admin.rule("new").is_none());
    let ok = Command::new("kill").args(["-HUP", &sluice.pid().to_string()]).status().unwrap();
    assert!(ok.success());
    assert!(wait_until(Duration::from_secs(10), || admin.rule("new").is_some_and(|r| r["status"] == "running")), "SIGHUP did not reload; log:\n{}", tail(&log, 20));
    assert_eq!(admin.rule("a").unwrap()["actions"], json!(["out-a2"]));
    assert!(sluice.running(), "SIGHUP does not stop sluice");
    let publisher = Publisher::connect(mosquitto.port, "hup");
    publisher.wait_for_sluice(Duration::from_secs(30));
    let n = publisher.replies().len();
    publisher.publish("sys/pkH/integration/measurepoint/post", json!({"id": "h1", "version": "1.0", "params": [{"deviceKey": "d", "measurepoints": {"seq": 1}, "time": 1}]}).to_string());
    assert!(publisher.wait_reply(n, Duration::from_secs(20)).is_some());
    let status = sluice.terminate(Duration::from_secs(20));
    assert!(status.success());
    assert_eq!(seqs(&out, "out-a2"), vec![1]);
    assert_eq!(seqs(&out, "out-new"), vec![1]);
    assert!(file_records(&out, "out-a").is_empty());
}

/// The same through Kafka (tansu) in and out: a rule edited while the consumer group reads;
/// every input's outputs arrive exactly once, split at one point, and the offsets are committed
/// to the end.
#[test]
fn kafka_rules_change_under_load_without_loss_or_duplicates() {
    let _heavy = sluice_testkit::heavy();
    use support::{kafka_config, produce, Broker, Collector, In};
    const K: usize = 6000;
    let broker = Broker::start();
    broker.create_topics(&[("reload-in", 1), ("out-a", 1), ("out-b", 1), ("out-b2", 1), ("sluice-errors", 1)]);
    let dir = support::temp_dir("sluice-kreload-");
    let rules = dir.path().join("rules");
    let kind = "/sys/pkK/dev/thing/event/property/post";
    let krule = |name: &str, where_: &str, topic: &str| format!("name = \"{name}\"\nsql = \"SELECT seq FROM \\\"/sys/+/+/thing/event/property/post\\\" {where_}\"\n[[actions]]\ntopic = \"{topic}\"\n");
    write(&rules.join("a.toml"), &krule("a", "", "out-a"));
    write(&rules.join("b.toml"), &krule("b", "WHERE seq % 2 = 0", "out-b"));
    let config = dir.path().join("sluice.toml");
    let mut text = kafka_config(&broker.bootstrap(), "reload-group", &["reload-in"], &rules);
    support::config::merge(&mut text, json!({"rules": {"debounce_ms": 100}, "sink": {"linger_ms": 5}, "admin": {"token": TOKEN}}));
    let log = dir.path().join("sluice.log");
    let collector = Collector::start(&broker.bootstrap(), &["out-a", "out-b", "out-b2"]);
    let (mut sluice, addr) = Sluice::start_admin(&text, &config, &log);
    let admin = Admin::new(&format!("http://{addr}"), Some(TOKEN));

    let published = AtomicUsize::new(0);
    let edited_at = std::thread::scope(|s| {
        s.spawn(|| {
            for chunk in 0..K / 100 {
                let recs = (chunk * 100..(chunk + 1) * 100).map(|seq| In::iot(kind, json!({ "seq": seq }).to_string()));
                produce(&broker.bootstrap(), "reload-in", recs);
                published.store((chunk + 1) * 100, Ordering::SeqCst);
            }
        });
        // Wait until the group is reading, then break `a` and re-route `b`.
        assert!(wait_until(Duration::from_secs(60), || collector.len() > 500), "no output; log:\n{}", tail(&log, 30));
        write(&rules.join("a.toml"), "name = \"a\"\nsql = \"SELECT seq FROM\"\n[[actions]]\ntopic = \"out-a\"\n");
        write(&rules.join("b.toml"), &krule("b", "WHERE seq % 2 = 0", "out-b2"));
        assert!(wait_until(Duration::from_secs(20), || admin.rule("b").is_some_and(|r| r["actions"] == json!(["out-b2"]))), "edit not seen; log:\n{}", tail(&log, 20));
        assert_eq!(admin.rule("a").unwrap()["status"], "invalid");
        published.load(Ordering::SeqCst)
    });
    let want = K + K / 2;
    assert!(collector.wait_for(Duration::from_secs(180), |r| r.len() >= want), "{} of {want} outputs; log:\n{}", collector.len(), tail(&log, 30));
    assert!(wait_until(Duration::from_secs(60), || broker.committed("reload-group", "reload-in", 1) == vec![K as i64]), "commits: {:?}", broker.committed("reload-group", "reload-in", 1));
    let status = sluice.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}; log:\n{}", tail(&log, 30));
    // Every input committed and sluice gone: every output is in the broker; read them all.
    assert!(collector.wait_caught_up(Duration::from_secs(30)), "the collector did not catch up with the broker");
    let recs = collector.records();
    let of = |t: &str| -> Vec<u64> { recs.iter().filter(|r| r.topic == t).map(|r| r.json()["seq"].as_u64().expect("seq")).collect() };
    exactly("kafka out-a", &of("out-a"), 0..K as u64);
    let (b1, b2) = (of("out-b"), of("out-b2"));
    let mut b_all = b1.clone();
    b_all.extend(&b2);
    exactly("kafka out-b + out-b2", &b_all, (0..K as u64).filter(|s| s % 2 == 0));
    let cut = *b2.first().expect("out-b2 has records");
    assert!(b1.iter().all(|&s| s < cut), "out-b has records after the cut at {cut}");
    assert!(cut as usize <= edited_at + 1, "the edit took effect at {cut}, after it was seen at {edited_at}");
    eprintln!("kafka hot reload: {K} messages; b switched at {cut} (edit seen with {edited_at} produced); out-b {}, out-b2 {}", b1.len(), b2.len());
}
