//! `--smoke`: one request end to end. Seed 003's measure points go over MQTT (answered 200 on
//! the reply topic, three records on `iot-integration-measurepoint`); a property post goes
//! through Kafka topic `iot-in` (one record on `iot-property-1234556554`); `sluice rules list`
//! shows the rules running. Each run marks its request (id, gmtCreate), so that a reused
//! `--dir`, whose topics hold earlier records, cannot pass on old ones.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

use crate::clients::{self, Collector, In, Publisher};
use crate::files::{self, Ports, Work};
use crate::services::Stack;
use crate::signals::Signals;

const TOPIC: &str = "sys/productKey1/integration/measurepoint/post";
const MEASUREPOINTS: &str = "iot-integration-measurepoint";
const PROPERTIES: &str = "iot-property-1234556554";

/// What the smoke run needs.
pub struct Smoke<'a> {
    /// The work folder.
    pub work: &'a Work,
    /// The stack's ports.
    pub ports: Ports,
    /// The admin token.
    pub token: &'a str,
    /// `sluice`.
    pub sluice: &'a Path,
    /// The MQTT client that waited for Sluice.
    pub publisher: &'a Publisher,
    /// Signals.
    pub signals: &'a Signals,
    /// The wait for each step.
    pub timeout: Duration,
}

impl Smoke<'_> {
    /// Runs the checks: Ok when all passed, Err(why) when one failed (signals included).
    pub fn run(&self, stack: &mut Stack) -> anyhow::Result<()> {
        let ports = self.ports;
        println!("local-stack: stack up (MQTT 127.0.0.1:{}, Kafka {}, admin {}); smoke test", ports.mqtt, ports.brokers(), ports.admin_url());
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
        let mark = format!("smoke-{}-{}", now.as_secs(), std::process::id());
        let ms = now.as_millis() as u64;

        let mut request: Value = serde_json::from_str(files::MEASUREPOINT)?;
        request["id"] = mark.clone().into();
        let request = serde_json::to_string(&request)?;
        std::fs::write(self.work.path("smoke-request.json"), &request)?;
        let mut property: Value = serde_json::from_str(files::PROPERTY_POST)?;
        property["payload"]["gmtCreate"] = ms.into();
        std::fs::write(self.work.path("smoke-property.jsonl"), format!("{property}\n"))?;

        let collector = Collector::start(&ports.brokers(), &[MEASUREPOINTS, PROPERTIES]);
        println!("publish {TOPIC} smoke-request.json   # seed 003, id {mark}");
        self.publisher.publish(TOPIC, request);
        let reply = clients::wait_reply(self.publisher, &mark, self.timeout, self.signals)?.ok_or_else(|| anyhow!("no reply on {TOPIC}_reply within {}s", self.timeout.as_secs()))?;
        println!("reply: {} {}", reply.topic, reply.body);
        if reply.body["code"] != 200 {
            bail!("the reply is not code 200: {}", reply.body);
        }

        println!("tail {MEASUREPOINTS} --count 3 --match '\"requestId\":\"{mark}\"'");
        let records = clients::wait_records(&collector, MEASUREPOINTS, 3, self.timeout, self.signals, |v| v["requestId"] == mark.as_str())?
            .ok_or_else(|| anyhow!("the 3 records of the request did not arrive on Kafka topic {MEASUREPOINTS} within {}s", self.timeout.as_secs()))?;
        for r in &records {
            println!("{}", clients::record_line(r));
        }
        let devices: Vec<Option<&str>> = records.iter().map(|r| r.key.as_deref()).collect();
        if !devices.contains(&Some("device1")) || !devices.contains(&Some("device2")) {
            bail!("unexpected output records: keys {devices:?}");
        }

        println!("send iot-in smoke-property.jsonl   # seed 004, gmtCreate {ms}");
        let iot_topic = property["topic"].as_str().context("the sample's topic")?;
        clients::produce(&ports.brokers(), crate::topics::INPUT, [In::iot(iot_topic, serde_json::to_vec(&property["payload"])?)]);
        println!("tail {PROPERTIES} --count 1 --match '\"gmtCreate\":{ms}'");
        let records = clients::wait_records(&collector, PROPERTIES, 1, self.timeout, self.signals, |v| v["gmtCreate"] == ms)?
            .ok_or_else(|| anyhow!("the property post read from iot-in did not arrive on {PROPERTIES} within {}s", self.timeout.as_secs()))?;
        println!("{}", clients::record_line(&records[0]));
        if records[0].json()["deviceName"] != "deviceName1234" {
            bail!("unexpected output record: {}", clients::record_line(&records[0]));
        }

        println!("$ sluice rules list");
        let list = self.rules_list(stack)?;
        if !list.lines().any(|l| l.starts_with("integration-measurepoint ") && l.contains(" running ")) {
            bail!("unexpected rule list:\n{list}");
        }
        print!("{list}");
        println!("local-stack: smoke OK");
        Ok(())
    }

    /// `sluice rules list` against the stack's admin server (a child process, waited for with
    /// the signals in view).
    fn rules_list(&self, stack: &mut Stack) -> anyhow::Result<String> {
        let out = self.work.path("smoke-rules.txt");
        let mut child = Command::new(self.sluice)
            .args(["rules", "list"])
            .env("SLUICE_URL", self.ports.admin_url())
            .env("SLUICE_ADMIN_TOKEN", self.token)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out)?)
            .spawn()
            .context("running sluice rules list")?;
        let mut status = None;
        let done = self.signals.wait_until(self.timeout, Duration::from_millis(20), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        done?;
        stack.check_alive()?;
        let text = std::fs::read_to_string(&out)?;
        match status {
            Some(s) if s.success() => Ok(text),
            Some(s) => bail!("sluice rules list failed ({s}): {text}"),
            None => bail!("sluice rules list did not finish within {}s", self.timeout.as_secs()),
        }
    }
}
