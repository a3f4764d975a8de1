//! Sluice's test kit, shared by the integration tests (`tests/it`) and the examples: a real
//! Kafka-compatible broker (tansu, sqlite storage) on a free loopback port, topics, a producer,
//! a collector of output records, Mosquitto, the admin API client, waits on state with a
//! deadline, the `sluice` binary as a child process, and process supervision ([`process`]:
//! children that die with their parent). Everything started here is stopped on drop.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub mod admin;
pub mod app;
pub mod config;
pub mod metrics;
pub mod mosquitto;
pub mod process;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, OwnedHeaders};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

/// The repository's root folder (where `Cargo.toml` of `sluice` is).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root")
}

/// The `sluice` binary: `$SLUICE_BIN`, else `sluice` in the target folder of the running test
/// binary (`target/<profile>/deps/it-…` → `target/<profile>/sluice`; cargo builds the binary
/// before the integration tests that use it).
pub fn sluice_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe folder").to_path_buf();
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
    }
    let bin = dir.join(format!("sluice{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "the sluice binary is not at {} (set SLUICE_BIN)", bin.display());
    bin
}

/// Polls `f` every 20 ms until it holds; false after `timeout`. The one poll loop of the kit:
/// tests wait on state (a file, a metric, a reply, an offset), never for a fixed time.
pub fn wait_until(timeout: Duration, f: impl FnMut() -> bool) -> bool {
    poll_until(timeout, Duration::from_millis(20), f)
}

/// [`wait_until`] polling every `every` (for checks that cost a request to a broker).
pub fn poll_until(timeout: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Process isolation for a test of the one test binary that reads or writes process-global
/// state (health checks, the recent-errors ring, the metrics registry): the test calls
/// `if !own_process(module_path!(), "its_fn_name") { return; }` first. In the test binary's
/// process this runs the binary again as a child, running only that test, asserts it passed and
/// returns false; in the child it returns true and the test's body runs there, alone.
pub fn own_process(module: &str, test: &str) -> bool {
    // `it::admin_http` → `admin_http::test`, the test's name in the harness.
    let name = match module.split_once("::") {
        Some((_, rest)) => format!("{rest}::{test}"),
        None => test.to_string(),
    };
    if std::env::var("SLUICE_TEST_OWN_PROCESS").is_ok_and(|v| v == name) {
        return true;
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1", "--include-ignored"])
        .env("SLUICE_TEST_OWN_PROCESS", &name)
        .stdin(Stdio::null())
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} failed in its own process ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("1 passed"), "{name} did not run in its own process:\n{stdout}\n{stderr}");
    false
}

/// The heavy tests (tens of thousands of records through brokers and `sluice`, or a whole
/// local stack) hold one of these slots while they run: at most [`heavy_slots`] of them at once,
/// so that they never crowd the machine's cores and their timeouts hold. Most of their time is
/// spent waiting (an outage's length, a group session), so two share a 2-core machine well.
pub fn heavy() -> Heavy {
    let (lock, freed) = &HEAVY;
    let mut running = lock.lock().unwrap_or_else(|e| e.into_inner());
    while *running >= heavy_slots() {
        running = freed.wait(running).unwrap_or_else(|e| e.into_inner());
    }
    *running += 1;
    Heavy(())
}

/// How many heavy tests may run at once: `$SLUICE_TEST_HEAVY` (1 runs them one by one), else 2.
pub fn heavy_slots() -> usize {
    std::env::var("SLUICE_TEST_HEAVY").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(2)
}

static HEAVY: (Mutex<usize>, std::sync::Condvar) = (Mutex::new(0), std::sync::Condvar::new());

/// A heavy test's slot (see [`heavy`]), given back on drop.
pub struct Heavy(());

impl Drop for Heavy {
    fn drop(&mut self) {
        let (lock, freed) = &HEAVY;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
    }
}

/// The broker binary: `$SLUICE_TANSU`, `$HOME/.cache/sluice/tools/bin/tansu`, or `tansu` on
/// `PATH`. Panics (the test fails, never skips) when there is none.
pub fn tansu_bin() -> PathBuf {
    find_tansu().unwrap_or_else(|e| panic!("{e}"))
}

/// [`tansu_bin`], or why there is none.
pub fn find_tansu() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("SLUICE_TANSU") {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(format!("SLUICE_TANSU={} is not a file", p.display())) };
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = Path::new(&home).join(".cache/sluice/tools/bin/tansu");
        if p.is_file() {
            return Ok(p);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("tansu");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err("the Kafka-compatible broker `tansu` was not found (looked at $SLUICE_TANSU, $HOME/.cache/sluice/tools/bin/tansu and PATH): run scripts/test-deps.sh, which installs it".into())
}

/// The command line of a tansu broker listening on `127.0.0.1:port`, its sqlite database
/// `tansu.db` in `dir` (its working folder), logging at `$SLUICE_TANSU_LOG` (default `warn`).
pub fn tansu_command(bin: &Path, dir: &Path, port: u16) -> Command {
    let url = format!("tcp://127.0.0.1:{port}");
    let mut cmd = Command::new(bin);
    cmd.args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "sqlite://tansu.db"])
        .current_dir(dir)
        .env_remove("STORAGE_ENGINE")
        .env_remove("LISTENER_URL")
        .env_remove("ADVERTISED_LISTENER_URL")
        .env("RUST_LOG", std::env::var("SLUICE_TANSU_LOG").unwrap_or_else(|_| "warn".into()));
    cmd
}

/// tansu 0.6's sqlite schema has no index on record headers, so every fetched record scans
/// them all (quadratic). Adds one to the database `db` (the index changes nothing else).
pub fn index_tansu_headers(db: &Path) -> Result<(), String> {
    let out = Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(db)
        .arg("CREATE INDEX IF NOT EXISTS header_topition_offset ON header (topition, offset_id);")
        .output()
        .map_err(|e| format!("cannot run sqlite3 (scripts/test-deps.sh installs it): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("sqlite3 failed: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// A temporary folder, kept (and its path printed) when `SLUICE_TEST_KEEP` is set.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let keep = std::env::var_os("SLUICE_TEST_KEEP").is_some();
    let dir = tempfile::Builder::new().prefix(prefix).disable_cleanup(keep).tempdir().expect("temp dir");
    if keep {
        eprintln!("keeping {}", dir.path().display());
    }
    dir
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("local addr").port()
}

/// A tansu broker with its own sqlite database in a temporary folder.
pub struct Broker {
    child: Option<Child>,
    /// The broker's folder (database and log).
    pub dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Broker {
    /// Starts a broker and waits until it answers metadata requests.
    /// A port picked free may be taken by another process before tansu binds it: a broker that
    /// exits before it is ready is started again on a new port (up to 5 times).
    pub fn start() -> Broker {
        let bin = tansu_bin();
        let mut b = Broker { child: None, dir: temp_dir("sluice-tansu-"), port: free_port() };
        for attempt in 1.. {
            b.spawn(&bin);
            match b.try_wait_ready(Duration::from_secs(30)) {
                Ok(()) => break,
                Err(e) if attempt < 5 && e.starts_with("tansu exited") => {
                    eprintln!("testkit: {e}; again on a new port");
                    b.kill();
                    b.port = free_port();
                }
                Err(e) => panic!("{e}"),
            }
        }
        b.index_headers();
        b
    }

    fn spawn(&mut self, bin: &Path) {
        let log = fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("tansu.log")).expect("broker log");
        let child = tansu_command(bin, self.dir.path(), self.port)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.child = Some(child);
    }

    /// `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    /// Stops the broker at once (SIGKILL), keeping its database.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same port and database.
    pub fn restart(&mut self) {
        self.kill();
        let bin = tansu_bin();
        self.spawn(&bin);
        self.wait_ready(Duration::from_secs(30));
    }

    fn wait_ready(&mut self, timeout: Duration) {
        self.try_wait_ready(timeout).unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", self.bootstrap()).set("log_level", "2").create().expect("metadata client");
        let mut exited = None;
        let ready = poll_until(timeout, Duration::from_millis(100), || {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                exited = Some(status);
                return true;
            }
            client.fetch_metadata(None, Duration::from_secs(1)).is_ok()
        });
        match (exited, ready) {
            (Some(status), _) => Err(format!("tansu exited ({status}) before it was ready on port {}:\n{}", self.port, self.log())),
            (None, true) => Ok(()),
            (None, false) => Err(format!("tansu not ready after {timeout:?}:\n{}", self.log())),
        }
    }

    fn index_headers(&self) {
        index_tansu_headers(&self.dir.path().join("tansu.db")).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Creates topics with their partition counts and waits until their metadata shows them.
    pub fn create_topics(&self, topics: &[(&str, i32)]) {
        let created = create_topics(&self.bootstrap(), topics, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(created, topics.len(), "some of the topics {topics:?} existed already");
    }

    /// The committed offsets of a consumer group on a topic, by partition. A partition the group
    /// never committed counts as 0: that is where the group starts reading it
    /// (`auto.offset.reset = earliest`), so an empty partition with no commit is as done as one
    /// committed at 0, and a non-empty one with no commit still shows as not done.
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", self.bootstrap()).set("group.id", group).create().expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = c.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
        (0..partitions).map(|p| got.find_partition(topic, p).and_then(|e| e.offset().to_raw()).filter(|o| *o >= 0).unwrap_or(0)).collect()
    }

    /// Waits until group `group` has committed every partition of `topic` to its end (all its
    /// inputs are done: their outputs were delivered before the commit); false on timeout.
    pub fn wait_committed(&self, group: &str, topic: &str, partitions: i32, timeout: Duration) -> bool {
        let end = self.end_offsets(topic, partitions);
        poll_until(timeout, Duration::from_millis(200), || self.committed(group, topic, partitions) == end)
    }

    /// The high watermarks (end offsets) of a topic, by partition.
    pub fn end_offsets(&self, topic: &str, partitions: i32) -> Vec<i64> {
        let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", self.bootstrap()).create().expect("consumer");
        (0..partitions).map(|p| c.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks").1).collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The cluster's metadata, retried until the broker at `brokers` answers or `timeout` passes.
pub fn wait_for_broker(brokers: &str, timeout: Duration) -> Result<Metadata, String> {
    let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).set("log_level", "2").create().map_err(|e| format!("client: {e}"))?;
    let mut last = Err(String::new());
    poll_until(timeout, Duration::from_millis(100), || {
        last = client.fetch_metadata(None, Duration::from_secs(1)).map_err(|e| e.to_string());
        last.is_ok()
    });
    last.map_err(|e| format!("broker {brokers} not reachable after {timeout:?}: {e}"))
}

/// Creates topics (name, partitions) on `brokers` (topics that exist already are fine) and waits
/// until the broker's metadata shows each new one with its partitions, and each existing one
/// with some; returns how many were created.
pub fn create_topics(brokers: &str, topics: &[(&str, i32)], timeout: Duration) -> Result<usize, String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create().map_err(|e| format!("admin client: {e}"))?;
    let new: Vec<NewTopic<'_>> = topics.iter().map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1))).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("runtime: {e}"))?;
    let results = rt.block_on(admin.create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))).map_err(|e| format!("create topics: {e}"))?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(t) => created.push(t),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(format!("cannot create topic {t}: {e}")),
        }
    }
    let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().map_err(|e| format!("client: {e}"))?;
    let deadline = Instant::now() + timeout;
    for (t, p) in topics {
        let want = |n: usize| if created.iter().any(|c| c == t) { n == *p as usize } else { n > 0 };
        let mut n = 0;
        if !poll_until(deadline.saturating_duration_since(Instant::now()), Duration::from_millis(100), || {
            n = client.fetch_metadata(Some(t), Duration::from_secs(2)).ok().and_then(|m| m.topics().first().map(|t| t.partitions().len())).unwrap_or(0);
            want(n)
        }) {
            return Err(format!("topic {t} has {n} partitions after {timeout:?}, not {p}"));
        }
    }
    Ok(created.len())
}

/// An input record for [`produce`].
#[derive(Clone, Debug)]
pub struct In {
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Record value.
    pub value: Vec<u8>,
}

impl In {
    /// A record with its IoT topic in the `iot-topic` header.
    pub fn iot(topic: &str, value: impl Into<Vec<u8>>) -> In {
        In { key: None, headers: vec![("iot-topic".into(), topic.as_bytes().to_vec())], value: value.into() }
    }
}

struct CountFailures(Arc<AtomicUsize>);
impl ClientContext for CountFailures {}
impl ProducerContext for CountFailures {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = r {
            eprintln!("test producer: delivery failed: {e}");
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Produces records to a topic and waits until the broker acknowledged them all.
pub fn produce(bootstrap: &str, topic: &str, records: impl IntoIterator<Item = In>) -> usize {
    let failures = Arc::new(AtomicUsize::new(0));
    let p: BaseProducer<CountFailures> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "5000")
        .set("queue.buffering.max.messages", "200000")
        .set("compression.type", "lz4")
        .create_with_context(CountFailures(failures.clone()))
        .expect("producer");
    let mut n = 0;
    for r in records {
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
        for (k, v) in &r.headers {
            headers = headers.insert(rdkafka::message::Header { key: k, value: Some(v) });
        }
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(&r.value[..]).headers(headers);
        if let Some(k) = &r.key {
            rec = rec.key(&k[..]);
        }
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert!(matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)), "produce: {e}");
                    rec = back;
                    p.poll(Duration::from_millis(10));
                }
            }
        }
        p.poll(Duration::ZERO);
        n += 1;
    }
    p.flush(Duration::from_secs(120)).expect("flush the test producer");
    assert_eq!(failures.load(Ordering::Relaxed), 0, "test producer: some records were not delivered");
    n
}

/// An output record seen by a [`Collector`].
#[derive(Clone, Debug)]
pub struct Rec {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key (UTF-8).
    pub key: Option<String>,
    /// Headers (UTF-8), in order.
    pub headers: Vec<(String, String)>,
    /// Value.
    pub value: Vec<u8>,
}

impl Rec {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The value as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.value).unwrap_or_else(|e| panic!("record value is not JSON ({e}): {}", String::from_utf8_lossy(&self.value)))
    }
}

/// Reads every record of some topics from the beginning, in the background (no consumer
/// group: partitions assigned by hand).
pub struct Collector {
    bootstrap: String,
    /// Every (topic, partition) read.
    partitions: Vec<(String, i32)>,
    recs: Arc<Mutex<Vec<Rec>>>,
    /// The consumer's next offset by (topic, partition), once it has read there.
    positions: Arc<Mutex<HashMap<(String, i32), i64>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    /// Starts reading `topics` (which must exist).
    pub fn start(bootstrap: &str, topics: &[&str]) -> Collector {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "sluice-test-collector")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "100")
            .create()
            .expect("collector consumer");
        let mut tpl = TopicPartitionList::new();
        let mut partitions = Vec::new();
        for t in topics {
            let md = consumer.fetch_metadata(Some(t), Duration::from_secs(10)).expect("metadata");
            let n = md.topics().first().map_or(0, |t| t.partitions().len());
            assert!(n > 0, "collector: topic {t} has no partitions");
            for p in 0..n as i32 {
                tpl.add_partition_offset(t, p, Offset::Beginning).expect("offset");
                partitions.push((t.to_string(), p));
            }
        }
        consumer.assign(&tpl).expect("assign");
        let recs = Arc::new(Mutex::new(Vec::new()));
        let positions = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (recs, positions, stop) = (recs.clone(), positions.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let polled = consumer.poll(Duration::from_millis(100));
                    if let Some(Ok(m)) = polled {
                        let headers = m.headers().map(|hs| hs.iter().map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())).collect()).unwrap_or_default();
                        let rec = Rec {
                            topic: m.topic().to_string(),
                            partition: m.partition(),
                            offset: m.offset(),
                            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                            headers,
                            value: m.payload().unwrap_or_default().to_vec(),
                        };
                        recs.lock().unwrap().push(rec);
                    }
                    // Where the consumer reads next, by partition: past every record read (and
                    // kept, just above), the offsets a broker skips included.
                    if let Ok(tpl) = consumer.position() {
                        let mut pos = positions.lock().unwrap();
                        for e in tpl.elements() {
                            if let Some(o) = e.offset().to_raw().filter(|o| *o >= 0) {
                                pos.insert((e.topic().to_string(), e.partition()), o);
                            }
                        }
                    }
                }
            })
        };
        Collector { bootstrap: bootstrap.to_string(), partitions, recs, positions, stop, thread: Some(thread) }
    }

    /// Waits until the collector has read every record the broker holds in its topics right now
    /// (up to each partition's high watermark, read once at the start); false on timeout. Once
    /// the producers are done (every input committed, every reply in), the records read are
    /// then exactly what was written: a late duplicate is among them, not still on its way.
    pub fn wait_caught_up(&self, timeout: Duration) -> bool {
        let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &self.bootstrap).create().expect("consumer");
        let ends: Vec<(&str, i32, i64)> = self.partitions.iter().map(|(t, p)| (t.as_str(), *p, c.fetch_watermarks(t, *p, Duration::from_secs(10)).expect("watermarks").1)).collect();
        wait_until(timeout, || {
            let pos = self.positions.lock().unwrap();
            let recs = self.recs.lock().unwrap();
            ends.iter().all(|(t, p, end)| *end <= 0 || pos.get(&(t.to_string(), *p)).is_some_and(|o| o >= end) || recs.iter().any(|r| r.topic == *t && r.partition == *p && r.offset >= end - 1))
        })
    }

    /// Waits until `done` holds for the records read so far; false on timeout. Checked every
    /// 250 ms: `done` runs under the collector's lock (and often parses every record), so
    /// checking it more often starves the collector of the records it waits for.
    pub fn wait_for(&self, timeout: Duration, mut done: impl FnMut(&[Rec]) -> bool) -> bool {
        poll_until(timeout, Duration::from_millis(250), || done(&self.recs.lock().unwrap()))
    }

    /// The records read so far.
    pub fn records(&self) -> Vec<Rec> {
        self.recs.lock().unwrap().clone()
    }

    /// How many records were read so far.
    pub fn len(&self) -> usize {
        self.recs.lock().unwrap().len()
    }

    /// Whether no record was read so far.
    pub fn is_empty(&self) -> bool {
        self.recs.lock().unwrap().is_empty()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The `sluice` binary running `sluice run --config …`, its stderr in a log file.
pub struct Sluice {
    child: Option<Child>,
    /// The log file (appended to by every start).
    pub log: PathBuf,
}

impl Sluice {
    /// Starts `sluice run --config config`.
    pub fn start(config: &Path, log: &Path) -> Sluice {
        let mut f = fs::OpenOptions::new().create(true).append(true).open(log).expect("sluice log");
        writeln!(f, "---- sluice start ----").expect("log");
        let child = Command::new(sluice_bin())
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log"))
            .stderr(f)
            .spawn()
            .expect("start sluice");
        Sluice { child: Some(child), log: log.to_path_buf() }
    }

    /// Starts `sluice run` on `config(port)` (written to `path`) with its admin server on
    /// `127.0.0.1:port`, a free port, and waits until it answers `/healthz`. A port picked free
    /// may be taken before Sluice binds it: when Sluice exits because it cannot listen there,
    /// it is started again on a new port (up to 5 times). Returns the process and the port.
    pub fn start_with_admin(path: &Path, log: &Path, mut config: impl FnMut(u16) -> toml::Table) -> (Sluice, u16) {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().expect("http client");
        for attempt in 1.. {
            let port = free_port();
            config::write_config(path, &config(port));
            let mut sluice = Sluice::start(path, log);
            let mut exited = false;
            let up = poll_until(Duration::from_secs(30), Duration::from_millis(50), || {
                exited = !sluice.running();
                exited || client.get(format!("http://127.0.0.1:{port}/healthz")).send().is_ok()
            });
            if up && !exited {
                return (sluice, port);
            }
            let taken = tail(log, 20).contains("admin server: cannot listen");
            assert!(taken && attempt < 5, "sluice did not serve its admin server on {port} (exited: {exited}); log:\n{}", tail(log, 40));
            eprintln!("testkit: admin port {port} taken; again on a new port");
        }
        unreachable!()
    }

    /// [`Sluice::start_with_admin`] on `config` with its `[admin] listen` set to the free port
    /// (other `[admin]` settings kept). Returns the process and the admin address
    /// (`127.0.0.1:PORT`).
    pub fn start_admin(config: &toml::Table, path: &Path, log: &Path) -> (Sluice, String) {
        let (sluice, port) = Sluice::start_with_admin(path, log, |port| {
            let mut c = config.clone();
            config::merge(&mut c, serde_json::json!({"admin": {"listen": format!("127.0.0.1:{port}")}}));
            c
        });
        (sluice, format!("127.0.0.1:{port}"))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Kills it at once (SIGKILL): no drain, no commit.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let ok = Command::new("kill").args(["-TERM", &c.id().to_string()]).status().expect("kill -TERM");
        assert!(ok.success(), "kill -TERM failed");
        let mut status = None;
        if !wait_until(timeout, || {
            status = c.try_wait().expect("wait");
            status.is_some()
        }) {
            let _ = c.kill();
            let _ = c.wait();
            panic!("sluice did not exit within {timeout:?} of SIGTERM; log:\n{}", tail(&self.log, 60));
        }
        status.expect("exit status")
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Writes a file, creating its folder.
pub fn write(path: &Path, text: &str) {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).expect("create dir");
    }
    fs::write(path, text).expect("write file");
}

/// The consumer group session timeout of [`kafka_config`]. Generous, because tansu answers
/// requests on a connection one at a time: while it writes a burst of produced records to its
/// sqlite store, an offset commit can take seconds, and the heartbeat queued behind it must not
/// expire the session (a member that rejoins a tansu 0.6 group alone is sometimes never
/// assigned again). Tests that wait for a dead member to leave the group wait this long.
pub const SESSION_TIMEOUT_MS: u64 = 20_000;

/// A `sluice run` configuration: a Kafka source (group `group`, topics `inputs`) and a Kafka
/// sink on `bootstrap`, rules from `rules`, with timings suited to tests. Change it with
/// [`config::merge`] and [`config::source`]; write it with [`config::write_config`].
pub fn kafka_config(bootstrap: &str, group: &str, inputs: &[&str], rules: &Path) -> toml::Table {
    config::table(serde_json::json!({
        "rules": {"paths": [config::path(rules)]},
        "engine": {"default_error_topic": "sluice-errors", "shutdown_timeout_ms": 20000, "workers": 2},
        "sources": [{
            "type": "kafka",
            "brokers": bootstrap,
            "topics": inputs,
            "group_id": group,
            "commit_interval_ms": 200,
            "properties": {
                "session.timeout.ms": SESSION_TIMEOUT_MS.to_string(),
                "heartbeat.interval.ms": "500",
                "topic.metadata.refresh.interval.ms": "2000",
            },
        }],
        "sink": {"type": "kafka", "brokers": bootstrap, "unknown_topic_timeout_ms": 3000, "retry_backoff_max_ms": 2000},
    }))
}

/// Counts of distinct values and duplicates.
pub fn count_distinct<T: std::hash::Hash + Eq>(items: impl IntoIterator<Item = T>) -> (usize, usize) {
    let mut seen: HashMap<T, usize> = HashMap::new();
    let mut total = 0;
    for i in items {
        *seen.entry(i).or_default() += 1;
        total += 1;
    }
    (seen.len(), total - seen.len())
}

/// `sluice_…` names in a PromQL expression, histogram suffixes removed.
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("sluice_") {
        let name: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[i + name.len()..];
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name).to_string();
        out.push(base);
    }
    out
}

/// Every metric the Grafana dashboard (`deploy/grafana/sluice-dashboard.json`) queries, sorted,
/// histogram suffixes removed.
pub fn dashboard_metrics() -> Vec<String> {
    let path = repo_root().join("deploy/grafana/sluice-dashboard.json");
    let dash: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).expect("read the dashboard")).expect("the dashboard is valid JSON");
    let mut names: Vec<String> = dash["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten().filter_map(|t| t["expr"].as_str()).flat_map(metric_names).collect::<Vec<_>>())
        .collect();
    names.sort();
    names.dedup();
    names
}
