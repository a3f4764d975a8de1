//! The work folder (a temporary one, or `--dir`) and what goes in it: a copy of the sample
//! rules, the brokers' folders, the generated `sluice.toml` (a TOML table of typed values,
//! serialized), `mosquitto.conf`, the seed samples and `env.sh`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;
use sluice_testkit::config;

use crate::topics;

/// Seed 003's measure points (examples/quickstart.jsonl line 6).
pub const MEASUREPOINT: &str = r#"{"id":"123","version":"1.0","params":[{"deviceKey":"device1","measurepoints":{"Power":{"value":1,"quality":9},"temp":1.02,"branchCurr":["1.02","2.02","7.93"]},"time":123456},{"deviceKey":"device1","measurepoints":{"Power":{"value":2,"quality":9},"temp":2.02,"branchCurr":["2.02","3.02","9.93"]},"time":123567},{"deviceKey":"device2","measurepoints":{"Power":{"value":1,"quality":9},"temp":1.02,"branchCurr":["1.02","2.02","7.93"]},"time":123456}],"method":"integration.measurepoint.post"}"#;
/// An event post of two devices.
pub const EVENT: &str = r#"{"id":"123","version":"1.0","params":[{"deviceKey":"device1","events":{"eventId1":{"alarm":9,"level":3}},"time":123456},{"deviceKey":"device2","events":{"eventId2":{"result":"ok"}},"time":123456}],"method":"integration.event.post"}"#;
/// An attribute post of two devices.
pub const ATTRIBUTES: &str = r#"{"id":"123","version":"1.0","params":[{"deviceKey":"device1","attributes":{"attr1":{"key1":"val1","key2":"val2"}}},{"deviceKey":"device2","attributes":{"attr2":2.3}}],"method":"integration.attribute.post"}"#;
/// An up_raw frame that `decoders/productKey1.js` decodes into a measure point of `device1`.
pub const UP_RAW: &[u8] = &[0x01, 0x03, 0x04, 0x00, 0x0a, 0x01, 0x02, 0xff, 0x7e];
/// A data-flow message for the Kafka source, in kafka_tool's `send` format (seed 004).
pub const PROPERTY_POST: &str = r#"{"topic":"/sys/1234556554/deviceName1234/thing/event/property/post","payload":{"iotId":"4z819VQHk6VSLmmBJfrf00107ee200","productKey":"1234556554","deviceName":"deviceName1234","gmtCreate":1510799670074,"deviceType":"Ammeter","items":{"Power":{"value":"on","time":1510799670074},"Position":{"time":1510292697470,"value":{"latitude":39.9,"longitude":116.38}}}}}"#;

/// The work folder.
pub struct Work {
    /// Its path (absolute).
    pub dir: PathBuf,
    /// Whether it is removed on exit (a temporary folder without `--keep`).
    pub remove: bool,
}

impl Work {
    /// `dir` (created if missing), or a new temporary folder in `$TMPDIR`; with the brokers'
    /// folders and a copy of the sample rules of `repo` (kept when there is one: hot reload and
    /// the rules API edit the copy, never the repository).
    pub fn create(dir: Option<&Path>, keep: bool, repo: &Path) -> anyhow::Result<Work> {
        let work = match dir {
            Some(d) => {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
                Work { dir: d.canonicalize()?, remove: false }
            }
            None => {
                let t = tempfile::Builder::new().prefix("sluice-stack-").tempdir().context("creating a temporary folder")?;
                Work { dir: t.keep(), remove: !keep }
            }
        };
        for sub in ["mosquitto", "tansu", "samples"] {
            std::fs::create_dir_all(work.dir.join(sub))?;
        }
        if !work.rules().exists() {
            copy_dir(&repo.join("rules"), &work.rules())?;
        }
        Ok(work)
    }

    /// The rules folder (the copy).
    pub fn rules(&self) -> PathBuf {
        self.dir.join("rules")
    }

    /// A path in the folder.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Removes the folder when it is ours and not kept; else says it is kept.
    pub fn finish(&self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            println!("local-stack: kept {}", self.dir.display());
        }
    }

    /// Writes Mosquitto's configuration: one anonymous listener on `127.0.0.1:port`.
    pub fn write_mosquitto_conf(&self, port: u16) -> anyhow::Result<PathBuf> {
        // `user root`: Mosquitto started as root switches to user `mosquitto` by default, and
        // that change of credentials would clear the parent-death signal that stops it with
        // the stack. (Started as another user, Mosquitto ignores the setting.)
        let conf = format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n");
        let path = self.path("mosquitto/mosquitto.conf");
        std::fs::write(&path, conf)?;
        Ok(path)
    }

    /// Writes `sluice.toml` and returns its path.
    pub fn write_sluice_toml(&self, p: &Ports, repo: &Path, token: &str) -> anyhow::Result<PathBuf> {
        let brokers = p.brokers();
        let cfg = config::table(json!({
            "rules": {"paths": [config::path(&self.rules())]},
            // The console's live samples are on in the local stack (off by default).
            "engine": {"default_error_topic": topics::ERRORS, "workers": 1, "shutdown_timeout_ms": 5000, "tap": {"enabled": true}},
            "registry": {"models": config::path(&repo.join("models"))},
            "admin": {"listen": format!("127.0.0.1:{}", p.admin), "token": token},
            "sources": [
                // The integration channel: sys/{productKey}/integration/{measurepoint|attributes|event}/post
                // and sys/{productKey}/integration/up_raw, answered on <topic>_reply.
                {
                    "type": "mqtt",
                    "url": format!("mqtt://127.0.0.1:{}", p.mqtt),
                    "client_id": "sluice-local-stack",
                    "decoders_dir": config::path(&repo.join("decoders")),
                    "reconnect_backoff_ms": 200,
                    "reconnect_backoff_max_ms": 2000,
                },
                // Data-flow messages: records of iot-in, the IoT topic in the iot-topic header.
                {
                    "type": "kafka",
                    "brokers": brokers,
                    "topics": [topics::INPUT],
                    "group_id": "sluice-local-stack",
                    "iot_topic": {"from": "header", "name": "iot-topic"},
                    "commit_interval_ms": 500,
                    "properties": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"},
                },
            ],
            "sink": {"type": "kafka", "brokers": brokers, "linger_ms": 5, "unknown_topic_timeout_ms": 5000},
        }));
        let header = format!(
            "# Generated by deploy/local-stack.sh (examples/local_stack): the sample rules and registry of\n\
             # {}, the MQTT integration channel on Mosquitto, data-flow messages from Kafka topic\n\
             # {}, output to Kafka. Every key is documented in deploy/sluice.toml and deploy/kafka.toml.\n\n",
            repo.display(),
            topics::INPUT
        );
        let path = self.path("sluice.toml");
        std::fs::write(&path, header + &toml::to_string(&cfg)?)?;
        Ok(path)
    }

    /// Writes the seed samples for `mosquitto_pub -f` and `kafka_tool send`.
    pub fn write_samples(&self) -> anyhow::Result<()> {
        let files: [(&str, &[u8]); 5] = [
            ("measurepoint.json", MEASUREPOINT.as_bytes()),
            ("event.json", EVENT.as_bytes()),
            ("attributes.json", ATTRIBUTES.as_bytes()),
            ("up_raw.bin", UP_RAW),
            ("property_post.jsonl", PROPERTY_POST.as_bytes()),
        ];
        for (name, body) in files {
            let mut body = body.to_vec();
            if name.ends_with(".json") || name.ends_with(".jsonl") {
                body.push(b'\n');
            }
            std::fs::write(self.path("samples").join(name), body)?;
        }
        Ok(())
    }

    /// Writes `env.sh`, the variables for another terminal.
    pub fn write_env_sh(&self, p: &Ports, token: &str, kafka_tool: &Path) -> anyhow::Result<()> {
        let dir = self.dir.display().to_string();
        let vars = [
            ("SLUICE_STACK_DIR", dir.clone()),
            ("MQTT_HOST", "127.0.0.1".to_string()),
            ("MQTT_PORT", p.mqtt.to_string()),
            ("KAFKA_BROKERS", p.brokers()),
            ("SLUICE_ADMIN", p.admin_url()),
            ("SLUICE_URL", p.admin_url()),
            ("SLUICE_ADMIN_TOKEN", token.to_string()),
            ("KAFKA_TOOL", kafka_tool.display().to_string()),
        ];
        let mut text = format!("# source {}\n", shell_quote(&format!("{dir}/env.sh")));
        for (k, v) in vars {
            text += &format!("export {k}={}\n", shell_quote(&v));
        }
        std::fs::write(self.path("env.sh"), text)?;
        Ok(())
    }
}

/// The stack's ports on 127.0.0.1.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// Mosquitto.
    pub mqtt: u16,
    /// tansu.
    pub kafka: u16,
    /// Sluice's admin server.
    pub admin: u16,
}

impl Ports {
    /// `127.0.0.1:KAFKA`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.kafka)
    }

    /// `http://127.0.0.1:ADMIN`.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin)
    }
}

/// `'text'` for a POSIX shell (unquoted when it needs no quotes).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-:+,=@".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), &dest).with_context(|| format!("copying {}", e.path().display()))?;
        }
    }
    Ok(())
}
