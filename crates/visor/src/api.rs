//! The control API: HTTP/JSON on a Unix socket (`visor run --api-sock
//! PATH`), with Firecracker's endpoint names where they apply, served by a
//! thread that turns each request into a lifecycle [`Command`] for the
//! machine and answers with what the machine said (each request on a
//! thread of its own, so a pause need not wait for a migration's answer). Errors are JSON
//! `{"fault_message": "..."}` (Firecracker's shape): 400 for a request
//! that cannot be carried out (bad JSON, the wrong state), 404 for an
//! unknown path, 405 for a method a path does not take.
//!
//! | request | body | does |
//! |---|---|---|
//! | `GET /vm/config` | | `{"mem_size_mib", "vcpu_count", "engine", "state", "config"}`: `config` is the machine's whole configuration, the value the CLI built (and a snapshot carries) |
//! | `PATCH /vm` | `{"state": "Paused" \| "Resumed"}` | pauses or resumes every hart and guest time |
//! | `PUT /migrate` | `{"destination_url": "tcp:HOST:PORT", "downtime_ms": 300, "max_rounds": 30, "verify_ram": false}` | live migration (pre-copy); answers with rounds, pages, total and downtime (ms), whether the round limit forced the stop, and (with `verify_ram`) the RAM's CRC-32 at the pause |
//! | `PUT /snapshot/create` | `{"snapshot_dir": DIR, "snapshot_type": "Full" \| "Diff"}` | a snapshot of the paused VM into DIR (a diff: the pages written since the last one) |
//! | `PUT /snapshot/load` | `{"snapshot_dir": DIR, "resume_vm": false}` | replaces the paused VM with the one DIR holds (QEMU's `loadvm`); it runs at once with `resume_vm`; a refused snapshot leaves the VM as it was |
//!
//! The CLI front (`visor pause|resume|snapshot|load|migrate --api-sock PATH`) is a
//! client of the same endpoints ([`request`]).

use anyhow::{bail, Context, Result};
use riscv_virt::migrate::MigrationParams;
use riscv_virt::{Command, CommandError, MachineInfo};
use serde::Deserialize;
use serde_json::json;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;

/// The largest request body the API reads.
const MAX_BODY: u64 = 64 << 10;

/// Serves the API on `socket` (which must not exist yet) for the machine
/// that `commands` reaches, until the machine goes away.
pub fn serve(socket: &Path, commands: Sender<Command>) -> Result<Server> {
    let server = tiny_http::Server::http_unix(socket)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let counter = in_flight.clone();
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            for mut request in server.incoming_requests() {
                counter.fetch_add(1, Ordering::SeqCst);
                // Each request on a thread of its own: a migration's
                // answer takes as long as the migration, and a pause or
                // a look at the VM must not wait for it.
                let commands = commands.clone();
                let counter = counter.clone();
                let _ = std::thread::Builder::new()
                    .name("api-request".into())
                    .spawn(move || {
                        let (status, body) = answer(&mut request, &commands);
                        let text = if body.is_null() {
                            String::new()
                        } else {
                            body.to_string()
                        };
                        let response = tiny_http::Response::from_string(text)
                            .with_status_code(status)
                            .with_header(
                                "Content-Type: application/json"
                                    .parse::<tiny_http::Header>()
                                    .expect("a valid header"),
                            );
                        let _ = request.respond(response);
                        counter.fetch_sub(1, Ordering::SeqCst);
                    });
            }
        })?;
    Ok(Server { in_flight })
}

/// The API's thread, as the machine's owner sees it.
pub struct Server {
    in_flight: Arc<AtomicUsize>,
}

impl Server {
    /// Waits (a little) until the answers to requests the machine already
    /// carried out are sent, before the process ends.
    pub fn finish_answers(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while self.in_flight.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VmState {
    state: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Migrate {
    destination_url: String,
    #[serde(default)]
    downtime_ms: Option<u64>,
    #[serde(default)]
    max_rounds: Option<u32>,
    #[serde(default)]
    verify_ram: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotLoad {
    snapshot_dir: PathBuf,
    #[serde(default)]
    resume_vm: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotCreate {
    snapshot_dir: PathBuf,
    /// "Full" (the default) or "Diff", as Firecracker names them.
    #[serde(default)]
    snapshot_type: Option<String>,
}

fn fault(status: u16, message: impl std::fmt::Display) -> (u16, serde_json::Value) {
    (status, json!({ "fault_message": message.to_string() }))
}

/// The status and JSON body for `request`.
fn answer(
    request: &mut tiny_http::Request,
    commands: &Sender<Command>,
) -> (u16, serde_json::Value) {
    use tiny_http::Method::{Get, Patch, Put};
    let mut body = String::new();
    if request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_string(&mut body)
        .is_err()
        || body.len() as u64 > MAX_BODY
    {
        return fault(
            400,
            format!("the body must be UTF-8 JSON of at most {MAX_BODY} bytes"),
        );
    }
    let path = request.url().split('?').next().unwrap_or("").to_owned();
    let method = request.method().clone();
    match (path.as_str(), method) {
        ("/vm/config", Get) => match ask(commands, Command::Info) {
            Some(info) => (200, describe(&info)),
            None => fault(400, "the VM has stopped"),
        },
        ("/vm", Patch) => {
            let wanted: VmState = match serde_json::from_str(&body) {
                Ok(v) => v,
                Err(e) => return fault(400, format!("bad JSON: {e}")),
            };
            let command = match wanted.state.as_str() {
                "Paused" => Command::Pause,
                "Resumed" => Command::Resume,
                other => return fault(400, format!("unknown state `{other}` (Paused or Resumed)")),
            };
            done(ask(commands, command))
        }
        ("/snapshot/create", Put) => {
            let wanted: SnapshotCreate = match serde_json::from_str(&body) {
                Ok(v) => v,
                Err(e) => return fault(400, format!("bad JSON: {e}")),
            };
            let diff = match wanted.snapshot_type.as_deref() {
                None | Some("Full") => false,
                Some("Diff") => true,
                Some(other) => {
                    return fault(
                        400,
                        format!("unknown snapshot_type `{other}` (Full or Diff)"),
                    )
                }
            };
            done(ask(commands, |reply| Command::Snapshot {
                dir: wanted.snapshot_dir,
                diff,
                reply,
            }))
        }
        ("/snapshot/load", Put) => {
            let wanted: SnapshotLoad = match serde_json::from_str(&body) {
                Ok(v) => v,
                Err(e) => return fault(400, format!("bad JSON: {e}")),
            };
            done(ask(commands, |reply| Command::Load {
                dir: wanted.snapshot_dir,
                resume: wanted.resume_vm,
                reply,
            }))
        }
        ("/migrate", Put) => {
            let wanted: Migrate = match serde_json::from_str(&body) {
                Ok(v) => v,
                Err(e) => return fault(400, format!("bad JSON: {e}")),
            };
            let Some(to) = wanted.destination_url.strip_prefix("tcp:") else {
                return fault(400, "destination_url must be tcp:HOST:PORT");
            };
            let defaults = MigrationParams::default();
            let params = MigrationParams {
                downtime: wanted
                    .downtime_ms
                    .map_or(defaults.downtime, std::time::Duration::from_millis),
                max_rounds: wanted.max_rounds.unwrap_or(defaults.max_rounds),
                verify: wanted.verify_ram,
            };
            match ask(commands, |reply| Command::Migrate {
                to: to.to_owned(),
                params,
                reply,
            }) {
                Some(Ok((report, crc))) => (
                    200,
                    json!({
                        "rounds": report.rounds,
                        "pages_sent": report.pages_sent,
                        "total_ms": report.total.as_secs_f64() * 1e3,
                        "downtime_ms": report.downtime.as_secs_f64() * 1e3,
                        "forced": report.forced,
                        "ram_crc32": crc.map(|crc| format!("{crc:08x}")),
                    }),
                ),
                Some(Err(e)) => fault(400, e),
                None => fault(400, "the VM has stopped"),
            }
        }
        ("/vm/config" | "/vm" | "/snapshot/create" | "/snapshot/load" | "/migrate", _) => {
            fault(405, format!("{path} does not take that method"))
        }
        _ => fault(404, format!("no such endpoint: {path}")),
    }
}

/// Sends the command `make` builds and waits for the machine's answer
/// (`None`: the machine has stopped).
fn ask<T>(commands: &Sender<Command>, make: impl FnOnce(Sender<T>) -> Command) -> Option<T> {
    let (reply, answer) = channel();
    commands.send(make(reply)).ok()?;
    answer.recv().ok()
}

fn done(result: Option<Result<(), CommandError>>) -> (u16, serde_json::Value) {
    match result {
        Some(Ok(())) => (204, serde_json::Value::Null),
        Some(Err(e)) => fault(400, e),
        None => fault(400, "the VM has stopped"),
    }
}

fn describe(info: &MachineInfo) -> serde_json::Value {
    let config = &info.config;
    json!({
        "mem_size_mib": config.ram_size >> 20,
        "vcpu_count": config.harts,
        "engine": config.engine,
        "state": if info.paused { "Paused" } else { "Running" },
        "config": config,
    })
}

/// One request to the API at `socket`; the response body on success
/// (2xx), else the fault message as the error.
pub fn request(socket: &Path, method: &str, path: &str, body: &str) -> Result<String> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to {}", socket.display()))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("the API's answer is not HTTP")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the API's answer has no status")?;
    if (200..300).contains(&status) {
        return Ok(body.to_owned());
    }
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["fault_message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned());
    bail!("{message}")
}
