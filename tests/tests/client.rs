//! A client generated from the committed `openapi.json` with a generator from PyPI
//! (`openapi-python-client`) runs the quick start against the real services: create a
//! project, a survey and a webhook, dispatch, read the trigger, and parse an error.

use beckon_e2e::TestApp;
use beckon_e2e::receiver::Receiver;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn tool(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        std::env::var("HOME").unwrap_or_default() + "/.cache/beckon-tools/" + default
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_generated_from_the_committed_spec_runs_the_quick_start() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempfile_dir();
    let config = out.join("config.yaml");
    // No formatter run afterwards: the client must work as generated.
    std::fs::write(&config, "post_hooks: []\n").unwrap();
    let package = out.join("beckon_api_client");
    let generated = Command::new(tool(
        "BECKON_OPENAPI_PYTHON_CLIENT",
        "client-venv/bin/openapi-python-client",
    ))
    .args(["generate", "--meta", "none", "--path"])
    .arg(repo.join("openapi.json"))
    .arg("--config")
    .arg(&config)
    .arg("--output-path")
    .arg(&package)
    .output()
    .expect("openapi-python-client (scripts/test-tools.sh installs it)");
    let log = String::from_utf8_lossy(&generated.stdout).into_owned()
        + &String::from_utf8_lossy(&generated.stderr);
    assert!(generated.status.success(), "generation failed:\n{log}");
    assert!(
        !log.contains("Warning"),
        "the generator skipped parts of the spec:\n{log}"
    );

    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let run = tokio::process::Command::new(tool("BECKON_CLIENT_PYTHON", "client-venv/bin/python"))
        .arg(repo.join("tests/client/quickstart.py"))
        .env("PYTHONPATH", &out)
        .env("BECKON_URL", app.url(""))
        .env("BECKON_TOKEN", &app.token)
        .env("BECKON_WEBHOOK_URL", receiver.url("/quickstart"))
        .output();
    let run = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the quick start finishes")
        .unwrap();
    assert!(
        run.status.success(),
        "the quick start failed:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let seen: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(seen["trigger_status"], "completed", "{seen}");
    assert_eq!(seen["sent"], 1, "{seen}");
    assert_eq!(seen["magic_link_is_a_survey_page"], true, "{seen}");
    assert_eq!(seen["webhook_secret_prefix"], "whsec_", "{seen}");
    assert_eq!(seen["error_code"], "trigger_not_found", "{seen}");
    // The gateway's access log names the request the error answered.
    let request_id = seen["error_request_id"].as_str().unwrap();
    assert!(request_id.starts_with("req_"), "{seen}");
    let gateway_log: String = std::fs::read_dir(app.log_dir())
        .expect("the logs")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("ingest-api"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        gateway_log
            .lines()
            .any(|l| l.contains("/api/v1/triggers/{trigger_id} 404") && l.contains(request_id)),
        "no access-log line with {request_id}"
    );
    // The webhook the quick start subscribed got the invitation.
    let got = receiver
        .wait_for("/quickstart", 1, Duration::from_secs(30))
        .await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["type"], "invitation.created", "{body}");
    assert_eq!(body["data"]["trigger"]["id"], seen["trigger_id"], "{body}");
    let _ = std::fs::remove_dir_all(&out);
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("beckon-client-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
