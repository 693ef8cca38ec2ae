//! The container image, built and run rather than only written: `deploy/Dockerfile`'s
//! `packaged` stage holding the binaries under test, on a Debian 12 base made by debootstrap
//! (`scripts/image.sh`; no registry, no Docker engine: Debian's Podman). The four services and
//! the migration run from it against the local PostgreSQL and RabbitMQ, on the host's network;
//! the README's quick start passes through it; and podman-compose brings up
//! `deploy/compose.yaml` with `deploy/compose.host.yaml` the same way. Each test has a database
//! of its own, its own queue prefix and ports, and leaves no container behind.

use beckon_e2e::receiver::{Receiver, verify_with_standardwebhooks};
use beckon_e2e::{Options, TestApp, amqp_url, free_port, image};
use beckon_store::testing::TestDatabase;
use serde_json::{Value, json};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_start_passes_through_the_image() {
    let image = image::build();
    // What the Kubernetes manifests count on: user and group 10001, and the CA roots the
    // services trust for TLS.
    let user = podman(&["image", "inspect", "--format", "{{.Config.User}}", &image]);
    assert_eq!(user.trim(), "10001:10001");
    let mut has_roots = Command::new("test");
    has_roots.args(["-s", "/etc/ssl/certs/ca-certificates.crt"]);
    let name = image::container_name("ca-roots");
    let status = image::containerized(&has_roots, &image, &name, false)
        .status()
        .expect("podman runs");
    assert!(status.success(), "the image holds no CA roots");

    // `make up`: the migrations on an empty database, then the four services, all from the
    // image.
    let mut app = TestApp::spawn_with(Options {
        image: Some(image.clone()),
        migrate: true,
        ..Options::default()
    })
    .await;
    let status: Value = serde_json::from_slice(
        &app.cli(&["--output", "json", "migrate", "status"], "")
            .stdout,
    )
    .expect("migrate status answers JSON");
    assert_eq!(status["pending"], json!([]), "{status}");
    let mut running: Vec<String> = podman(&[
        "ps",
        "--filter",
        &format!("name={}", app.prefix),
        "--format",
        "{{.Image}} {{.Command}}",
    ])
    .lines()
    .map(str::to_owned)
    .collect();
    running.sort();
    let expected: Vec<String> = ["ingest-api", "invitation", "matcher", "webhook-delivery"]
        .iter()
        .map(|service| format!("{image} {service}"))
        .collect();
    assert_eq!(running, expected, "every service runs from the image");

    // The demo organization, token, project and Live survey `make up` seeds, from the image's
    // CLI; then the README's curl line, as that organization.
    let out = app.cli(&["--output", "json", "demo"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let demo: Value = serde_json::from_slice(&out.stdout).expect("demo answers JSON");
    app.token = demo["token"].as_str().expect("a token").to_owned();
    app.org_id = demo["org_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("an org");
    let project: Uuid = demo["project_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("a project");
    let (status, dispatched) = app
        .dispatch(json!({"project_id": project, "user_ref": "user_abc123", "event": "subscription_cancelled"}))
        .await;
    assert_eq!(status, 200, "{dispatched}");
    assert_eq!(dispatched["matched_surveys"], 1, "{dispatched}");
    assert_eq!(dispatched["created_count"], 1, "{dispatched}");
    // The magic link opens the survey.
    let link = dispatched["created_invitations"][0]["magic_link_url"]
        .as_str()
        .expect("a magic link");
    assert!(link.starts_with(&app.base_url), "{link}");
    let page = app.http.get(link).send().await.expect("the link answers");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("a page");
    assert!(
        page.contains("How likely are you to recommend us to a friend?"),
        "{page}"
    );

    // A webhook endpoint on this machine, as `make up` suggests: it is verified, and the next
    // invitation reaches it, signed.
    let receiver = Receiver::start().await;
    let subscription = app
        .create_webhook(project, json!({"url": receiver.url("/ok/quick-start")}))
        .await;
    let secret = subscription["secret"].as_str().expect("a secret");
    let (status, dispatched) = app
        .dispatch(json!({"project_id": project, "user_ref": "user_def456", "event": {"custom": "payment_failed"}}))
        .await;
    assert_eq!(status, 200, "{dispatched}");
    let got = receiver.wait_for("/ok/quick-start", 1, WAIT).await;
    assert_eq!(got[0].json()["type"], "invitation.created");
    verify_with_standardwebhooks(secret, &got[0]).expect("the webhook is signed");
    let trigger = dispatched["trigger_id"].as_str().expect("a trigger id");
    let read = app.wait_trigger(trigger, "completed", WAIT).await;
    assert_eq!(read["summary"]["sent"], 1, "{read}");

    // SIGTERM reaches the service inside its container: it stops as it does anywhere else,
    // and the container goes with it.
    let started = Instant::now();
    app.stop("ingest-api");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "ingest-api took {:?} to stop",
        started.elapsed()
    );
    let log = std::fs::read_dir(app.log_dir())
        .expect("the logs")
        .filter_map(Result::ok)
        .find(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("ingest-api")
        })
        .map(|entry| std::fs::read_to_string(entry.path()).expect("a log"))
        .expect("the gateway's log");
    assert!(
        log.contains("\"stopped\""),
        "the gateway did not stop cleanly:\n{log}"
    );
    let prefix = app.prefix.clone();
    assert!(
        !ours(&prefix).iter().any(|name| name.contains("ingest-api")),
        "the gateway's container outlived it"
    );
    drop(app);
    assert_eq!(
        ours(&prefix),
        Vec::<String>::new(),
        "containers left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_brings_up_the_image_against_the_hosts_postgresql_and_rabbitmq() {
    beckon_runtime::install_crypto_provider();
    let image = image::build();
    let db = TestDatabase::empty().await.expect("an empty database");
    let prefix = format!("t{}", Uuid::now_v7().simple());
    let (port, ops_port) = (free_port(), free_port());
    let compose = Compose {
        project: image::container_name(&prefix),
        env: vec![
            ("BECKON_IMAGE", image.clone()),
            ("BECKON_DATABASE_URL", db.url().to_owned()),
            ("BECKON_AMQP_URL", amqp_url()),
            ("BECKON_QUEUE_PREFIX", prefix.clone()),
            ("BECKON_HTTP_ADDR", format!("127.0.0.1:{port}")),
            ("BECKON_OPS_ADDR", format!("127.0.0.1:{ops_port}")),
            ("BECKON_MATCHER_OPS_ADDR", "127.0.0.1:0".into()),
            ("BECKON_INVITATION_OPS_ADDR", "127.0.0.1:0".into()),
            ("BECKON_WEBHOOK_OPS_ADDR", "127.0.0.1:0".into()),
        ],
        amqp_url: amqp_url(),
        prefix: prefix.clone(),
    };
    let up = compose.run(&["up", "--detach", "--no-build"]);
    assert!(
        up.status.success(),
        "compose up: {}",
        String::from_utf8_lossy(&up.stderr)
    );

    // The bundled PostgreSQL and RabbitMQ stay down; the services start from the image once
    // `migrate` has migrated the empty database.
    let mut services: Vec<String> = compose
        .containers()
        .into_iter()
        .map(|(service, image)| format!("{service} {image}"))
        .collect();
    services.sort();
    let expected: Vec<String> = [
        "ingest-api",
        "invitation",
        "matcher",
        "migrate",
        "webhook-delivery",
    ]
    .iter()
    .map(|service| format!("{service} {image}"))
    .collect();
    assert_eq!(services, expected);
    let http = reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("a client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{ops_port}/readyz"))
            .send()
            .await
            && r.status().is_success()
            && r.json::<Value>()
                .await
                .is_ok_and(|b| b["reply_queue"] == true)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway was not ready: {}",
            compose.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let migrate = podman(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &format!("{}_migrate_1", compose.project),
    ]);
    assert_eq!(migrate.trim(), "0", "migrate failed: {}", compose.logs());

    // A dispatch through it, as a new organization.
    let store = beckon_store::Store::new(db.url(), 1).expect("a store");
    let mut conn = store.conn().await.expect("a connection");
    let org = beckon_store::tenancy::create_organization(&mut conn, "Compose")
        .await
        .expect("an organization");
    let (_, token) = beckon_store::tenancy::create_token(
        &mut conn,
        org.id,
        "compose",
        &[beckon_domain::scope::Scope::Admin],
        None,
        None,
    )
    .await
    .expect("a token");
    drop(conn);
    let api = |path: &str| format!("http://127.0.0.1:{port}/api/v1{path}");
    let post = |path: &str, body: Value| {
        http.post(api(path))
            .bearer_auth(token.expose())
            .json(&body)
            .send()
    };
    let project: Value = post("/projects", json!({"name": "Web app"}))
        .await
        .expect("a project")
        .json()
        .await
        .expect("JSON");
    let project = project["id"].as_str().expect("a project id").to_owned();
    let survey = post(
        &format!("/projects/{project}/surveys"),
        json!({"name": "Churn", "status": "live", "trigger": {"events": ["trial_expired"]},
               "questions": [{"id": "nps", "type": "nps", "title": "How likely?", "required": true}]}),
    )
    .await
    .expect("a survey");
    assert_eq!(survey.status(), 201);
    let dispatched = post(
        "/lifecycle/dispatch",
        json!({"project_id": project, "user_ref": "u1", "event": "trial_expired"}),
    )
    .await
    .expect("a dispatch");
    assert_eq!(dispatched.status(), 200);
    let dispatched: Value = dispatched.json().await.expect("JSON");
    assert_eq!(dispatched["created_count"], 1, "{dispatched}");

    // Down: every container goes.
    let down = compose.run(&["down"]);
    assert!(
        down.status.success(),
        "compose down: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(compose.containers(), Vec::new(), "containers left behind");
}

#[test]
fn the_build_context_leaves_out_build_output_local_state_and_history() {
    // A context with all of them and the repository's .dockerignore, copied by the
    // Dockerfile's own `COPY . .` (its `source` stage, on the debootstrapped base).
    let context = std::env::temp_dir().join(format!("beckon-context-{}", Uuid::new_v4()));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in [
        "Cargo.toml",
        "crates/domain/src/lib.rs",
        "target/debug/ingest-api",
        ".beckon/secret.key",
        ".beckon/logs/matcher.log",
        ".git/HEAD",
        "tests/browser/node_modules/playwright-core/index.js",
    ] {
        let path = context.join(file);
        std::fs::create_dir_all(path.parent().expect("a directory")).expect("a directory");
        std::fs::write(&path, "x").expect("a file");
    }
    std::fs::copy(root.join(".dockerignore"), context.join(".dockerignore"))
        .expect("the .dockerignore");
    let base = image::base();
    let built = podman(&[
        "build",
        "--quiet",
        "--network",
        "host",
        "--target",
        "source",
        "--build-arg",
        &format!("BUILD_IMAGE={base}"),
        "--file",
        &root.join("deploy/Dockerfile").to_string_lossy(),
        &context.to_string_lossy(),
    ]);
    let built = built.trim();
    let mut find = Command::new("find");
    find.args(["/src", "-type", "f"]);
    let out = image::containerized(&find, built, &image::container_name("context"), false)
        .output()
        .expect("podman runs");
    let _ = image::podman().args(["rmi", built]).output();
    let _ = std::fs::remove_dir_all(&context);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut copied: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    copied.sort();
    assert_eq!(
        copied,
        [
            "/src/.dockerignore",
            "/src/Cargo.toml",
            "/src/crates/domain/src/lib.rs"
        ]
    );
}

/// `scripts/image.sh podman ARGS`'s output; panics when it fails.
fn podman(args: &[&str]) -> String {
    let out = image::podman().args(args).output().expect("podman runs");
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The names of this test process's containers whose names hold `prefix`.
fn ours(prefix: &str) -> Vec<String> {
    image::containers()
        .into_iter()
        .filter(|name| name.contains(prefix))
        .collect()
}

/// deploy/compose.yaml with deploy/compose.host.yaml, as one project of podman-compose, with
/// the test's settings; taken down when dropped.
struct Compose {
    project: String,
    env: Vec<(&'static str, String)>,
    amqp_url: String,
    prefix: String,
}

impl Compose {
    fn run(&self, args: &[&str]) -> Output {
        let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        image::compose()
            .arg("--project-name")
            .arg(&self.project)
            .arg("--file")
            .arg(deploy.join("compose.yaml"))
            .arg("--file")
            .arg(deploy.join("compose.host.yaml"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("podman-compose runs")
    }

    /// The project's containers, as (service, image).
    fn containers(&self) -> Vec<(String, String)> {
        podman(&[
            "ps",
            "--all",
            "--filter",
            &format!("label=io.podman.compose.project={}", self.project),
            "--format",
            "{{index .Labels \"io.podman.compose.service\"}} {{.Image}}",
        ])
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(service, image)| (service.to_owned(), image.to_owned()))
        .collect()
    }

    /// Every container's log, for a failure message.
    fn logs(&self) -> String {
        let out = self.run(&["logs"]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--timeout", "0"]);
        beckon_e2e::delete_queues(self.amqp_url.clone(), self.prefix.clone());
    }
}
