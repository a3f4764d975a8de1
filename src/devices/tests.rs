use super::*;
use crate::integration::{codes, EntryVerdict, Validation, Validator};
use serde_json::json;
use serde_json::Value as Json;

use crate::integration::EntryVerdict::{Accepted, Rejected};

impl Registry {
    /// [`Validator::validate`] on a `serde_json` request.
    fn validate_json(&self, kind: TopicKind, product_key: &str, request: &Json) -> Validation {
        self.validate(kind, product_key, &Node::from_json(request))
    }
}

/// The shipped models and devices (`models/`).
fn shipped() -> Registry {
    Registry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models"), None).expect("models/ loads")
}

fn entries(v: Validation) -> Vec<EntryVerdict> {
    match v {
        Validation::Entries(e) => e,
        other => panic!("expected entries, got {other:?}"),
    }
}

fn rejected(v: &EntryVerdict) -> (u32, &str) {
    match v {
        Rejected { code, message } => (*code, message.as_str()),
        Accepted => panic!("expected a rejection"),
    }
}

const SEED_000_EVENT: &str = r#"{
    "id":"123",
    "version":"1.0",
    "params":[
        {
            "deviceKey":"device1",
            "events":{
                "eventId1":{
                    "alarm":9,
                    "level":3
                }
            },
            "time":123456
        },
        {
            "deviceKey":"device2",
            "events":{
                "eventId2":{
                    "result":"ok"
                }
            },
            "time":123456
        }
    ],
    "method":"integration.event.post"
}"#;

const SEED_002_MESSAGE: &str = r#"{
  "method": "integration.event.post",
  "id": "123",
  "version": "1.1",
  "params":[
    {
      "productKey": "productKey1",
      "deviceKey": "deviceKey1",
      "time": 1579580182824,
      "events": {
        "eventId1":{
          "intParam1": 123,
          "fileParam1":"local://filename1"
        }
      }
    },
    {
      "assetId": "assetId2",
      "time": 1579580182824,
      "events": {
        "eventId2":{
          "intParam2": 123,
          "fileParam2":"local://filename2"
        }
      }
    }
  ],
  "files": {
    "filename1": {
      "featureId": "eventId1",
      "produckKey": "productKey1",
      "deviceKey": "deviceKey1",
      "originalFilename": "test.txt",
      "fileExt": ".txt",
      "md5": "0e202f9b67323d11df8a79b319a3d4f6"
    },
    "filename2": {
      "featureId": "eventId2",
      "assetId": "assetId2",
      "md5": "aa8ea05bdbcbadfcda7300c65c40859f",
      "fileLength": 1024000
    }
  }
}"#;

/// Seed 003's attributes request; the seed prints a trailing comma after `"key2":"val2"`
/// (not JSON), removed here.
const SEED_003_ATTRIBUTES: &str = r#"{
    "id":"123",
    "version":"1.0",
    "params":[
        {
            "deviceKey":"device1",
            "attributes":{
                "attr1":{
                    "key1":"val1",
                    "key2":"val2"
                }
            }
        },
        {
            "deviceKey":"device2",
            "attributes":{
                "attr2":2.3
            }
        }
    ],
    "method":"integration.attribute.post"
}"#;

const SEED_003_MEASUREPOINTS: &str = r#"{
    "id":"123",
    "version":"1.0",
    "params":[
        {
            "deviceKey":"device1",
            "measurepoints":{
                "Power":{
                    "value":1,
                    "quality":9
                },
                "temp":1.02,
                "branchCurr":[
                    "1.02",
                    "2.02",
                    "7.93"
                ]
            },
            "time":123456
        },
        {
            "deviceKey":"device1",
            "measurepoints":{
                "Power":{
                    "value":2,
                    "quality":9
                },
                "temp":2.02,
                "branchCurr":[
                    "2.02",
                    "3.02",
                    "9.93"
                ]
            },
            "time":123567
        },
        {
            "deviceKey":"device2",
            "measurepoints":{
                "Power":{
                    "value":1,
                    "quality":9
                },
                "temp":1.02,
                "branchCurr":[
                    "1.02",
                    "2.02",
                    "7.93"
                ]
            },
            "time":123456
        }
    ],
    "method":"integration.measurepoint.post"
}"#;

fn parse(s: &str) -> Json {
    serde_json::from_str(s).unwrap()
}

#[test]
fn seed_samples_are_accepted() {
    let r = shipped();
    assert_eq!(entries(r.validate_json(TopicKind::IntegrationEvent, "productKey1", &parse(SEED_000_EVENT))), vec![Accepted, Accepted]);
    assert_eq!(entries(r.validate_json(TopicKind::IntegrationEvent, "productKey1", &parse(SEED_002_MESSAGE))), vec![Accepted, Accepted]);
    assert_eq!(entries(r.validate_json(TopicKind::IntegrationAttributes, "productKey1", &parse(SEED_003_ATTRIBUTES))), vec![Accepted, Accepted]);
    assert_eq!(entries(r.validate_json(TopicKind::IntegrationMeasurepoint, "productKey1", &parse(SEED_003_MEASUREPOINTS))), vec![Accepted, Accepted, Accepted]);
}

#[test]
fn request_level_failures() {
    let r = shipped();
    for req in [json!([1]), json!("x"), json!({"id": "1"}), json!({"params": {}})] {
        match r.validate_json(TopicKind::IntegrationEvent, "productKey1", &req) {
            Validation::Request { code, .. } => assert_eq!(code, codes::BAD_REQUEST, "{req}"),
            other => panic!("{req}: {other:?}"),
        }
    }
    assert_eq!(entries(r.validate_json(TopicKind::IntegrationEvent, "productKey1", &json!({"params": []}))), vec![]);
}

#[test]
fn bad_entries_are_bad_requests() {
    let r = shipped();
    let req = json!({"params": [
        1,
        {"events": {"eventId2": {"result": "ok"}}},
        {"deviceKey": 7, "events": {}},
        {"assetId": 7, "events": {}},
        {"deviceKey": "device1"},
        {"deviceKey": "device1", "events": [1]},
        {"deviceKey": "device1", "productKey": 3, "events": {}},
    ]});
    let v = entries(r.validate_json(TopicKind::IntegrationEvent, "productKey1", &req));
    let msgs: Vec<(u32, &str)> = v.iter().map(rejected).collect();
    assert_eq!(
        msgs,
        vec![
            (codes::BAD_REQUEST, "entry must be an object"),
            (codes::BAD_REQUEST, "missing `deviceKey` (or `assetId`)"),
            (codes::BAD_REQUEST, "`deviceKey` must be a string"),
            (codes::BAD_REQUEST, "`assetId` must be a string"),
            (codes::BAD_REQUEST, "missing `events`"),
            (codes::BAD_REQUEST, "`events` must be an object"),
            (codes::BAD_REQUEST, "`productKey` must be a string"),
        ]
    );
}

#[test]
fn unknown_and_disabled_devices_are_not_found() {
    let r = shipped();
    let mut req = parse(SEED_000_EVENT);
    req["params"][1]["deviceKey"] = json!("device9");
    let v = entries(r.validate_json(TopicKind::IntegrationEvent, "productKey1", &req));
    assert_eq!(v[0], Accepted);
    assert_eq!(rejected(&v[1]), (codes::DEVICE_NOT_FOUND, "device `device9` of product `productKey1` not found"));
    // The same device key under another product (the topic's) is another device.
    let v = entries(r.validate_json(TopicKind::IntegrationEvent, "otherProduct", &parse(SEED_000_EVENT)));
    assert_eq!(rejected(&v[0]).0, codes::DEVICE_NOT_FOUND);
    // Unknown asset.
    let mut req = parse(SEED_002_MESSAGE);
    req["params"][1]["assetId"] = json!("assetId9");
    let v = entries(r.validate_json(TopicKind::IntegrationEvent, "productKey1", &req));
    assert_eq!(v[0], Accepted);
    assert_eq!(rejected(&v[1]), (codes::DEVICE_NOT_FOUND, "asset `assetId9` not found"));
    // Disabled.
    r.with_device("productKey1", "device2", |d| d.enabled = false).unwrap();
    let v = entries(r.validate_json(TopicKind::IntegrationEvent, "productKey1", &parse(SEED_000_EVENT)));
    assert_eq!(rejected(&v[1]), (codes::DEVICE_NOT_FOUND, "device `device2` of product `productKey1` is disabled"));
}

#[test]
fn values_that_do_not_fit_the_model() {
    let r = shipped();
    let check = |kind, data: Json| {
        let field = TopicKind::batch_field(kind).unwrap();
        let req = json!({"params": [{"deviceKey": "device1", field: data}]});
        let v = entries(r.validate_json(kind, "productKey1", &req));
        match &v[0] {
            Accepted => (200, String::new()),
            Rejected { code, message } => (*code, message.clone()),
        }
    };
    let mp = TopicKind::IntegrationMeasurepoint;
    let ev = TopicKind::IntegrationEvent;
    let at = TopicKind::IntegrationAttributes;
    let f = codes::MODEL_VALIDATE_FAILED;
    assert_eq!(check(mp, json!({"humidity": 1})), (f, "unknown measure point `humidity` in the model of product productKey1".into()));
    assert_eq!(check(mp, json!({"temp": "hot"})), (f, "measure point `temp`: expected float, got string \"hot\"".into()));
    assert_eq!(check(mp, json!({"temp": {"value": "hot", "quality": 9}})), (f, "measure point `temp`: expected float, got string \"hot\"".into()));
    assert_eq!(check(mp, json!({"temp": {"value": 1.5, "quality": "good"}})), (f, "measure point `temp`: quality must be an integer, got string \"good\"".into()));
    assert_eq!(check(mp, json!({"temp": {"value": 1.5}})).0, 200);
    assert_eq!(check(mp, json!({"temp": {"v": 1.5}})), (f, "measure point `temp`: expected float, got object {\"v\":1.5}".into()));
    assert_eq!(check(mp, json!({"Power": 1.5})), (f, "measure point `Power`: expected int, got number 1.5".into()));
    assert_eq!(check(mp, json!({"branchCurr": ["1.02", "x"]})), (f, "measure point `branchCurr`: [1]: expected float, got string \"x\"".into()));
    assert_eq!(check(mp, json!({"branchCurr": {"value": [1, 2], "quality": 0}})).0, 200);
    assert_eq!(check(mp, json!({"branchCurr": 1.02})), (f, "measure point `branchCurr`: expected array of float, got number 1.02".into()));
    assert_eq!(check(ev, json!({"eventId1": {"alarm": "high"}})), (f, "event `eventId1`: .alarm: expected int, got string \"high\"".into()));
    assert_eq!(check(ev, json!({"eventId1": {"alarm": 9, "color": "red"}})).1, "event `eventId1`: unknown struct member `color` (members: alarm, fileParam1, intParam1, level)");
    assert_eq!(check(ev, json!({"eventId1": 9})), (f, "event `eventId1`: expected struct, got number 9".into()));
    assert_eq!(check(ev, json!({"eventId1": {"fileParam1": ""}})).0, f);
    assert_eq!(check(ev, json!({"eventId3": {}})), (f, "unknown event `eventId3` in the model of product productKey1".into()));
    assert_eq!(check(at, json!({"attr1": {"key1": 1}})), (f, "attribute `attr1`: .key1: expected string, got number 1".into()));
    assert_eq!(check(at, json!({"attr2": "2.3"})).0, 200);
    assert_eq!(check(at, json!({"attr2": true})).0, f);
    // The value of a measure point is not unwrapped for attributes.
    assert_eq!(check(at, json!({"attr2": {"value": 2.3}})).0, f);
}

#[test]
fn enums_in_models() {
    let r = shipped();
    r.add_model(ThingModel::parse("pkE", "[attributes]\nmode = { type = \"enum\", values = [\"auto\", \"manual\"] }\n").unwrap());
    r.upsert(Device { product_key: "pkE".into(), device_key: "d".into(), device_name: "d".into(), asset_id: None, tags: BTreeMap::new(), enabled: true, gateway: None });
    let req = json!({"params": [{"deviceKey": "d", "attributes": {"mode": "auto"}}, {"deviceKey": "d", "attributes": {"mode": "off"}}]});
    let v = entries(r.validate_json(TopicKind::IntegrationAttributes, "pkE", &req));
    assert_eq!(v[0], Accepted);
    assert_eq!(rejected(&v[1]), (codes::MODEL_VALIDATE_FAILED, "attribute `mode`: string \"off\" is not one of the enum values [\"auto\", \"manual\"]"));
}

#[test]
fn product_without_model() {
    let r = Registry::new();
    r.upsert(Device { product_key: "pkX".into(), device_key: "d".into(), device_name: "d".into(), asset_id: None, tags: BTreeMap::new(), enabled: true, gateway: None });
    let req = json!({"params": [{"deviceKey": "d", "events": {"e": {}}}, {"deviceKey": "unknown", "events": {"e": {}}}]});
    let v = entries(r.validate_json(TopicKind::IntegrationEvent, "pkX", &req));
    assert_eq!(rejected(&v[0]), (codes::MODEL_VALIDATE_FAILED, "no thing model for product pkX"));
    assert_eq!(rejected(&v[1]).0, codes::DEVICE_NOT_FOUND);
}

fn msg(topic: &str, payload: Json) -> Message {
    Message::new(topic, payload.to_string().into_bytes())
}

fn status(st: &str, last: &str) -> Json {
    json!({"status": st, "productKey": "12345565569", "deviceName": "deviceName1234", "time": "2018-08-31 15:32:28.205", "utcTime": "2018-08-31T07:32:28.205Z", "lastTime": last, "clientIp": "123.123.123.123"})
}

#[test]
fn status_keeps_the_latest_last_time() {
    let r = Registry::new();
    let t = "/as/mqtt/status/12345565569/deviceName1234";
    assert_eq!(r.status("12345565569", "deviceName1234"), None);
    r.observe(&msg(t, status("online", "2018-08-31 15:32:28.195")));
    assert_eq!(r.status("12345565569", "deviceName1234").as_deref(), Some("online"));
    r.observe(&msg(t, status("offline", "2018-08-31 15:40:00.000")));
    assert_eq!(r.status("12345565569", "deviceName1234").as_deref(), Some("offline"));
    // Out of order: an older lastTime arriving later does not overwrite.
    r.observe(&msg(t, status("online", "2018-08-31 15:35:00.000")));
    assert_eq!(r.status("12345565569", "deviceName1234").as_deref(), Some("offline"));
    // utcLastTime wins over lastTime when present.
    let mut s = status("online", "garbage");
    s["utcLastTime"] = json!("2018-08-31T15:45:00.000Z");
    r.observe(&msg(t, s));
    assert_eq!(r.status("12345565569", "deviceName1234").as_deref(), Some("online"));
    let mut s = status("offline", "2099-01-01 00:00:00.000");
    s["utcLastTime"] = json!("2018-08-31T15:44:00.000Z");
    r.observe(&msg(t, s));
    assert_eq!(r.status("12345565569", "deviceName1234").as_deref(), Some("online"));
}

#[test]
fn online_devices_are_counted_on_transitions() {
    let r = Registry::new();
    let a = "/as/mqtt/status/pk/a";
    r.observe(&msg(a, status("online", "2018-08-31 15:32:28.195")));
    r.observe(&msg(a, status("online", "2018-08-31 15:33:28.195")));
    r.observe(&msg("/as/mqtt/status/pk/b", status("offline", "2018-08-31 15:32:28.195")));
    assert_eq!(r.online(), 1, "a twice online is one; b is offline");
    r.observe(&msg("/as/mqtt/status/pk/b", status("online", "2018-08-31 15:34:28.195")));
    assert_eq!(r.online(), 2);
    r.observe(&msg(a, status("offline", "2018-08-31 15:30:00.000")));
    assert_eq!(r.online(), 2, "a stale offline changes nothing");
    r.observe(&msg(a, status("offline", "2018-08-31 15:40:00.000")));
    assert_eq!(r.online(), 1);
    r.observe(&msg("/sys/pk/b/thing/lifecycle", json!({"action": "delete"})));
    assert_eq!(r.online(), 0, "a deleted device's status goes with it");
}

#[test]
fn status_last_time_is_read_in_the_configured_zone() {
    let r = Registry::new().with_timezone(FixedOffset::east_opt(8 * 3600).unwrap());
    let t = "/as/mqtt/status/12345565569/deviceName1234";
    // Seed 004: lastTime 15:32:28.195 (+08:00) is utcLastTime 07:32:28.195Z.
    let mut s = status("online", "2018-08-31 15:32:28.195");
    s["utcLastTime"] = json!("2018-08-31T07:32:28.195Z");
    r.observe(&msg(t, s));
    // 15:32:28.100 local is older than 07:32:28.195Z.
    r.observe(&msg(t, status("offline", "2018-08-31 15:32:28.100")));
    assert_eq!(r.status("12345565569", "deviceName1234").as_deref(), Some("online"));
    r.observe(&msg(t, status("offline", "2018-08-31 15:32:29.000")));
    assert_eq!(r.status("12345565569", "deviceName1234").as_deref(), Some("offline"));
}

#[test]
fn malformed_data_flow_messages_are_counted_not_applied() {
    let r = Registry::new();
    let before = |res: &str| metrics::REGISTRY_UPDATES.with_label_values(&["status", res]).get();
    let m0 = before("malformed");
    let t = "/as/mqtt/status/pk/dn";
    r.observe(&Message::new(t, &b"{not json"[..]));
    r.observe(&msg(t, json!({"status": "online"})));
    r.observe(&msg(t, json!({"status": "sleeping", "lastTime": "2018-08-31 15:32:28.195"})));
    r.observe(&msg(t, json!([1, 2])));
    r.observe(&msg("/sys/pk/dn/thing/lifecycle", json!({"action": "explode"})));
    r.observe(&msg("/sys/pk/dn/thing/topo/lifecycle", json!({"action": "add", "devices": [{"productKey": 1}]})));
    assert!(before("malformed") >= m0 + 4);
    assert_eq!(r.status("pk", "dn"), None);
    assert!(r.is_empty());
}

const SEED_LIFECYCLE: &str = r#"{
    "action" : "create",
    "iotId" : "4z819VQHk6VSLmmxxxxxxxxxxee200",
    "productKey" : "X5eCxxxxEH7",
    "deviceName" : "5gJtxDVeGAkaEztpisjX",
    "deviceSecret" : "",
    "messageCreateTime": 1510292739881
}"#;

#[test]
fn lifecycle_create_disable_enable_delete() {
    let r = Registry::new();
    r.add_model(ThingModel::parse("X5eCxxxxEH7", "[events]\ne = { type = \"struct\", members = { n = { type = \"int\" } } }\n").unwrap());
    let t = "/sys/X5eCxxxxEH7/5gJtxDVeGAkaEztpisjX/thing/lifecycle";
    let req = json!({"params": [{"deviceKey": "5gJtxDVeGAkaEztpisjX", "events": {"e": {"n": 1}}}]});
    let verdict = || entries(r.validate_json(TopicKind::IntegrationEvent, "X5eCxxxxEH7", &req)).remove(0);
    assert_eq!(rejected(&verdict()).0, codes::DEVICE_NOT_FOUND);
    r.observe(&Message::new(t, SEED_LIFECYCLE.as_bytes().to_vec()));
    let d = r.device("X5eCxxxxEH7", "5gJtxDVeGAkaEztpisjX").expect("created");
    assert!(d.enabled);
    assert_eq!(d.device_name, "5gJtxDVeGAkaEztpisjX");
    assert_eq!(verdict(), Accepted);
    let action = |a: &str| {
        let mut p = parse(SEED_LIFECYCLE);
        p["action"] = json!(a);
        r.observe(&msg(t, p));
    };
    action("disable");
    assert!(!r.device("X5eCxxxxEH7", "5gJtxDVeGAkaEztpisjX").unwrap().enabled);
    assert_eq!(rejected(&verdict()), (codes::DEVICE_NOT_FOUND, "device `5gJtxDVeGAkaEztpisjX` of product `X5eCxxxxEH7` is disabled"));
    action("enable");
    assert_eq!(verdict(), Accepted);
    action("delete");
    assert_eq!(r.device("X5eCxxxxEH7", "5gJtxDVeGAkaEztpisjX"), None);
    assert_eq!(rejected(&verdict()).0, codes::DEVICE_NOT_FOUND);
    // Enabling an unknown device does not create it.
    action("enable");
    assert_eq!(r.device("X5eCxxxxEH7", "5gJtxDVeGAkaEztpisjX"), None);
}

const SEED_TOPO: &str = r#"{
    "action" : "add",
    "gwIotId": "4z819VQHk6VSLmmBJfrf00107ee200",
    "gwProductKey": "1234556554",
    "gwDeviceName": "deviceName1234",
    "devices": [
        {
          "iotId": "4z819VQHk6VSLmmxxxxxxxxxxee201",
          "productKey": "1234xxxx569",
          "deviceName": "deviceName1234"
       }
    ],

    "messageCreateTime": 1510292739881
}"#;

#[test]
fn topo_add_remove_sets_the_gateway() {
    let r = Registry::new();
    let t = "/sys/1234556554/deviceName1234/thing/topo/lifecycle";
    r.observe(&msg("/sys/1234xxxx569/deviceName1234/thing/lifecycle", json!({"action": "create"})));
    assert_eq!(r.gateway("1234xxxx569", "deviceName1234"), None);
    r.observe(&Message::new(t, SEED_TOPO.as_bytes().to_vec()));
    assert_eq!(r.gateway("1234xxxx569", "deviceName1234"), Some(("1234556554".into(), "deviceName1234".into())));
    let action = |a: &str| {
        let mut p = parse(SEED_TOPO);
        p["action"] = json!(a);
        r.observe(&msg(t, p));
    };
    action("disable");
    assert!(!r.device("1234xxxx569", "deviceName1234").unwrap().enabled);
    action("enable");
    assert!(r.device("1234xxxx569", "deviceName1234").unwrap().enabled);
    action("remove");
    assert_eq!(r.gateway("1234xxxx569", "deviceName1234"), None);
}

#[test]
fn lookups_by_device_name_and_key() {
    let r = shipped();
    assert_eq!(r.attribute("1234556554", "deviceName1234", "location").as_deref(), Some("hangzhou"));
    assert_eq!(r.attribute("1234556554", "deviceName1234", "missing"), None);
    assert_eq!(r.attribute("productKey1", "device1", "site").as_deref(), Some("hangzhou"));
    assert_eq!(r.gateway("1234xxxx569", "deviceName1234"), Some(("1234556554".into(), "deviceName1234".into())));
    // A device whose name differs from its key: both find it; status follows the name.
    r.upsert(Device {
        product_key: "pk".into(),
        device_key: "k1".into(),
        device_name: "n1".into(),
        asset_id: None,
        tags: [("site".to_string(), "x".to_string())].into(),
        enabled: true,
        gateway: None,
    });
    assert_eq!(r.attribute("pk", "n1", "site").as_deref(), Some("x"));
    assert_eq!(r.attribute("pk", "k1", "site").as_deref(), Some("x"));
    r.observe(&msg("/as/mqtt/status/pk/n1", json!({"status": "online", "lastTime": "2018-08-31 15:32:28.195"})));
    assert_eq!(r.status("pk", "k1").as_deref(), Some("online"));
    // Through the engine's Env.
    let shared = Arc::new(r);
    let env = crate::rule::expr::Env { devices: Box::new(shared.clone()), ..Default::default() };
    assert_eq!(env.devices.attribute("pk", "n1", "site").as_deref(), Some("x"));
}

#[test]
fn load_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), "product_key = \"p\"\n").unwrap();
    std::fs::write(dir.path().join("b.toml"), "product_key = \"p\"\n").unwrap();
    let e = Registry::load(dir.path(), None).err().unwrap().to_string();
    assert!(e.contains("a second model for product `p`"), "{e}");
    std::fs::remove_file(dir.path().join("b.toml")).unwrap();
    std::fs::write(dir.path().join("devices.toml"), "[[devices]]\nproduct_key = \"p\"\ndevice_key = \"d\"\n[[devices]]\nproduct_key = \"p\"\ndevice_key = \"d\"\n").unwrap();
    let e = Registry::load(dir.path(), None).err().unwrap().to_string();
    assert!(e.contains("device `p/d` is listed twice"), "{e}");
    std::fs::write(dir.path().join("devices.toml"), "[[devices]]\nproduct_key = \"p\"\ndevice_key = \"d\"\ncolour = 1\n").unwrap();
    let e = Registry::load(dir.path(), None).err().unwrap().to_string();
    assert!(e.contains("unknown field `colour`"), "{e}");
    let e = Registry::load(&dir.path().join("missing"), None).err().unwrap().to_string();
    assert!(e.contains("missing"), "{e}");
    assert_eq!(shipped().len().0, 7);
}

#[test]
fn shipped_models_accept_every_quickstart_integration_request() {
    let r = shipped();
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.jsonl")).unwrap();
    let mut checked = 0;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Json>(line) else { continue };
        let (Some(topic), Some(payload)) = (v.get("topic").and_then(Json::as_str), v.get("payload")) else { continue };
        let info = TopicInfo::parse(topic);
        if crate::message::is_batch(&info) {
            let verdicts = entries(r.validate_json(info.kind, info.product_key.unwrap(), payload));
            assert!(verdicts.iter().all(|e| *e == Accepted), "{topic}: {verdicts:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 5);
}
