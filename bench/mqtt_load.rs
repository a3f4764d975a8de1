//! Helper of `bench/mqtt_e2e.sh`: an MQTT load generator for the integration channel, on the
//! MQTT client Sluice itself uses (rumqttc), so that the publisher is not the bottleneck.
//!
//! - `requests --port P --count N`: N measure point requests (seed 003's format, two entries
//!   each, of distinct devices `bench-device-NNNNN` and distinct times) published at QoS 1 on
//!   `sys/{product}/integration/measurepoint/post`, at most `--window` (default 256) without a
//!   reply at a time. The replies on `…/post_reply` are counted by code (200 expected). Before
//!   the timed part it subscribes and sends empty probe requests until one is answered, so
//!   Sluice is known to be subscribed. Exits 1 unless every request got a 200 reply.
//! - `ceiling --port P --count N`: the same payloads at QoS 1 to a topic nobody reads, at most
//!   `--window` without the broker's PUBACK: what the broker and this client allow.
//! - `devices --count D`: prints the `[[devices]]` tables of the D devices `requests` names,
//!   for a registry (`models/devices.toml` format).
//!
//! Both load modes print a human line and a `RESULT key=value …` line: `rate` (requests or
//! messages per second from the first publish to the last reply or PUBACK), `cpu_s` (this
//! process's CPU over that time), reply codes and latency percentiles.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::{Notify, Semaphore};

#[derive(Parser)]
#[command(about = "MQTT load for Sluice's integration channel (bench/mqtt_e2e.sh)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure point requests to Sluice, replies counted.
    Requests(Load),
    /// The same payloads to a topic nobody reads: the broker's and client's QoS 1 ceiling.
    Ceiling(Load),
    /// Prints the `[[devices]]` tables of the devices the requests name.
    Devices {
        /// How many devices.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Their product.
        #[arg(long, default_value = "productKey1")]
        product: String,
    },
}

#[derive(Args, Clone)]
struct Load {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(long)]
    port: u16,
    /// Requests (or messages) to publish.
    #[arg(long, default_value_t = 50_000)]
    count: u64,
    /// Most requests without a reply (ceiling: messages without a PUBACK) at a time.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// MQTT connections to publish on (requests are dealt round-robin; the first one also
    /// receives the replies).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Runtime threads of this process.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The requests' product key (the topic's, and the devices').
    #[arg(long, default_value = "productKey1")]
    product: String,
    /// Distinct devices the entries cycle through (`bench-device-00000` …).
    #[arg(long, default_value_t = 1000)]
    devices: u64,
    /// QoS of the reply subscription (0 or 1).
    #[arg(long, default_value_t = 1)]
    reply_qos: u8,
    /// TCP_NODELAY on the connections (`--nodelay false`: Nagle's algorithm, rumqttc's default).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    nodelay: bool,
    /// Give up after this many seconds (exit 1).
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Devices { count, product } => {
            for d in 0..count {
                println!("[[devices]]\nproduct_key = \"{product}\"\ndevice_key = \"{}\"\n", device_key(d as u64));
            }
        }
        Cmd::Requests(load) => run(load, Mode::Requests),
        Cmd::Ceiling(load) => run(load, Mode::Ceiling),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Requests,
    Ceiling,
}

fn device_key(d: u64) -> String {
    format!("bench-device-{d:05}")
}

/// Request `i`: seed 003's measure point request with two entries, of devices `2i` and `2i+1`
/// (modulo `devices`) and times `2i` and `2i+1` ms after 2023-11-14.
fn request(i: u64, devices: u64) -> Vec<u8> {
    let entry = |j: u64| {
        let n = 2 * i + j;
        format!(
            r#"{{"deviceKey":"{}","measurepoints":{{"Power":{{"value":{},"quality":9}},"temp":{}.{},"branchCurr":["1.02","2.02","{}.93"]}},"time":{}}}"#,
            device_key(n % devices),
            n % 100,
            n % 50,
            n % 10,
            n % 10,
            1_700_000_000_000_u64 + n
        )
    };
    format!(r#"{{"id":"{i}","version":"1.0","params":[{},{}],"method":"integration.measurepoint.post"}}"#, entry(0), entry(1)).into_bytes()
}

/// What the event loops and the publishers share.
struct State {
    mode: Mode,
    count: u64,
    window: Semaphore,
    /// Nanoseconds since `t0` at which request `i` was handed to the client.
    sent_ns: Vec<AtomicU64>,
    t0: Mutex<Option<Instant>>,
    /// Replies (requests) or PUBACKs (ceiling) of the timed part.
    done: AtomicU64,
    /// Reply codes of the timed part.
    codes: Mutex<BTreeMap<u32, u64>>,
    /// Latencies (µs) of the timed part.
    latencies_us: Mutex<Vec<u64>>,
    probe_answered: AtomicBool,
    subscribed: AtomicBool,
    connected: AtomicU64,
    changed: Notify,
    failed: Mutex<Option<String>>,
}

impl State {
    fn elapsed_ns(&self) -> u64 {
        self.t0.lock().unwrap().map_or(0, |t| t.elapsed().as_nanos() as u64)
    }

    fn finish_one(&self, i: Option<u64>) {
        if let Some(i) = i.filter(|i| *i < self.count) {
            let sent = self.sent_ns[i as usize].load(Ordering::Relaxed);
            self.latencies_us.lock().unwrap().push(self.elapsed_ns().saturating_sub(sent) / 1000);
        }
        self.window.add_permits(1);
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.count {
            self.changed.notify_waiters();
        }
    }

    fn fail(&self, why: String) {
        self.failed.lock().unwrap().get_or_insert(why);
        self.changed.notify_waiters();
    }
}

#[derive(serde::Deserialize)]
struct Reply {
    #[serde(default)]
    id: serde_json::Value,
    code: u32,
}

/// Drives one connection: counts its PUBACKs (ceiling) or the replies it receives (requests).
async fn drive(mut ev: EventLoop, state: Arc<State>) {
    loop {
        match ev.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                state.connected.fetch_add(1, Ordering::AcqRel);
                state.changed.notify_waiters();
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                state.subscribed.store(true, Ordering::Release);
                state.changed.notify_waiters();
            }
            Ok(Event::Incoming(Packet::PubAck(_))) if state.mode == Mode::Ceiling => {
                // Every publish of this mode is timed (no probes).
                state.finish_one(None);
            }
            Ok(Event::Incoming(Packet::Publish(p))) if state.mode == Mode::Requests => match serde_json::from_slice::<Reply>(&p.payload) {
                Ok(r) => match r.id.as_str() {
                    Some(id) if id.starts_with("probe") => {
                        state.probe_answered.store(true, Ordering::Release);
                        state.changed.notify_waiters();
                    }
                    id => {
                        *state.codes.lock().unwrap().entry(r.code).or_default() += 1;
                        state.finish_one(id.and_then(|s| s.parse().ok()));
                    }
                },
                Err(e) => state.fail(format!("a reply that is not JSON ({e}): {:?}", String::from_utf8_lossy(&p.payload))),
            },
            Ok(_) => {}
            Err(e) => {
                state.fail(format!("connection lost: {e}"));
                return;
            }
        }
    }
}

/// Waits until `ready` holds (or a failure, or the deadline).
async fn until(state: &State, deadline: Instant, what: &str, ready: impl Fn() -> bool) -> Result<(), String> {
    loop {
        let notified = state.changed.notified();
        if let Some(why) = state.failed.lock().unwrap().clone() {
            return Err(why);
        }
        if ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        // Notified on every change; the short timeout covers a notification between the check
        // and the wait, and the deadline.
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn run(load: Load, mode: Mode) {
    let rt = if load.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(load.threads).enable_all().build()
    };
    match rt.expect("runtime").block_on(run_load(load, mode)) {
        Ok(ok) => {
            if !ok {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("mqtt_load: {e}");
            std::process::exit(1);
        }
    }
}

async fn run_load(load: Load, mode: Mode) -> Result<bool, String> {
    let connections = load.connections.max(1);
    let window = load.window.clamp(1, u16::MAX as usize);
    let state = Arc::new(State {
        mode,
        count: load.count,
        window: Semaphore::new(window),
        sent_ns: (0..load.count).map(|_| AtomicU64::new(0)).collect(),
        t0: Mutex::new(None),
        done: AtomicU64::new(0),
        codes: Mutex::default(),
        latencies_us: Mutex::new(Vec::with_capacity(load.count as usize)),
        probe_answered: AtomicBool::new(false),
        subscribed: AtomicBool::new(false),
        connected: AtomicU64::new(0),
        changed: Notify::new(),
        failed: Mutex::new(None),
    });
    let deadline = Instant::now() + Duration::from_secs(load.timeout_s);
    let pid = std::process::id();
    let mut clients = Vec::new();
    for c in 0..connections {
        let mut o = MqttOptions::new(format!("mqtt-load-{pid}-{c}"), load.host.clone(), load.port);
        // The client's own window never binds before ours; the request channel holds a window.
        o.set_clean_session(true).set_keep_alive(Duration::from_secs(30)).set_inflight(window as u16).set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut ev) = AsyncClient::new(o, window.max(64));
        let mut net = ev.network_options();
        net.set_tcp_nodelay(load.nodelay);
        ev.set_network_options(net);
        tokio::spawn(drive(ev, state.clone()));
        clients.push(client);
    }
    until(&state, deadline, "the broker's CONNACKs", || state.connected.load(Ordering::Acquire) >= connections as u64).await?;

    let topic = match mode {
        Mode::Requests => format!("sys/{}/integration/measurepoint/post", load.product),
        Mode::Ceiling => format!("bench/unread/{pid}"),
    };
    if mode == Mode::Requests {
        let qos = if load.reply_qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
        clients[0].subscribe(format!("{topic}_reply"), qos).await.map_err(|e| e.to_string())?;
        until(&state, deadline, "the SUBACK", || state.subscribed.load(Ordering::Acquire)).await?;
        // Empty requests (answered 200 at once, nothing for the rules) until Sluice answers one.
        let mut k = 0;
        while !state.probe_answered.load(Ordering::Acquire) {
            let probe = format!(r#"{{"id":"probe-{k}","version":"1.0","params":[],"method":"integration.measurepoint.post"}}"#);
            clients[0].publish(topic.clone(), QoS::AtLeastOnce, false, probe).await.map_err(|e| e.to_string())?;
            k += 1;
            let probe_deadline = (Instant::now() + Duration::from_millis(200)).min(deadline);
            match until(&state, probe_deadline, "a probe's reply", || state.probe_answered.load(Ordering::Acquire)).await {
                Ok(()) => break,
                Err(_) if Instant::now() < deadline && state.failed.lock().unwrap().is_none() => continue,
                Err(e) => return Err(format!("{e} (is Sluice subscribed to the broker?)")),
            }
        }
    }

    // Timed part: the payloads are made as they are sent (about 1 µs each).
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    *state.t0.lock().unwrap() = Some(t0);
    let mut publishers = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        let (state, client, topic, devices) = (state.clone(), client.clone(), topic.clone(), load.devices.max(1));
        publishers.push(tokio::spawn(async move {
            let mut i = c as u64;
            while i < state.count {
                state.window.acquire().await.expect("semaphore").forget();
                state.sent_ns[i as usize].store(state.elapsed_ns(), Ordering::Relaxed);
                if let Err(e) = client.publish(topic.clone(), QoS::AtLeastOnce, false, request(i, devices)).await {
                    state.fail(format!("publish: {e}"));
                    return;
                }
                i += connections as u64;
            }
        }));
    }
    let waited = until(&state, deadline, "every reply", || state.done.load(Ordering::Acquire) >= state.count).await;
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    for p in publishers {
        p.abort();
    }
    for c in &clients {
        let _ = c.try_disconnect();
    }
    let done = state.done.load(Ordering::Acquire);
    let codes = state.codes.lock().unwrap().clone();
    let mut lat = std::mem::take(&mut *state.latencies_us.lock().unwrap());
    lat.sort_unstable();
    let pct = |p: f64| if lat.is_empty() { 0.0 } else { lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1000.0 };
    let rate = done as f64 / secs;
    let ok = waited.is_ok()
        && match mode {
            Mode::Requests => codes.get(&200).copied().unwrap_or(0) == load.count,
            Mode::Ceiling => done == load.count,
        };
    let code_list = codes.iter().map(|(c, n)| format!("{c}x{n}")).collect::<Vec<_>>().join(",");
    match mode {
        Mode::Requests => println!(
            "mqtt_load: {done} of {} requests answered in {secs:.2} s = {rate:.0} requests/s ({:.0} entries/s); codes {code_list}; latency p50 {:.1} ms, p99 {:.1} ms; window {window}, {connections} connection(s); publisher CPU {cpu:.2} s",
            load.count,
            rate * 2.0,
            pct(0.5),
            pct(0.99)
        ),
        Mode::Ceiling => println!("mqtt_load: {done} of {} QoS 1 messages to an unread topic acknowledged in {secs:.2} s = {rate:.0} msg/s; window {window}, {connections} connection(s); publisher CPU {cpu:.2} s", load.count),
    }
    println!("RESULT count={} done={done} seconds={secs:.3} rate={rate:.1} cpu_s={cpu:.2} codes={code_list} p50_ms={:.2} p99_ms={:.2}", load.count, pct(0.5), pct(0.99));
    if let Err(e) = waited {
        eprintln!("mqtt_load: {e}");
    }
    Ok(ok)
}
