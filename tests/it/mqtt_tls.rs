//! The MQTT integration channel over TLS and mutual TLS, against a real Mosquitto with a TLS
//! listener and certificates made here (rcgen): the `sluice` binary connects to
//! `mqtts://localhost:PORT`, answers requests over TLS, and for each kind of bad certificate
//! (a CA it does not trust, a server certificate for another name, an expired client
//! certificate) says what is wrong in its log and in `/readyz`, keeps retrying, and stops on
//! SIGTERM. Test clients publish on the broker's plain listener; only Sluice's connection is
//! TLS.

use sluice_testkit as support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{json, Value};
use support::admin::{file_records, mqtt_file_config, wait_until, Admin};
use support::metrics::Metrics;
use support::mosquitto::{Mosquitto, Publisher, TlsListener};
use support::{config, free_port, tail, temp_dir, write, Sluice};

const WAIT: Duration = Duration::from_secs(30);
/// The `[engine] shutdown_timeout_ms` of [`mqtt_file_config`].
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
const TOKEN: &str = "tls-token";
const CLIENT_ID: &str = "sluice-under-test";

// Seed 003's measure point sample.
const SEED_003_MEASUREPOINTS: &str = r#"{"id":"123","version":"1.0","params":[{"deviceKey":"device1","measurepoints":{"Power":{"value":1,"quality":9},"temp":1.02,"branchCurr":["1.02","2.02","7.93"]},"time":123456},{"deviceKey":"device1","measurepoints":{"Power":{"value":2,"quality":9},"temp":2.02,"branchCurr":["2.02","3.02","9.93"]},"time":123567},{"deviceKey":"device2","measurepoints":{"Power":{"value":1,"quality":9},"temp":1.02,"branchCurr":["1.02","2.02","7.93"]},"time":123456}],"method":"integration.measurepoint.post"}"#;

/// A certificate authority made for the test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate's PEM file.
    file: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        p.distinguished_name.push(DnType::CommonName, format!("Sluice test CA {name}"));
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("CA key");
        let cert = p.self_signed(&key).expect("CA certificate");
        let file = dir.join(format!("{name}-ca.pem"));
        write(&file, &cert.pem());
        Ca { issuer: Issuer::new(p, key), file }
    }

    /// A certificate for `names` signed by this CA, for a server or a client, expired or not:
    /// its certificate and key files.
    fn issue(&self, dir: &Path, file: &str, names: &[&str], client: bool, expired: bool) -> (PathBuf, PathBuf) {
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        p.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or(file));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![if client { ExtendedKeyUsagePurpose::ClientAuth } else { ExtendedKeyUsagePurpose::ServerAuth }];
        if expired {
            (p.not_before, p.not_after) = (date_time_ymd(2020, 1, 1), date_time_ymd(2021, 1, 1));
        }
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.issuer).expect("certificate");
        let (cert_file, key_file) = (dir.join(format!("{file}.pem")), dir.join(format!("{file}.key")));
        write(&cert_file, &cert.pem());
        write(&key_file, &key.serialize_pem());
        (cert_file, key_file)
    }
}

/// The test's certificates: the broker's CA and a second one, server certificates for
/// `localhost` and for another name, good and expired client certificates.
struct Pki {
    ca: Ca,
    other_ca: Ca,
    server: (PathBuf, PathBuf),
    wrong_host: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    expired_client: (PathBuf, PathBuf),
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let dir = dir.join("pki");
        let ca = Ca::new(&dir, "broker");
        let other_ca = Ca::new(&dir, "other");
        Pki {
            server: ca.issue(&dir, "server", &["localhost"], false, false),
            wrong_host: ca.issue(&dir, "wrong-host", &["mqtt.other.example"], false, false),
            client: ca.issue(&dir, "client", &["sluice-client"], true, false),
            expired_client: ca.issue(&dir, "expired-client", &["sluice-client"], true, true),
            ca,
            other_ca,
        }
    }

    /// The broker's TLS listener with `server` (cert, key), clients checked against `ca`.
    fn listener(&self, server: &(PathBuf, PathBuf), require_certificate: bool) -> TlsListener {
        TlsListener { cert_file: server.0.clone(), key_file: server.1.clone(), ca_file: self.ca.file.clone(), require_certificate }
    }
}

/// `[sources.tls]`: trust `ca`, and present `client` (cert, key) when given.
fn tls_table(ca: &Path, client: Option<&(PathBuf, PathBuf)>) -> Value {
    let mut t = json!({"ca_file": config::path(ca)});
    if let Some((cert, key)) = client {
        t["client_cert_file"] = json!(config::path(cert));
        t["client_key_file"] = json!(config::path(key));
    }
    t
}

/// `sluice run` on the integration channel over `mqtts://localhost:TLS_PORT` with `tls`
/// (a `[sources.tls]` table), the measure point rule into the file sink, and the admin server.
struct Tls {
    mosquitto: Mosquitto,
    dir: tempfile::TempDir,
    out: PathBuf,
    sluice: Sluice,
    admin: Admin,
    /// The admin server's address (`127.0.0.1:PORT`).
    admin_addr: String,
    /// The MQTT source's readiness check.
    check: String,
}

impl Tls {
    /// Starts Sluice and waits until its admin server answers.
    fn start(prefix: &str, pki_dir: tempfile::TempDir, listener: &TlsListener, tls: &Value) -> Tls {
        let t = Tls::spawn(prefix, pki_dir, listener, tls);
        t.admin.wait_up(WAIT);
        t
    }

    /// Starts Sluice.
    fn spawn(prefix: &str, pki_dir: tempfile::TempDir, listener: &TlsListener, tls: &Value) -> Tls {
        let mosquitto = Mosquitto::start_tls(listener);
        let dir = pki_dir;
        let (rules, out) = (dir.path().join("rules"), dir.path().join("out"));
        let rule = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/integration_measurepoint.toml")).expect("measure point rule");
        write(&rules.join("integration_measurepoint.toml"), &rule);
        let url = mosquitto.tls_url("localhost");
        let port = free_port();
        let mut config = mqtt_file_config(&rules, &url, &out, port, TOKEN, false);
        config::merge(config::source(&mut config, 0), json!({"reconnect_backoff_max_ms": 1000, "tls": tls}));
        let config_file = dir.path().join("sluice.toml");
        config::write_config(&config_file, &config);
        let sluice = Sluice::start(&config_file, &dir.path().join("sluice.log"));
        let admin = Admin::new(&format!("http://127.0.0.1:{port}"), Some(TOKEN));
        eprintln!("{prefix}: sluice on {url}, admin on {port}");
        Tls { mosquitto, dir, out, sluice, admin, admin_addr: format!("127.0.0.1:{port}"), check: format!("source:mqtt:{url}:{CLIENT_ID}") }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.sluice.log).unwrap_or_default()
    }

    /// `/readyz`: its status and the MQTT check's (ok, detail).
    fn readiness(&self) -> (u16, Option<(bool, String)>) {
        let (status, body) = self.admin.get("/readyz");
        let check =
            body["checks"].as_array().and_then(|cs| cs.iter().find(|c| c["name"] == self.check.as_str())).map(|c| (c["ok"] == json!(true), c["detail"].as_str().unwrap_or_default().to_string()));
        (status, check)
    }

    /// Waits until `/readyz` answers `status` with the MQTT check as `ok` and its detail
    /// containing `detail`; returns the detail.
    fn wait_ready(&self, status: u16, ok: bool, detail: &str) -> String {
        let mut last = (0, None);
        if wait_until(WAIT, || {
            last = self.readiness();
            last.0 == status && last.1.as_ref().is_some_and(|(o, d)| *o == ok && d.contains(detail))
        }) {
            return last.1.map(|(_, d)| d).unwrap_or_default();
        }
        panic!(
            "/readyz never answered {status} with {} ok={ok} containing {detail:?}; last: {last:?}\nsluice log:\n{}\nmosquitto log:\n{}",
            self.check,
            tail(&self.sluice.log, 40),
            self.mosquitto.log()
        );
    }

    /// Waits until Sluice has counted at least `n` failed connection attempts
    /// (`sluice_mqtt_connection_events_total{event="failed"}`: it keeps retrying), and checks
    /// that `/readyz` still names `problem`.
    fn wait_failed_attempts(&self, n: usize, problem: &str) {
        let source = &self.check["source:".len()..];
        let count = || Metrics::try_fetch(&self.admin_addr).and_then(|m| m.get("sluice_mqtt_connection_events_total", &[("source", source), ("event", "failed")])).unwrap_or(0.0) as usize;
        assert!(support::poll_until(WAIT, Duration::from_millis(100), || count() >= n), "{} of {n} failed connection attempts counted:\n{}", count(), tail(&self.sluice.log, 40));
        let (status, check) = self.readiness();
        assert!(status == 503 && check.as_ref().is_some_and(|(ok, d)| !ok && d.contains(problem)), "/readyz: {status} {check:?}, not {problem:?}");
    }

    /// A seed 003 measure point request over the broker's plain listener: Sluice's reply (which
    /// came back over its TLS connection) is 200 and the three records are written.
    fn request_is_answered(&self) {
        let p = Publisher::connect(self.mosquitto.port, "third-party");
        p.wait_for_sluice(WAIT);
        let topic = "sys/productKey1/integration/measurepoint/post";
        let r = p.request(topic, SEED_003_MEASUREPOINTS, WAIT).unwrap_or_else(|| panic!("no reply; sluice log:\n{}", tail(&self.sluice.log, 40)));
        assert_eq!(r.topic, format!("{topic}_reply"));
        assert_eq!(r.body, json!({"id": "123", "code": 200, "data": {}, "message": "OK"}));
    }

    /// After [`Tls::terminate`] (the file sink writes its files out at the end): the request's
    /// three entries were imported.
    fn assert_imported(&self) {
        let mut devices: Vec<Value> = file_records(&self.out, "iot-integration-measurepoint").iter().map(|r| r["value"]["deviceKey"].clone()).collect();
        devices.sort_by_key(|d| d.to_string());
        assert_eq!(devices, [json!("device1"), json!("device1"), json!("device2")]);
    }

    /// SIGTERM: Sluice exits 0 within its shutdown timeout, drained (the summary line `sluice
    /// run` prints on its standard output once every source is done and the sink flushed; a
    /// stop that hits the timeout prints none).
    fn terminate(&mut self) {
        let started = Instant::now();
        let status = self.sluice.terminate(SHUTDOWN_TIMEOUT);
        let took = started.elapsed();
        let log = self.log();
        assert!(status.success(), "exit {status}; log:\n{}", tail(&self.sluice.log, 40));
        assert!(log.lines().any(|l| l.contains(" message(s) in, ") && l.ends_with(" error record(s))")), "no summary line:\n{}", tail(&self.sluice.log, 20));
        eprintln!("{}: SIGTERM answered in {took:?}", self.check);
    }
}

#[test]
fn tls_with_a_good_certificate_carries_requests() {
    let dir = temp_dir("sluice-tls-good-");
    let pki = Pki::new(dir.path());
    let listener = pki.listener(&pki.server, false);
    let mut t = Tls::start("tls", dir, &listener, &tls_table(&pki.ca.file, None));
    t.wait_ready(200, true, "connected");
    t.request_is_answered();
    t.terminate();
    t.assert_imported();
}

#[test]
fn mtls_with_a_good_client_certificate_carries_requests() {
    let dir = temp_dir("sluice-mtls-good-");
    let pki = Pki::new(dir.path());
    let listener = pki.listener(&pki.server, true);
    let mut t = Tls::start("mtls", dir, &listener, &tls_table(&pki.ca.file, Some(&pki.client)));
    t.wait_ready(200, true, "connected");
    t.request_is_answered();
    t.terminate();
    t.assert_imported();
}

#[test]
fn wrong_ca_is_reported_retried_and_recovers_when_the_broker_is_fixed() {
    let dir = temp_dir("sluice-tls-wrong-ca-");
    let pki = Pki::new(dir.path());
    // Sluice trusts `other_ca`; the broker's certificate is signed by `ca`.
    let mut t = Tls::start("wrong-ca", dir, &pki.listener(&pki.server, false), &tls_table(&pki.other_ca.file, None));
    let detail = t.wait_ready(503, false, "unknown issuer");
    assert!(detail.starts_with("not connected: TLS: unknown issuer") && detail.contains("tls.ca_file"), "{detail}");
    t.wait_failed_attempts(3, "TLS: unknown issuer");
    // The broker gets a certificate from the CA Sluice trusts: Sluice, still retrying,
    // connects on its own and answers requests.
    let fixed_dir = t.dir.path().join("pki");
    let fixed = pki.other_ca.issue(&fixed_dir, "server-by-other", &["localhost"], false, false);
    t.mosquitto.configure(Some(&TlsListener { cert_file: fixed.0, key_file: fixed.1, ca_file: pki.other_ca.file.clone(), require_certificate: false }));
    t.mosquitto.restart();
    t.wait_ready(200, true, "connected");
    t.request_is_answered();
    t.terminate();
    t.assert_imported();
}

#[test]
fn hostname_mismatch_is_reported_and_sigterm_stops_sluice() {
    let dir = temp_dir("sluice-tls-hostname-");
    let pki = Pki::new(dir.path());
    // The broker's certificate is for mqtt.other.example; Sluice connects to localhost.
    let mut t = Tls::start("hostname", dir, &pki.listener(&pki.wrong_host, false), &tls_table(&pki.ca.file, None));
    let detail = t.wait_ready(503, false, "hostname mismatch");
    assert!(detail.contains("not valid for `localhost`") && detail.contains("mqtt.other.example"), "{detail}");
    t.wait_failed_attempts(3, "TLS: hostname mismatch");
    assert!(t.sluice.running(), "sluice stays up");
    t.terminate();
}

#[test]
fn expired_client_certificate_is_reported_and_sigterm_stops_sluice() {
    let dir = temp_dir("sluice-mtls-expired-");
    let pki = Pki::new(dir.path());
    let mut t = Tls::start("expired", dir, &pki.listener(&pki.server, true), &tls_table(&pki.ca.file, Some(&pki.expired_client)));
    let detail = t.wait_ready(503, false, "certificate expired");
    assert!(detail.contains("client certificate") && detail.contains("tls.client_cert_file"), "{detail}");
    t.wait_failed_attempts(3, "TLS: certificate expired");
    assert!(t.sluice.running(), "sluice stays up");
    t.terminate();
}

#[test]
fn mtls_without_a_client_certificate_is_reported() {
    let dir = temp_dir("sluice-mtls-none-");
    let pki = Pki::new(dir.path());
    let mut t = Tls::start("no-client-cert", dir, &pki.listener(&pki.server, true), &tls_table(&pki.ca.file, None));
    let detail = t.wait_ready(503, false, "requires a client certificate");
    assert!(detail.contains("tls.client_cert_file"), "{detail}");
    t.wait_failed_attempts(3, "TLS: the broker requires a client certificate");
    t.terminate();
}

#[test]
fn a_ca_file_without_a_certificate_fails_at_start() {
    let dir = temp_dir("sluice-tls-bad-ca-file-");
    let pki = Pki::new(dir.path());
    let not_pem = dir.path().join("pki/not-a-ca.pem");
    write(&not_pem, "this is no certificate\n");
    let mut t = Tls::spawn("bad-ca-file", dir, &pki.listener(&pki.server, false), &tls_table(&not_pem, None));
    // Its only source failed: Sluice stops by itself, saying why.
    assert!(wait_until(WAIT, || !t.sluice.running()), "sluice still runs:\n{}", tail(&t.sluice.log, 20));
    // The error `sluice run` ends with, on its standard error.
    let log = t.log();
    assert!(log.lines().any(|l| l.starts_with("error: ") && l.contains("`tls.ca_file`") && l.contains("not-a-ca.pem: no PEM certificate in it")), "{}", tail(&t.sluice.log, 20));
}
