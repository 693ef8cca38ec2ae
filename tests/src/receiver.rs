//! A real HTTP endpoint on 127.0.0.1 that webhooks are sent to in tests.
//!
//! It answers the URL verification challenge (except on paths containing `noverify`) and
//! records every other request. Its behaviour is chosen by the path:
//! - `/ok/...`: 200;
//! - `/fail-first/{n}/...`: 500 for the first `n` requests on that path, then 200;
//! - `/retry-after/{secs}/...`: 429 with `Retry-After: secs` for the first request, then 200;
//! - `/gone/...`: 410;
//! - `/throttle-first/{n}/{secs}/...`: 429 with `Retry-After: secs` for the first `n`
//!   requests on that path, then 500;
//! - `/too-many/{n}/...`: 429 without `Retry-After` for the first `n` requests on that path,
//!   then 500;
//! - `/unavailable/{secs}/...`: 503 with `Retry-After: secs`;
//! - `/always-500/...`: 500;
//! - `/hang/{secs}/...`: waits `secs` before answering 200;
//! - `/garbage/...`: 500 with a body holding NUL bytes and invalid UTF-8;
//! - `/status/{code}/...`: that status code.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver took.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    counts: HashMap<String, usize>,
    /// Verification challenges received, per path.
    challenges: HashMap<String, usize>,
}

pub struct Receiver {
    pub port: u16,
    state: Arc<Mutex<State>>,
    handle: actix_web::dev::ServerHandle,
}

async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<State>>>,
) -> HttpResponse {
    let path = req.path().to_owned();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if json["type"] == "verification" {
        *state
            .lock()
            .unwrap()
            .challenges
            .entry(path.clone())
            .or_default() += 1;
        if path.contains("noverify") {
            return HttpResponse::Ok().body("not the challenge");
        }
        return HttpResponse::Ok()
            .content_type("text/plain")
            .body(json["challenge"].as_str().unwrap_or("").to_owned());
    }
    let seen = {
        let mut s = state.lock().unwrap();
        s.received.push(Received {
            path: path.clone(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body: body.to_vec(),
            at: Instant::now(),
        });
        let count = s.counts.entry(path.clone()).or_default();
        *count += 1;
        *count
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let number = |i: usize| {
        parts
            .get(i)
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(0)
    };
    match parts.first().copied() {
        Some("fail-first") if seen as u64 <= number(1) => {
            HttpResponse::InternalServerError().body("not yet")
        }
        Some("retry-after") if seen == 1 => HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", number(1).to_string()))
            .body("slow down"),
        Some("throttle-first") if seen as u64 <= number(1) => HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", number(2).to_string()))
            .body("slow down"),
        Some("throttle-first") => HttpResponse::InternalServerError().body("broken"),
        Some("too-many") if seen as u64 <= number(1) => {
            HttpResponse::TooManyRequests().body("slow down")
        }
        Some("too-many") => HttpResponse::InternalServerError().body("broken"),
        Some("unavailable") => HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", number(1).to_string()))
            .body("down for maintenance"),
        Some("gone") => HttpResponse::Gone().body("gone"),
        Some("status") => HttpResponse::build(
            actix_web::http::StatusCode::from_u16(number(1) as u16)
                .unwrap_or(actix_web::http::StatusCode::OK),
        )
        .body("as asked"),
        Some("always-500") => HttpResponse::InternalServerError().body("broken"),
        Some("garbage") => HttpResponse::InternalServerError().body(&b"bad\0answer \xff\xfe\0"[..]),
        Some("hang") => {
            tokio::time::sleep(Duration::from_secs(number(1))).await;
            HttpResponse::Ok().body("late")
        }
        _ => HttpResponse::Ok().body("thanks"),
    }
}

impl Receiver {
    pub async fn start() -> Self {
        let state: Arc<Mutex<State>> = Arc::default();
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(handle))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))
        .expect("bind the receiver");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            port,
            state,
            handle,
        }
    }

    /// A URL of this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far whose path starts with `prefix`.
    /// How many verification challenges were posted to `path`.
    pub fn challenges(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .challenges
            .get(path)
            .copied()
            .unwrap_or_default()
    }

    pub fn received(&self, prefix: &str) -> Vec<Received> {
        self.state
            .lock()
            .unwrap()
            .received
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Waits until at least `n` requests under `prefix` arrived, or panics after `timeout`.
    pub async fn wait_for(&self, prefix: &str, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received(prefix);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} webhooks on {prefix}; got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

/// Verifies a received webhook's signature with the `standardwebhooks` library from PyPI (a
/// verifier no one here wrote). Returns the library's verdict.
pub fn verify_with_standardwebhooks(secret: &str, received: &Received) -> Result<(), String> {
    let python = std::env::var("BECKON_TEST_PYTHON").unwrap_or_else(|_| {
        let venv =
            std::env::var("HOME").unwrap_or_default() + "/.cache/beckon-tools/venv/bin/python";
        if std::path::Path::new(&venv).exists() {
            venv
        } else {
            "python3".into()
        }
    });
    let input = serde_json::json!({
        "secret": secret,
        "headers": received.headers,
        "body": String::from_utf8_lossy(&received.body),
    });
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
data = json.load(sys.stdin)
Webhook(data["secret"]).verify(data["body"], data["headers"])
print("verified")
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run python: {e}"))?;
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
