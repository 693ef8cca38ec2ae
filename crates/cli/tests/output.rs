//! What `beckon` prints, as a script reads it: with `--output json` one JSON document on
//! stdout per command, notes on stderr, and a failure as a JSON error with a stable code.
//! Each test has a fresh database of its own (`BECKON_TEST_DATABASE_URL`, else the machine's).

use beckon_store::testing::TestDatabase;
use serde_json::Value;
use std::process::{Command, Output};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Runs `beckon` against `db_url`.
fn beckon(db_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_beckon"))
        .args(args)
        .env("BECKON_DATABASE_URL", db_url)
        .env_remove("BECKON_OUTPUT")
        .output()
        .expect("the CLI runs")
}

/// Runs `beckon --output json` and expects it to succeed with exactly one JSON document on
/// stdout.
fn json(db_url: &str, args: &[&str]) -> (Value, String) {
    let out = beckon(db_url, &[&["--output", "json"], args].concat());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "beckon {args:?} failed: {stderr}");
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout of beckon {args:?} is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (doc, stderr)
}

/// The JSON error a failed `beckon --output json` printed on stderr, after checking that it
/// failed and printed nothing on stdout.
fn json_error(db_url: &str, args: &[&str]) -> (Option<i32>, Value) {
    let out = beckon(db_url, &[&["--output", "json"], args].concat());
    assert!(!out.status.success(), "beckon {args:?} succeeded");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err: Value = serde_json::from_slice(&out.stderr).unwrap_or_else(|e| {
        panic!(
            "stderr is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(err["error"]["message"].is_string(), "{err}");
    (out.status.code(), err)
}

fn timestamp(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().expect("a timestamp"), &Rfc3339)
        .unwrap_or_else(|e| panic!("{value} is not RFC 3339: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_create_and_list_print_json_documents_and_keep_notes_on_stderr() {
    let db = TestDatabase::new().await.unwrap();
    let (created, notes) = json(db.url(), &["org", "create", "--name", "Acme"]);
    assert_eq!(created["name"], "Acme");
    assert!(
        created["token"].as_str().unwrap().starts_with("oat_"),
        "{created}"
    );
    assert!(created["org_id"].is_string() && created["token_id"].is_string());
    assert!(notes.contains("shown only this once"), "{notes}");
    json(db.url(), &["org", "create", "--name", "Globex"]);

    let (listed, _) = json(db.url(), &["org", "list"]);
    let listed = listed.as_array().expect("an array");
    let names: Vec<&str> = listed.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Globex", "Acme"], "newest first");
    assert_eq!(listed[1]["id"], created["org_id"]);
    assert!(timestamp(&listed[0]["created_at"]) >= timestamp(&listed[1]["created_at"]));
    assert!(!Value::Array(listed.clone()).to_string().contains("oat_"));

    // The table is for people: no JSON, a header and a line per organization.
    let table = beckon(db.url(), &["org", "list"]);
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.starts_with("id "), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("Acme") && !text.contains('{'), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_list_reads_page_after_page_until_none_is_left() {
    let db = TestDatabase::new().await.unwrap();
    let store = beckon_store::Store::new(db.url(), 1).unwrap();
    let mut conn = store.conn().await.unwrap();
    for n in 0..5 {
        beckon_store::tenancy::create_organization(&mut conn, &format!("org {n}"))
            .await
            .unwrap();
    }
    // Two a page: three pages.
    let listed = beckon_cli::commands::org::list(&mut conn, 2).await.unwrap();
    let names: Vec<&str> = listed.0.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["org 4", "org 3", "org 2", "org 1", "org 0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_create_and_list_follow_the_output_mode() {
    let db = TestDatabase::new().await.unwrap();
    let (org, _) = json(db.url(), &["org", "create", "--name", "Acme"]);
    let org = org["org_id"].as_str().unwrap();
    let (created, notes) = json(
        db.url(),
        &[
            "token",
            "create",
            "--org",
            org,
            "--name",
            "ci",
            "--scopes",
            "send,read",
            "--expires-at",
            "2099-01-01T00:00:00Z",
        ],
    );
    assert!(notes.contains("shown only this once"), "{notes}");
    assert_eq!(created["name"], "ci");
    assert_eq!(created["org_id"], org);
    assert_eq!(created["scopes"], serde_json::json!(["send", "read"]));
    assert_eq!(created["expires_at"], "2099-01-01T00:00:00Z");
    let secret = created["token"].as_str().unwrap().to_owned();

    let (listed, _) = json(db.url(), &["token", "list", "--org", org]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["id"], created["token_id"]);
    assert_eq!(listed[0]["name"], "ci");
    assert_eq!(listed[0]["revoked_at"], Value::Null);
    timestamp(&listed[0]["created_at"]);
    assert_eq!(timestamp(&listed[0]["expires_at"]).year(), 2099);
    assert_eq!(listed[1]["name"], "initial");
    let text = Value::Array(listed.clone()).to_string();
    assert!(!text.contains(&secret) && !text.contains("oat_"), "{text}");

    let table = beckon(db.url(), &["token", "list", "--org", org]);
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.lines().nth(1).unwrap().contains("send,read"), "{text}");
    assert!(!text.contains('{') && !text.contains("oat_"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_status_reports_pending_versions_and_migrate_prints_what_it_applied() {
    let db = TestDatabase::empty().await.unwrap();
    let (before, _) = json(db.url(), &["migrate", "status"]);
    let pending = before["pending"].as_array().unwrap().clone();
    assert!(!pending.is_empty(), "{before}");
    assert_eq!(before["applied"], serde_json::json!([]));
    assert_eq!(before["unknown"], serde_json::json!([]));

    let (applied, _) = json(db.url(), &["migrate"]);
    assert_eq!(applied["applied"], Value::Array(pending.clone()));
    let (again, _) = json(db.url(), &["migrate"]);
    assert_eq!(
        again["applied"],
        serde_json::json!([]),
        "nothing left to apply"
    );

    let (after, _) = json(db.url(), &["migrate", "status"]);
    assert_eq!(after["applied"], Value::Array(pending));
    assert_eq!(after["pending"], serde_json::json!([]));

    let table = beckon(db.url(), &["migrate", "status"]);
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.contains("0 pending"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_json_errors_with_stable_codes_on_stderr() {
    let db = TestDatabase::new().await.unwrap();
    let nobody = uuid::Uuid::now_v7().to_string();
    let (status, err) = json_error(db.url(), &["token", "create", "--org", &nobody]);
    assert_eq!(err["error"]["code"], "not_found", "{err}");
    assert_eq!(status, Some(1));
    let (_, err) = json_error(
        db.url(),
        &["token", "revoke", "--org", &nobody, "--id", &nobody],
    );
    assert_eq!(err["error"]["code"], "not_found", "{err}");

    // A command line clap refuses.
    let (status, err) = json_error(db.url(), &["org", "frobnicate"]);
    assert_eq!(err["error"]["code"], "invalid_input", "{err}");
    assert_eq!(status, Some(2));
    let (_, err) = json_error(
        db.url(),
        &["token", "create", "--org", &nobody, "--scopes", "root"],
    );
    assert_eq!(err["error"]["code"], "invalid_input", "{err}");

    // Nothing listens there.
    let (_, err) = json_error("postgres://postgres@127.0.0.1:1/beckon", &["org", "list"]);
    assert_eq!(err["error"]["code"], "unavailable", "{err}");
    let (_, err) = json_error(
        db.url(),
        &["--amqp-url", "amqp://guest:guest@127.0.0.1:1/%2f", "queues"],
    );
    assert_eq!(err["error"]["code"], "unavailable", "{err}");

    // Settings that can never work are the caller's to fix, not worth retrying: a mode that
    // needs a CA without one, a CA file that is not there, a server refusing TLS.
    let (_, err) = json_error(
        "postgres://postgres@127.0.0.1:5432/beckon?sslmode=verify-full",
        &["org", "list"],
    );
    assert_eq!(err["error"]["code"], "invalid_input", "{err}");
    let (_, err) = json_error(
        "postgres://postgres@127.0.0.1:5432/beckon?sslmode=verify-full",
        &["migrate"],
    );
    assert_eq!(err["error"]["code"], "invalid_input", "{err}");
    let (_, err) = json_error(
        db.url(),
        &[
            "--amqp-url",
            "amqps://guest:guest@127.0.0.1:5672/%2f?cacertfile=/nonexistent.pem",
            "queues",
        ],
    );
    assert_eq!(err["error"]["code"], "invalid_input", "{err}");
    let (_, err) = json_error(
        db.url(),
        &[
            "--amqp-url",
            "amqps://guest:guest@localhost:5672/%2f",
            "queues",
        ],
    );
    assert_eq!(
        err["error"]["code"], "invalid_input",
        "a plain port answering TLS: {err}"
    );

    // A deployment nothing declared, and a queue there is none of.
    let nothing = format!("t{}", uuid::Uuid::now_v7().simple());
    let (_, err) = json_error(db.url(), &["--queue-prefix", &nothing, "queues"]);
    assert_eq!(err["error"]["code"], "not_found", "{err}");
    let (_, err) = json_error(db.url(), &["dlq", "peek", "nope"]);
    assert_eq!(err["error"]["code"], "not_found", "{err}");

    // Without --output json, an error is text for a person; stdout stays empty either way.
    let out = beckon(db.url(), &["token", "create", "--org", &nobody]);
    assert!(!out.status.success() && out.stdout.is_empty());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.starts_with("Error: No organization"), "{text}");
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = beckon("postgres://unused", &["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["beckon", "dlq", "replay", "dry-run", "output"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let out = beckon("postgres://unused", &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "not a shell it completes for");
}
