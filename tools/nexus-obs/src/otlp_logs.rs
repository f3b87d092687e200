//! The nodes' log records as OTLP/HTTP JSON (`ExportLogsServiceRequest`),
//! exported by `serve` when the cluster file has an `[otlp]` table.
//!
//! Mapping: one `resourceLogs` per node (`host.name` = its name, `host.id`
//! = its device id), one scope `nexus-obs`, one `logRecord` per record:
//! `timeUnixNano` from the record's timestamp, `severityNumber` 1/5/9/13/17
//! for trace/debug/info/warn/error with `severityText` in capitals, `body`
//! the message, `traceId`/`spanId` when the record has them (lower-case
//! hex), attributes `log.target`, `service.id` (the sender logd stamped),
//! `log.record.id` and the record's own fields (strings, integers as
//! `intValue` strings, booleans, doubles).
//!
//! Posting uses traced's exporter (the same retry rule: only 429, 502,
//! 503, 504 and connection errors, doubling backoff) on its own thread,
//! fed through a bounded channel of request bodies; when it falls behind,
//! bodies are dropped and counted.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread::JoinHandle;

use serde_json::{json, Value};

use crate::config::NodeEntry;
use crate::render::LogLine;

/// Request bodies waiting for the exporter thread.
pub const QUEUE: usize = 64;
/// Records in one request at most.
pub const MAX_BATCH: usize = 256;

fn severity(level: &str) -> (u8, &'static str) {
    match level {
        "trace" => (1, "TRACE"),
        "debug" => (5, "DEBUG"),
        "warn" => (13, "WARN"),
        "error" => (17, "ERROR"),
        _ => (9, "INFO"),
    }
}

fn any_value(v: &Value) -> Value {
    match v {
        Value::Bool(b) => json!({ "boolValue": b }),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({ "intValue": n.to_string() }),
        Value::Number(n) => json!({ "doubleValue": n.as_f64() }),
        Value::String(s) => json!({ "stringValue": s }),
        other => json!({ "stringValue": other.to_string() }),
    }
}

/// The OTLP JSON body for `lines` of `node` (at most [`MAX_BATCH`]).
pub fn logs_body(node: &NodeEntry, lines: &[LogLine]) -> String {
    let records: Vec<Value> = lines
        .iter()
        .take(MAX_BATCH)
        .map(|l| {
            let (num, text) = severity(l.level());
            let mut attrs = vec![
                json!({"key": "log.target", "value": {"stringValue": l.record.get("target").and_then(Value::as_str).unwrap_or("")}}),
                json!({"key": "service.id", "value": {"intValue": l.sender().to_string()}}),
                json!({"key": "log.record.id", "value": {"intValue": l.id().to_string()}}),
            ];
            for (k, v) in l.fields() {
                if k != "trace_id" && k != "span_id" {
                    attrs.push(json!({"key": k, "value": any_value(v)}));
                }
            }
            let mut r = json!({
                "timeUnixNano": crate::time::record_ns(&l.record).unwrap_or(0).to_string(),
                "severityNumber": num,
                "severityText": text,
                "body": {"stringValue": l.record.get("message").and_then(Value::as_str).unwrap_or("")},
                "attributes": attrs,
            });
            for (k, otlp) in [("trace_id", "traceId"), ("span_id", "spanId")] {
                if let (Some(o), Some(id)) = (r.as_object_mut(), l.record.get(k).and_then(Value::as_str)) {
                    o.insert(otlp.into(), Value::String(id.to_string()));
                }
            }
            r
        })
        .collect();
    json!({
        "resourceLogs": [{
            "resource": {"attributes": [
                {"key": "host.name", "value": {"stringValue": node.name}},
                {"key": "host.id", "value": {"stringValue": node.id.to_string()}},
            ]},
            "scopeLogs": [{"scope": {"name": "nexus-obs"}, "logRecords": records}],
        }]
    })
    .to_string()
}

/// The exporter thread and its queue.
#[derive(Debug)]
pub struct LogsExport {
    tx: Option<SyncSender<(Vec<u8>, u64)>>,
    handle: Option<JoinHandle<traced::otlp::OtlpStats>>,
    /// Bodies dropped because the queue was full.
    pub dropped: u64,
}

impl LogsExport {
    /// Starts the thread posting to `cfg.endpoint`.
    pub fn start(cfg: &traced::config::OtlpConfig) -> Result<LogsExport, String> {
        let mut exporter =
            traced::otlp::OtlpExporter::new(cfg).map_err(|e| format!("otlp logs: {e}"))?;
        let (tx, rx) = sync_channel::<(Vec<u8>, u64)>(QUEUE);
        let handle = std::thread::spawn(move || {
            while let Ok((body, n)) = rx.recv() {
                exporter.send_body(&body, n);
            }
            exporter.stats()
        });
        Ok(LogsExport {
            tx: Some(tx),
            handle: Some(handle),
            dropped: 0,
        })
    }

    /// Queues `lines` of `node` (in requests of at most [`MAX_BATCH`]).
    pub fn push(&mut self, node: &NodeEntry, lines: &[LogLine]) {
        for chunk in lines.chunks(MAX_BATCH) {
            let body = logs_body(node, chunk).into_bytes();
            if let Some(tx) = &self.tx {
                match tx.try_send((body, chunk.len() as u64)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                        self.dropped += 1;
                    }
                }
            }
        }
    }

    /// Stops the thread after what it holds; its counters.
    pub fn finish(mut self) -> Option<traced::otlp::OtlpStats> {
        drop(self.tx.take());
        self.handle.take()?.join().ok()
    }
}
