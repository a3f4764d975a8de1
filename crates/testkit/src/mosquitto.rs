//! A Mosquitto broker on a free loopback port (optionally with a second, TLS listener), and a
//! test MQTT client that publishes integration requests and collects their replies. Stopped on
//! drop.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

/// The broker binary: `$SLUICE_MOSQUITTO`, or `mosquitto` on `PATH` or in `/usr/sbin`.
pub fn mosquitto_bin() -> PathBuf {
    find_mosquitto().expect("`mosquitto` not found: run scripts/test-deps.sh, which installs it")
}

/// [`mosquitto_bin`], or None when there is none.
pub fn find_mosquitto() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SLUICE_MOSQUITTO") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.push("/usr/sbin".into());
    dirs.into_iter().map(|d| d.join("mosquitto")).find(|p| p.is_file())
}

/// A TLS listener's PEM files.
#[derive(Clone, Debug)]
pub struct TlsListener {
    /// The broker's certificate (chain).
    pub cert_file: PathBuf,
    /// Its private key.
    pub key_file: PathBuf,
    /// The CA that client certificates must chain to.
    pub ca_file: PathBuf,
    /// mTLS: clients must present a certificate signed by `ca_file` (`require_certificate`).
    pub require_certificate: bool,
}

/// A running Mosquitto.
pub struct Mosquitto {
    child: Option<Child>,
    /// Its folder (configuration and log).
    pub dir: tempfile::TempDir,
    /// Its port on 127.0.0.1 (plain MQTT).
    pub port: u16,
    /// Its TLS listener's port on 127.0.0.1, when it has one.
    pub tls_port: Option<u16>,
    /// Global options of its configuration, over the kit's defaults ([`Mosquitto::start_with_options`]).
    options: Vec<(String, String)>,
}

/// The kit's global options: anonymous, in memory, and no limit on the messages queued for a
/// slow client (Mosquitto drops QoS 1 messages beyond 1000 by default): on a loaded machine the
/// test client reads replies late.
const DEFAULT_OPTIONS: &[(&str, &str)] = &[("per_listener_settings", "false"), ("allow_anonymous", "true"), ("persistence", "false"), ("max_queued_messages", "0")];

impl Mosquitto {
    /// Starts a broker (anonymous, no persistence) and waits until it accepts connections.
    pub fn start() -> Mosquitto {
        Mosquitto::start_with(None, &[])
    }

    /// Starts a broker with a plain listener (for test clients) and a TLS listener.
    pub fn start_tls(tls: &TlsListener) -> Mosquitto {
        Mosquitto::start_with(Some(tls), &[])
    }

    /// Starts a broker with global `options` (`mosquitto.conf` name and value) replacing or
    /// adding to the kit's defaults: `[("max_queued_messages", "5"), ("sys_interval", "1")]`.
    pub fn start_with_options(options: &[(&str, &str)]) -> Mosquitto {
        Mosquitto::start_with(None, options)
    }

    /// A port picked free may be taken by another process before Mosquitto binds it: a broker
    /// that exits before it listens is started again on new ports (up to 5 times).
    fn start_with(tls: Option<&TlsListener>, options: &[(&str, &str)]) -> Mosquitto {
        let dir = crate::temp_dir("sluice-mosquitto-");
        let options: Vec<(String, String)> = DEFAULT_OPTIONS.iter().filter(|(k, _)| !options.iter().any(|(o, _)| o == k)).chain(options).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut m = Mosquitto { child: None, dir, port: 0, tls_port: None, options };
        for attempt in 1.. {
            (m.port, m.tls_port) = (crate::free_port(), tls.map(|_| crate::free_port()));
            m.configure(tls);
            match m.try_spawn() {
                Ok(()) => break,
                Err(e) if attempt < 5 && e.contains("exit: Some") => eprintln!("testkit: {e}; again on new ports"),
                Err(e) => panic!("{e}"),
            }
        }
        m
    }

    /// Writes the configuration: the plain listener, and the TLS listener with `tls` (which
    /// takes effect at the next [`Mosquitto::restart`]).
    pub fn configure(&self, tls: Option<&TlsListener>) {
        let mut conf: String = self.options.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
        conf += &format!("listener {} 127.0.0.1\n", self.port);
        if let (Some(t), Some(port)) = (tls, self.tls_port) {
            let path = |p: &PathBuf| p.display().to_string();
            conf += &format!("listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {}\n", path(&t.ca_file), path(&t.cert_file), path(&t.key_file), t.require_certificate);
        }
        std::fs::write(self.dir.path().join("mosquitto.conf"), conf).expect("mosquitto.conf");
    }

    fn spawn(&mut self) {
        self.try_spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("mosquitto.log")).expect("log");
        let conf = self.dir.path().join("mosquitto.conf");
        let child = Command::new(mosquitto_bin()).arg("-c").arg(&conf).stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log).spawn().expect("start mosquitto");
        self.child = Some(child);
        for port in std::iter::once(self.port).chain(self.tls_port) {
            let mut exited = None;
            let listening = crate::poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
                exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                exited.is_some() || TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            if exited.is_some() || !listening {
                self.stop();
                return Err(format!("mosquitto not listening on {port} (exit: {exited:?}): {}", self.log()));
            }
        }
        Ok(())
    }

    /// Stops the broker at once (SIGKILL); [`Mosquitto::restart`] starts it again on its port.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same port (stopping it first if it runs).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// `mqtts://HOST:TLS_PORT` (HOST is the name Sluice checks the broker's certificate
    /// against; it must resolve to 127.0.0.1).
    pub fn tls_url(&self, host: &str) -> String {
        format!("mqtts://{host}:{}", self.tls_port.expect("a TLS listener"))
    }

    /// The broker's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The id of [`Publisher::wait_for_sluice`]'s requests.
pub const PING_ID: &str = "ping";

/// A reply received by a [`Publisher`].
#[derive(Clone, Debug)]
pub struct Reply {
    /// Its topic.
    pub topic: String,
    /// Its body.
    pub body: serde_json::Value,
}

/// A third-party system: publishes requests (QoS 1) and collects every reply.
pub struct Publisher {
    client: Client,
    replies: Arc<Mutex<Vec<Reply>>>,
    /// Replies to [`Publisher::wait_for_sluice`]'s pings (id `ping`), kept out of `replies`: a
    /// late one cannot pass for the reply to a test's request.
    pings: Arc<Mutex<usize>>,
    /// Publishes sent, and PUBACKs received: the broker has taken (queued or dropped) them.
    published: Arc<Mutex<usize>>,
    acked: Arc<Mutex<usize>>,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Connects to `port` and subscribes to every reply topic.
    pub fn connect(port: u16, client_id: &str) -> Publisher {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30)).set_max_packet_size(64 << 20, 64 << 20);
        let (client, mut conn) = Client::new(o, 100);
        let replies = Arc::new(Mutex::new(Vec::new()));
        let pings = Arc::new(Mutex::new(0));
        let acked = Arc::new(Mutex::new(0));
        let (sub_tx, sub_rx) = std::sync::mpsc::channel();
        client.subscribe("sys/+/integration/+/post_reply", QoS::AtLeastOnce).expect("subscribe");
        client.subscribe("sys/+/integration/up_raw_reply", QoS::AtLeastOnce).expect("subscribe");
        let thread = {
            let (replies, pings, acked) = (replies.clone(), pings.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut subacks = 0;
                for ev in conn.iter() {
                    match ev {
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            subacks += 1;
                            if subacks == 2 {
                                let _ = sub_tx.send(());
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let body = serde_json::from_slice(&p.payload).unwrap_or_else(|e| serde_json::Value::String(format!("reply is not JSON: {e}")));
                            if body["id"] == PING_ID {
                                *pings.lock().unwrap() += 1;
                            } else {
                                replies.lock().unwrap().push(Reply { topic: p.topic.clone(), body });
                            }
                        }
                        Ok(Event::Incoming(Packet::PubAck(_))) => *acked.lock().unwrap() += 1,
                        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                        Ok(_) => {}
                        // The client reconnects: back off between attempts.
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            })
        };
        sub_rx.recv_timeout(Duration::from_secs(10)).expect("test client subscribed");
        Publisher { client, replies, pings, published: Arc::new(Mutex::new(0)), acked, thread: Some(thread) }
    }

    /// Publishes a request (QoS 1).
    pub fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        *self.published.lock().unwrap() += 1;
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.into()).expect("publish");
    }

    /// Waits until the broker acknowledged every request published so far (it has queued them
    /// for their subscribers, or dropped them); false on timeout.
    pub fn wait_acked(&self, timeout: Duration) -> bool {
        crate::wait_until(timeout, || *self.acked.lock().unwrap() >= *self.published.lock().unwrap())
    }

    /// Every reply so far.
    pub fn replies(&self) -> Vec<Reply> {
        self.replies.lock().unwrap().clone()
    }

    /// Publishes a request and waits for the next reply.
    pub fn request(&self, topic: &str, payload: impl Into<Vec<u8>>, timeout: Duration) -> Option<Reply> {
        let n = self.replies.lock().unwrap().len();
        self.publish(topic, payload);
        self.wait_reply(n, timeout)
    }

    /// Waits for reply number `n` (0-based; pings not counted).
    pub fn wait_reply(&self, n: usize, timeout: Duration) -> Option<Reply> {
        let mut got = None;
        crate::wait_until(timeout, || {
            got = self.replies.lock().unwrap().get(n).cloned();
            got.is_some()
        });
        got
    }

    /// How many pings were answered so far.
    pub fn pings(&self) -> usize {
        *self.pings.lock().unwrap()
    }

    /// Sends an empty request (id `ping`) until Sluice answers one: its subscription is in
    /// place. Answers to pings never show in [`Publisher::replies`].
    pub fn wait_for_sluice(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let ping = format!(r#"{{"id":"{PING_ID}","version":"1.0","params":[],"method":"integration.event.post"}}"#);
        loop {
            let n = self.pings();
            self.publish("sys/ping/integration/event/post", ping.as_str());
            if crate::wait_until(Duration::from_millis(500), || self.pings() > n) {
                return;
            }
            assert!(Instant::now() < deadline, "sluice did not answer within {timeout:?}");
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // The connection thread ends with the process (joining could wait on a reconnect).
        let _ = self.client.try_disconnect();
        drop(self.thread.take());
    }
}
