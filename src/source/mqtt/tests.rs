use super::*;
use crate::doc::Node;
use crate::integration::{AcceptAll, EntryVerdict, Validation};
use rumqttc::{ConnectionError, TlsConfiguration, Transport};

fn tls_failure(e: rustls::Error) -> String {
    connection_failure(&ConnectionError::Tls(rumqttc::TlsError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))), "localhost")
}

#[test]
fn tls_failures_say_what_is_wrong() {
    use rustls::{AlertDescription, CertificateError, Error};
    let t = tls_failure(Error::InvalidCertificate(CertificateError::UnknownIssuer));
    assert!(t.starts_with("TLS: unknown issuer: ") && t.contains("tls.ca_file") && t.ends_with("(TLS: I/O: invalid peer certificate: UnknownIssuer)"), "{t}");
    let t = tls_failure(Error::InvalidCertificate(CertificateError::NotValidForName));
    assert!(t.starts_with("TLS: hostname mismatch: ") && t.contains("`localhost`"), "{t}");
    let t = tls_failure(Error::InvalidCertificate(CertificateError::Expired));
    assert!(t.starts_with("TLS: certificate expired: the broker's certificate"), "{t}");
    let t = tls_failure(Error::AlertReceived(AlertDescription::CertificateExpired));
    assert!(t.starts_with("TLS: certificate expired: the broker rejected the client certificate"), "{t}");
    let t = tls_failure(Error::AlertReceived(AlertDescription::CertificateRequired));
    assert!(t.contains("requires a client certificate"), "{t}");
    let t = tls_failure(Error::AlertReceived(AlertDescription::UnknownCA));
    assert!(t.contains("rejected the client certificate") && t.contains("UnknownCA"), "{t}");
    // The TLS error may also come as a plain I/O error (after the handshake, TLS 1.3).
    let io = ConnectionError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, Error::AlertReceived(AlertDescription::CertificateExpired)));
    assert!(connection_failure(&io, "h").starts_with("TLS: certificate expired"));
    // Not TLS: rumqttc's text.
    let refused = ConnectionError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
    assert_eq!(connection_failure(&refused, "h"), refused.to_string());
}

fn decoders() -> Decoders {
    Decoders::new("decoders".into(), Duration::from_millis(50), 16 << 20)
}

struct RejectDevice2;
impl Validator for RejectDevice2 {
    fn validate(&self, _: TopicKind, _: &str, request: &Node<'_>) -> Validation {
        let Some(Node::Array(params)) = request.get("params") else { unreachable!("judged requests have params") };
        Validation::Entries(
            params
                .iter()
                .map(|e| match e.get("deviceKey").and_then(Node::as_str) {
                    Some("device2") => EntryVerdict::Rejected { code: codes::DEVICE_NOT_FOUND, message: "device2 is not registered".into() },
                    _ => EntryVerdict::Accepted,
                })
                .collect(),
        )
    }
}

#[test]
fn all_accepted_forwards_the_request() {
    let req = json!({"id":"123","version":"1.0","params":[{"deviceKey":"device1","events":{"e":{"a":1}},"time":1}],"method":"integration.event.post"});
    let h = handle_request("sys/pk/integration/event/post", req.to_string().as_bytes(), &AcceptAll, &decoders(), 1 << 20);
    assert_eq!((h.code, &h.data, &h.id), (200, &json!({}), &json!("123")));
    let (topic, payload) = h.forward.unwrap();
    assert_eq!(topic, "sys/pk/integration/event/post");
    assert_eq!(serde_json::from_slice::<Value>(&payload).unwrap(), req);
    assert_eq!(serde_json::to_string(&reply_body(&h.id, h.code, h.data)).unwrap(), r#"{"id":"123","code":200,"data":{},"message":"OK"}"#);
}

#[test]
fn partial_failure_keeps_valid_entries() {
    let req = json!({"id":"9","version":"1.0","params":[{"deviceKey":"device1"},{"deviceKey":"device2"},{"deviceKey":"device3"}],"method":"integration.attribute.post"});
    let h = handle_request("sys/pk/integration/attributes/post", req.to_string().as_bytes(), &RejectDevice2, &decoders(), 1 << 20);
    assert_eq!(h.code, codes::DEVICE_NOT_FOUND);
    assert_eq!(h.data, json!({"accepted": 2, "failed": [{"index": 1, "deviceKey": "device2", "code": 1257, "message": "device2 is not registered"}]}));
    let fwd: Value = serde_json::from_slice(&h.forward.unwrap().1).unwrap();
    assert_eq!(fwd["params"], json!([{"deviceKey":"device1"},{"deviceKey":"device3"}]));
    assert_eq!(fwd["id"], json!("9"));
}

#[test]
fn bad_requests_are_answered_at_once() {
    let h = handle_request("sys/pk/integration/event/post", b"{not json", &AcceptAll, &decoders(), 1 << 20);
    assert_eq!((h.code, h.forward.is_none(), h.error.unwrap().0), (codes::BAD_REQUEST, true, "bad_request"));
    let h = handle_request("sys/pk/integration/event/post", b"{\"id\":\"1\"}", &AcceptAll, &decoders(), 1 << 20);
    assert_eq!((h.code, h.id), (codes::BAD_REQUEST, json!("1")));
    let h = handle_request("sys/pk/integration/event/post", &[b' '; 100], &AcceptAll, &decoders(), 10);
    assert_eq!(h.code, codes::TOO_LARGE);
    let h = handle_request("sys/pk/integration/other/post", b"{}", &AcceptAll, &decoders(), 1 << 20);
    assert_eq!(h.code, codes::BAD_REQUEST);
    let h = handle_request("sys/nodecoder/integration/up_raw", &[1, 2], &AcceptAll, &decoders(), 1 << 20);
    assert_eq!(h.code, codes::DECODER_FAILED);
    let h = handle_request("sys/pk/integration/event/post", b"{\"id\":\"\xff\"}", &AcceptAll, &decoders(), 1 << 20);
    assert_eq!((h.code, h.error.unwrap().1), (codes::BAD_REQUEST, "the request is not UTF-8 text (invalid byte at offset 7); JSON requests are UTF-8".to_string()));
}

/// Regression: the 1413 reply to an oversized JSON request had `"id": null`.
#[test]
fn an_oversized_request_keeps_its_id_when_its_json_can_be_read() {
    let big = format!(r#"{{"params":[{{"x":"{}"}}],"id":"big-7"}}"#, "y".repeat(200));
    let h = handle_request("sys/pk/integration/event/post", big.as_bytes(), &AcceptAll, &decoders(), 100);
    assert_eq!((h.code, h.id), (codes::TOO_LARGE, json!("big-7")));
    let h = handle_request("sys/pk/integration/event/post", &big.as_bytes()[..150], &AcceptAll, &decoders(), 100);
    assert_eq!((h.code, h.id), (codes::TOO_LARGE, Value::Null), "truncated JSON: no id");
    let h = handle_request("sys/pk/integration/event/post", format!(r#"{{"id":{{"a":1}},"p":"{}"}}"#, "y".repeat(200)).as_bytes(), &AcceptAll, &decoders(), 100);
    assert_eq!(h.id, Value::Null, "only a string or number id is echoed");
}

#[test]
fn shipped_decoder_decodes_the_quickstart_frame() {
    // examples/quickstart.jsonl: sys/productKey1/integration/up_raw, "AQMEAAoBAv9+".
    let frame = [0x01, 0x03, 0x04, 0x00, 0x0A, 0x01, 0x02, 0xFF, 0x7E];
    let h = handle_request("sys/productKey1/integration/up_raw", &frame, &AcceptAll, &decoders(), 1 << 20);
    assert_eq!(h.code, 200, "{h:?}");
    let (topic, payload) = h.forward.unwrap();
    assert_eq!(topic, "sys/productKey1/integration/measurepoint/post");
    let fwd: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(fwd["params"][0]["deviceKey"], json!("device1"));
    assert_eq!(fwd["params"][0]["measurepoints"], json!({"temp": 1, "Power": {"value": 258, "quality": 0}}));
}

#[test]
fn tls_files_are_read_into_the_transport() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["ca.pem", "c.pem"] {
        std::fs::write(dir.path().join(f), "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").unwrap();
    }
    std::fs::write(dir.path().join("c.key"), "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n").unwrap();
    std::fs::write(dir.path().join("not-pem.pem"), "not a certificate\n").unwrap();
    let d = dir.path().display();
    let cfg = |ca: &str| -> MqttSourceConfig {
        toml::from_str(&format!(
            "url = \"mqtts://h:8883\"\nclient_id = \"c\"\nusername = \"u\"\npassword = \"p\"\n[tls]\nca_file = \"{d}/{ca}\"\nclient_cert_file = \"{d}/c.pem\"\nclient_key_file = \"{d}/c.key\"\n"
        ))
        .unwrap()
    };
    let o = MqttSource::new(cfg("ca.pem"), Arc::new(AcceptAll), Duration::from_secs(1)).options().unwrap();
    assert!(matches!(o.transport(), Transport::Tls(TlsConfiguration::Simple { client_auth: Some(_), .. })));
    assert!(!o.clean_session());
    assert_eq!(o.broker_address(), ("h".to_string(), 8883));
    let e = MqttSource::new(cfg("missing.pem"), Arc::new(AcceptAll), Duration::from_secs(1)).options().unwrap_err();
    assert!(e.to_string().contains("missing.pem"), "{e}");
    let e = MqttSource::new(cfg("not-pem.pem"), Arc::new(AcceptAll), Duration::from_secs(1)).options().unwrap_err();
    assert!(e.to_string().contains("`tls.ca_file`") && e.to_string().contains("not-pem.pem: no PEM certificate"), "{e}");
    // A key file without a key (here: a certificate).
    let mut bad_key = cfg("ca.pem");
    bad_key.tls.as_mut().unwrap().client_key_file = Some(dir.path().join("c.pem"));
    let e = MqttSource::new(bad_key, Arc::new(AcceptAll), Duration::from_secs(1)).options().unwrap_err();
    assert!(e.to_string().contains("`tls.client_key_file`") && e.to_string().contains("no PEM private key"), "{e}");
}

#[test]
fn shared_subscriptions() {
    let mut cfg: MqttSourceConfig = toml::from_str("url = \"mqtt://h:1\"\nclient_id = \"c\"\nshared_group = \"g\"").unwrap();
    assert_eq!(MqttSource::subscriptions(&cfg), vec!["$share/g/sys/+/integration/+/post", "$share/g/sys/+/integration/up_raw"]);
    cfg.shared_group = None;
    assert_eq!(MqttSource::subscriptions(&cfg)[0], "sys/+/integration/+/post");
}
