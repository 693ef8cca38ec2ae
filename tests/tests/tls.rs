//! The services over TLS to a PostgreSQL and a RabbitMQ that accept nothing else, each
//! requiring a client certificate (`scripts/tls-servers.sh` starts them on their own ports with
//! a CA it makes, and stops them when the test ends). One test: the servers' ports are fixed.

use beckon_e2e::receiver::Receiver;
use beckon_e2e::{Options, ScriptServers, TestApp};
use beckon_store::connect::{ConnectError, Connector};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PG_PORT: u16 = 5442;
const AMQPS_PORT: u16 = 5691;

/// The TLS servers, stopped when dropped.
struct Servers {
    _running: ScriptServers,
    certs: PathBuf,
}

impl Servers {
    fn start() -> Self {
        let running = ScriptServers::start("tls-servers.sh");
        let certs = Path::new(&running.said).join("certs");
        Self {
            _running: running,
            certs,
        }
    }

    fn file(&self, name: &str) -> String {
        self.certs.join(name).display().to_string()
    }

    /// A PostgreSQL URL to `host`'s `postgres` database with these TLS parameters.
    fn pg(&self, host: &str, params: &str) -> String {
        format!("postgres://postgres@{host}:{PG_PORT}/postgres?{params}")
    }

    /// Every TLS parameter, checking the server fully, with the client certificate.
    fn pg_params(&self, ca: &str) -> String {
        format!(
            "sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
            self.file(ca),
            self.file("client.pem"),
            self.file("client.key")
        )
    }

    fn amqps(&self, ca: &str) -> String {
        format!(
            "amqps://guest:guest@localhost:{AMQPS_PORT}/%2f?cacertfile={}&certfile={}&keyfile={}",
            self.file(ca),
            self.file("client.pem"),
            self.file("client.key")
        )
    }
}

async fn connect(url: &str) -> Result<(), ConnectError> {
    Connector::from_url(url)
        .expect("a valid URL")
        .connect()
        .await
        .map(drop)
}

/// Runs `service` alone with these settings; it must exit on its own, and fail.
fn refused(service: &str, database_url: &str, amqp_url: &str) -> String {
    let mut child = Command::new(beckon_e2e::binary(service))
        .env("BECKON_DATABASE_URL", database_url)
        .env("BECKON_AMQP_URL", amqp_url)
        .env("BECKON_QUEUE_PREFIX", "tls-refused")
        .env("BECKON_HEALTH_ADDR", "127.0.0.1:0")
        .env("BECKON_HTTP_ADDR", "127.0.0.1:0")
        .env("BECKON_SECRET_KEY", beckon_e2e::TEST_SECRET_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the service starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "{service} refuses to start");
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{service} kept running with a TLS setting that cannot work");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_work_over_tls_alone_and_refuse_a_server_they_cannot_trust() {
    beckon_runtime::install_crypto_provider();
    let servers = Servers::start();
    let good = servers.pg_params("ca.pem");

    // sslmode as libpq reads it. The server certificate names localhost only.
    connect(&servers.pg("localhost", &good))
        .await
        .expect("verify-full to the name on the certificate");
    let client = format!(
        "sslcert={}&sslkey={}",
        servers.file("client.pem"),
        servers.file("client.key")
    );
    let ca = |file: &str| format!("sslrootcert={}", servers.file(file));
    let verify_full_by_ip = connect(&servers.pg(
        "127.0.0.1",
        &format!("sslmode=verify-full&{}&{client}", ca("ca.pem")),
    ))
    .await;
    assert!(
        matches!(&verify_full_by_ip, Err(ConnectError::Tls(e)) if e.contains("not valid for")),
        "verify-full checks the host name: {verify_full_by_ip:?}"
    );
    connect(&servers.pg(
        "127.0.0.1",
        &format!("sslmode=verify-ca&{}&{client}", ca("ca.pem")),
    ))
    .await
    .expect("verify-ca checks the chain, not the name");
    for mode in ["verify-ca", "verify-full", "require"] {
        let wrong = connect(&servers.pg(
            "localhost",
            &format!("sslmode={mode}&{}&{client}", ca("other-ca.pem")),
        ))
        .await;
        assert!(
            matches!(&wrong, Err(ConnectError::Tls(e)) if e.contains("UnknownIssuer")),
            "{mode} with a CA that did not sign the server's certificate: {wrong:?}"
        );
    }
    connect(&servers.pg("localhost", &format!("sslmode=require&{client}")))
        .await
        .expect("require encrypts without checking whom to");
    let plain = connect(&servers.pg("localhost", &format!("sslmode=disable&{client}"))).await;
    assert!(
        matches!(&plain, Err(ConnectError::Other(e)) if e.contains("no encryption")),
        "the server takes TLS only: {plain:?}"
    );
    let anonymous = connect(&servers.pg(
        "localhost",
        &format!("sslmode=verify-full&{}", ca("ca.pem")),
    ))
    .await;
    assert!(
        matches!(&anonymous, Err(ConnectError::Other(e)) if e.contains("certificate")),
        "without the client certificate the server refuses: {anonymous:?}"
    );

    // A process refuses to start on a CA that did not sign the server's certificate, and says
    // which setting to check.
    let stderr = refused(
        "matcher",
        &servers.pg("localhost", &servers.pg_params("other-ca.pem")),
        &servers.amqps("ca.pem"),
    );
    assert!(
        stderr.contains("TLS handshake failed") && stderr.contains("sslrootcert"),
        "{stderr}"
    );
    let stderr = refused(
        "invitation",
        &servers.pg("localhost", &good),
        &servers.amqps("other-ca.pem"),
    );
    assert!(
        stderr.contains("broker's TLS handshake failed") && stderr.contains("cacertfile"),
        "{stderr}"
    );

    // The whole system over TLS: migrations, the gateway, every consumer, webhooks, the CLI.
    let app = TestApp::spawn_with(Options {
        database_server: Some(servers.pg("localhost", &good)),
        amqp_url: Some(servers.amqps("ca.pem")),
        ..Options::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let receiver = Receiver::start().await;
    app.create_webhook(project, json!({"url": receiver.url("/ok/tls")}))
        .await;
    let (status, body) = app
        .dispatch(json!({"project_id": project, "user_ref": "over-tls", "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["created_count"], 1, "{body}");
    let delivered = receiver
        .wait_for("/ok/tls", 1, Duration::from_secs(30))
        .await;
    assert!(
        delivered[0].json()["type"].is_string(),
        "{}",
        delivered[0].json()
    );
    let cli = app.cli(&["queues"], "");
    assert!(
        cli.status.success(),
        "the CLI reaches the broker over TLS: {}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let cli = app.cli(&["migrate"], "");
    assert!(
        cli.status.success(),
        "the CLI migrates over TLS: {}",
        String::from_utf8_lossy(&cli.stderr)
    );
    drop(app);
}
