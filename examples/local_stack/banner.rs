//! What the stack prints once it is up: the addresses, and commands to copy.

use std::path::Path;

use crate::files::{Ports, Work};

/// Prints the banner.
pub fn print(work: &Work, p: &Ports, kafka_tool: &Path, repo: &Path) {
    let (dir, mqtt, brokers, admin, kt) = (work.dir.display(), p.mqtt, p.brokers(), p.admin_url(), kafka_tool.display());
    let event = std::fs::read_to_string(work.path("samples/event.json")).unwrap_or_default();
    let kcat = if on_path("kcat") { format!("\n  kcat -b {brokers} -C -e -J -t iot-integration-measurepoint") } else { String::new() };
    let removed = if work.remove { format!(" and removes {dir} (--keep keeps it)") } else { String::new() };
    println!(
        "
Sluice local stack is up (work folder {dir})
  MQTT (integration channel)  127.0.0.1:{mqtt}
  Kafka (tansu)               {brokers}
  admin                       {admin}/metrics  {admin}/healthz  {admin}/integration/errors
  console                     {admin}/ui/  (token: $SLUICE_ADMIN_TOKEN, see env.sh)
  config / logs               {dir}/sluice.toml  {dir}/sluice.log  {dir}/tansu/tansu.log
  variables                   source {dir}/env.sh

Watch the integration replies:
  mosquitto_sub -h 127.0.0.1 -p {mqtt} -v -t 'sys/+/integration/+/post_reply' -t 'sys/+/integration/up_raw_reply'

Publish the seed samples (code 200 replies; product productKey1, devices of models/devices.toml):
  mosquitto_pub -h 127.0.0.1 -p {mqtt} -q 1 -t sys/productKey1/integration/measurepoint/post -f {dir}/samples/measurepoint.json
  mosquitto_pub -h 127.0.0.1 -p {mqtt} -q 1 -t sys/productKey1/integration/attributes/post -f {dir}/samples/attributes.json
  mosquitto_pub -h 127.0.0.1 -p {mqtt} -q 1 -t sys/productKey1/integration/up_raw -f {dir}/samples/up_raw.bin
  mosquitto_pub -h 127.0.0.1 -p {mqtt} -q 1 -t sys/productKey1/integration/event/post \\
    -m '{event}'
  (an unknown device, e.g. \"deviceKey\":\"nobody\", is answered 1257)

Data-flow messages go through Kafka topic iot-in (IoT topic in the iot-topic header), e.g. every
sample of the quickstart:
  {kt} send --brokers {brokers} --topic iot-in {repo}/examples/quickstart.jsonl

Read the output topics (one JSON line per record: topic, key, headers, value; Ctrl-C to stop):
  {kt} tail --brokers {brokers}                                   # every topic
  {kt} tail --brokers {brokers} iot-integration-measurepoint '^iot-property-.*'
  (from the repository: cargo run --release --example kafka_tool -- tail --brokers {brokers}){kcat}

Metrics and readiness:
  curl -s {admin}/metrics | grep '^sluice_integration'
  curl -s {admin}/readyz

Rules (a copy in {dir}/rules, watched: edit a file and it reloads; a broken edit is refused):
  source {dir}/env.sh; sluice rules list     # or: cargo run --release -- rules list
  sluice rules disable property-post; sluice rules errors integration-event

Ctrl-C stops everything{removed}.",
        event = event.trim_end(),
        repo = repo.display(),
    );
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}
