//! The end-to-end test harness: [`TestApp`] starts the real service binaries against a fresh
//! database and a unique queue prefix, so tests run in parallel without seeing each other.
//!
//! Binaries are taken from the target directory this test was built into; unless
//! `BECKON_E2E_SKIP_BUILD` is set (as `make test` does after building), the harness runs
//! `cargo build --bins` once first, so a test never runs against stale services. With
//! [`Options::image`] the same binaries run from a container image packaged from them
//! ([`image`]).

use anyhow::{Context as _, bail};
use beckon_domain::scope::Scope;
use beckon_store::testing::TestDatabase;
use beckon_store::{Store, tenancy};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub mod broker;
pub mod hooks;
pub mod image;
pub mod infra;
pub mod proxy;
pub mod receiver;

/// The deployment key tests run with (base64 of 32 bytes).
pub const TEST_SECRET_KEY: &str = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktMzJieXQ=";

pub const AMQP_URL_DEFAULT: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub fn amqp_url() -> String {
    std::env::var("BECKON_TEST_AMQP_URL").unwrap_or_else(|_| AMQP_URL_DEFAULT.to_owned())
}

/// The directory holding the workspace's binaries: the one this program was built into
/// (`target/<profile>/deps/<test>` for a test, `target/<profile>/<bin>` for a binary).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("this program has a path");
    let dir = exe.parent().expect("a binary lives in a directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("target/<profile>/deps").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// The `host:port` of a database URL, and what follows it.
fn database_address(url: &str) -> anyhow::Result<(&str, &str)> {
    let (_, after) = url.split_once('@').context("a database URL with a host")?;
    after.split_once('/').context("a database URL with a name")
}

/// Servers a project script (`scripts/<name>`) started on ports of their own for one test;
/// stopped with the same script when dropped.
pub struct ScriptServers {
    script: PathBuf,
    /// What `start` printed on stdout, trimmed.
    pub said: String,
}

impl ScriptServers {
    /// Runs `scripts/<name> start`; panics when it fails.
    pub fn start(name: &str) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scripts")
            .join(name);
        let out = Command::new(&script)
            .arg("start")
            .output()
            .expect("the script runs");
        assert!(
            out.status.success(),
            "{name} start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            script,
            said: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        }
    }
}

impl Drop for ScriptServers {
    fn drop(&mut self) {
        let _ = Command::new(&self.script).arg("stop").status();
    }
}

/// The path of a service binary, built first unless `BECKON_E2E_SKIP_BUILD` is set: to run one
/// alone (how it starts, or refuses to).
pub fn binary(service: &str) -> PathBuf {
    ensure_built();
    bin_dir().join(service)
}

fn ensure_built() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        if std::env::var_os("BECKON_E2E_SKIP_BUILD").is_some() {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--workspace", "--bins", "--quiet"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the service binaries failed");
    });
}

/// A free port for a gateway, below the kernel's ephemeral range (32768 and up), so that no
/// socket bound to port 0 meanwhile — a receiver, another service's operations endpoints —
/// can take it between this choice and the gateway's bind.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = 20_000 + (Uuid::new_v4().as_u128() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-31999");
}

/// How to start a [`TestApp`].
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a synchronous dispatch waits (`BECKON_DISPATCH_TIMEOUT_MS`).
    pub dispatch_timeout_ms: u64,
    /// Replicas of the invitation service to start.
    pub invitation_replicas: usize,
    /// Replicas of the matcher (and so of the scheduler) to start.
    pub matcher_replicas: usize,
    /// More environment variables for every service.
    pub env: Vec<(&'static str, String)>,
    /// Services reach the database through a [`proxy::Proxy`] the test can cut
    /// ([`TestApp::db_proxy`]); the test's own connections go straight to it.
    pub database_proxy: bool,
    /// The server to make the test's database on (an URL to one of its databases, TLS
    /// parameters and all), instead of `BECKON_TEST_DATABASE_URL`'s.
    pub database_server: Option<String>,
    /// The broker the services, the CLI and the clean-up use, instead of [`amqp_url`].
    pub amqp_url: Option<String>,
    /// Services and the CLI reach the database at this `host:port` (a connection pooler in
    /// front of it) instead; the test's own connections go straight to it.
    pub database_address: Option<String>,
    /// Run every service and the CLI from this container image ([`image::build`]) instead of
    /// the binaries on the host.
    pub image: Option<String>,
    /// Start from an empty database and apply the migrations with `beckon migrate` (from the
    /// image, with [`Options::image`]), as an operator does, instead of cloning the migrated
    /// template. Only on the default server (not with [`Options::database_server`]).
    pub migrate: bool,
    /// Start one service (`matcher`, say) under a command, given as the words before the
    /// binary (`valgrind --tool=callgrind …`), to measure or inspect it.
    pub wrap: Option<(&'static str, Vec<String>)>,
}

impl Options {
    /// The defaults, with more environment variables for every service.
    pub fn with_env(env: Vec<(&'static str, String)>) -> Self {
        Self {
            env,
            ..Self::default()
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dispatch_timeout_ms: 10_000,
            invitation_replicas: 1,
            matcher_replicas: 1,
            env: Vec::new(),
            database_proxy: false,
            database_server: None,
            amqp_url: None,
            database_address: None,
            image: None,
            migrate: false,
            wrap: None,
        }
    }
}

struct Running {
    name: &'static str,
    /// The service, or Podman running it in `container`.
    child: Child,
    log: PathBuf,
    container: Option<String>,
}

impl Running {
    /// Stops the process with SIGTERM (which Podman hands to the container) and waits up to
    /// 30 s for it to exit; kills it after that. A container still there then is removed.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                if let Some(container) = &self.container {
                    image::remove(std::slice::from_ref(container));
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    /// Kills the process (and its container) with SIGKILL: no shutdown, as in a crash.
    fn kill(&mut self) {
        if let Some(container) = &self.container {
            image::remove(std::slice::from_ref(container));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The whole system, started for one test.
pub struct TestApp {
    pub db: TestDatabase,
    pub store: Store,
    pub prefix: String,
    pub base_url: String,
    pub http: reqwest::Client,
    /// The organization the test acts as, and its token.
    pub org_id: Uuid,
    pub token: String,
    port: u16,
    /// The gateway's operations port (`/healthz`, `/readyz`, `/metrics`).
    gateway_ops_port: u16,
    options: Options,
    running: Vec<Running>,
    log_dir: PathBuf,
    launches: usize,
    /// What the services connect to for the database.
    services_db_url: String,
    /// Between the services and the database, when [`Options::database_proxy`] is set.
    pub db_proxy: Option<proxy::Proxy>,
    /// The sealing keys, newest first, of the processes started from now on.
    secret_keys: Vec<String>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> Self {
        Self::try_spawn(options).await.expect("the test app starts")
    }

    async fn try_spawn(options: Options) -> anyhow::Result<Self> {
        ensure_built();
        beckon_runtime::install_crypto_provider();
        let db = match &options.database_server {
            Some(_) if options.migrate => {
                bail!("`migrate` makes its database on the default server")
            }
            Some(server) => TestDatabase::on(server).await,
            None if options.migrate => TestDatabase::empty().await,
            None => TestDatabase::new().await,
        }
        .context("create a test database")?;
        let store = Store::new(db.url(), 4)?;
        let prefix = format!("t{}", Uuid::now_v7().simple());
        let port = free_port();
        let gateway_ops_port = free_port();
        let (services_db_url, db_proxy) = if options.database_proxy {
            let (address, _) = database_address(db.url())?;
            let upstream = tokio::net::lookup_host(address)
                .await?
                .next()
                .context("the database host resolves")?;
            let proxy = proxy::Proxy::start(upstream).await?;
            let url = db
                .url()
                .replacen(address, &format!("127.0.0.1:{}", proxy.port()), 1);
            (url, Some(proxy))
        } else if let Some(pooler) = &options.database_address {
            let (address, _) = database_address(db.url())?;
            (db.url().replacen(address, pooler, 1), None)
        } else {
            (db.url().to_owned(), None)
        };
        let log_dir = bin_dir().join("e2e-logs").join(&prefix);
        std::fs::create_dir_all(&log_dir)?;
        let mut app = Self {
            db,
            store,
            base_url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            org_id: Uuid::nil(),
            token: String::new(),
            prefix,
            port,
            gateway_ops_port,
            options: options.clone(),
            running: Vec::new(),
            log_dir,
            launches: 0,
            services_db_url,
            db_proxy,
            secret_keys: vec![TEST_SECRET_KEY.to_owned()],
        };
        if options.migrate {
            let out = app.cli(&["migrate"], "");
            if !out.status.success() {
                bail!(
                    "beckon migrate failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let mut conn = app.store.conn().await?;
        let org = tenancy::create_organization(&mut conn, "Test org").await?;
        let (_, token) =
            tenancy::create_token(&mut conn, org.id, "test", &[Scope::Admin], None, None).await?;
        drop(conn);
        app.org_id = org.id;
        app.token = token.expose().to_owned();
        for _ in 0..options.matcher_replicas {
            app.start("matcher");
        }
        for _ in 0..options.invitation_replicas {
            app.start("invitation");
        }
        app.start("webhook-delivery");
        app.start("ingest-api");
        app.wait_ready(Duration::from_secs(60)).await?;
        Ok(app)
    }

    /// The broker this app's processes use.
    pub fn amqp_url(&self) -> String {
        self.options.amqp_url.clone().unwrap_or_else(amqp_url)
    }

    /// Starts one more process of `service` (`ingest-api`, `matcher`, `invitation`,
    /// `webhook-delivery`).
    pub fn start(&mut self, service: &'static str) {
        self.launches += 1;
        let log = self
            .log_dir
            .join(format!("{service}-{}.log", self.launches));
        let log_path = log.clone();
        let log = std::fs::File::create(&log).expect("a log file");
        let key_setting = self.secret_key_setting();
        let mut command = match &self.options.wrap {
            Some((wrapped, words)) if *wrapped == service && !words.is_empty() => {
                let mut command = Command::new(&words[0]);
                command.args(&words[1..]).arg(bin_dir().join(service));
                command
            }
            _ => Command::new(bin_dir().join(service)),
        };
        command
            .env("BECKON_DATABASE_URL", &self.services_db_url)
            .env("BECKON_AMQP_URL", self.amqp_url())
            .env("BECKON_QUEUE_PREFIX", &self.prefix)
            .env("BECKON_QUEUE_EXPIRES_MS", "120000")
            .env("BECKON_DB_POOL_SIZE", "4")
            .env("BECKON_DELIVERY_LIMIT", "3")
            .env("BECKON_HTTP_ADDR", format!("127.0.0.1:{}", self.port))
            .env("BECKON_HTTP_WORKERS", "1")
            .env("BECKON_PUBLIC_URL", &self.base_url)
            .env(
                "BECKON_DISPATCH_TIMEOUT_MS",
                self.options.dispatch_timeout_ms.to_string(),
            )
            .env("BECKON_SCHEDULER_INTERVAL_MS", "100")
            // Parallel tests and replicas must not fight over the default ports; the gateway's
            // is known ahead, so its readiness can be asked from its first moment.
            .env(
                "BECKON_HEALTH_ADDR",
                if service == "ingest-api" {
                    format!("127.0.0.1:{}", self.gateway_ops_port)
                } else {
                    "127.0.0.1:0".to_owned()
                },
            )
            .env("BECKON_WEBHOOK_ALLOWED_CIDRS", "127.0.0.1/32")
            .env("BECKON_WEBHOOK_POLL_INTERVAL_MS", "100")
            .env("RUST_LOG", "info")
            .env_remove("BECKON_SECRET_KEY")
            .env_remove("BECKON_SECRET_KEYS")
            .env(key_setting.0, &key_setting.1)
            // The test's own settings win over the defaults above.
            .envs(self.options.env.iter().map(|(k, v)| (k, v)));
        let container = self.options.image.as_ref().map(|image| {
            let name =
                image::container_name(&format!("{}-{service}-{}", self.prefix, self.launches));
            command = image::containerized(&command, image, &name, false);
            name
        });
        let child = command
            .stdout(log.try_clone().expect("a log handle"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {service}: {e}"));
        self.running.push(Running {
            name: service,
            child,
            log: log_path,
            container,
        });
    }

    /// Sets the sealing keys (base64, newest first) of the services started from now on and of
    /// the CLI, as an operator would: one key as `BECKON_SECRET_KEY`, more as
    /// `BECKON_SECRET_KEYS`.
    pub fn set_secret_keys(&mut self, keys: &[&str]) {
        self.secret_keys = keys.iter().map(|k| (*k).to_owned()).collect();
    }

    fn secret_key_setting(&self) -> (&'static str, String) {
        let name = if self.secret_keys.len() == 1 {
            "BECKON_SECRET_KEY"
        } else {
            "BECKON_SECRET_KEYS"
        };
        (name, self.secret_keys.join(","))
    }

    /// Restarts every service, one after the other (each with SIGTERM, then started again as
    /// many times as it ran), as a rolling deployment does; waits for the gateway.
    pub async fn restart_all(&mut self) {
        for service in ["webhook-delivery", "invitation", "matcher", "ingest-api"] {
            let replicas = self.running.iter().filter(|r| r.name == service).count();
            self.stop(service);
            for _ in 0..replicas {
                self.start(service);
            }
        }
        self.wait_ready(Duration::from_secs(30))
            .await
            .expect("ready again");
    }

    /// Stops one process of `service` with SIGTERM, waiting for it to exit; `false` when none
    /// runs.
    pub fn stop_one(&mut self, service: &str) -> bool {
        let Some(i) = self.running.iter().position(|r| r.name == service) else {
            return false;
        };
        self.running.remove(i).stop();
        true
    }

    /// Stops every process of `service` with SIGTERM and waits for them to exit.
    pub fn stop(&mut self, service: &str) {
        let (stopping, keep): (Vec<_>, Vec<_>) =
            self.running.drain(..).partition(|r| r.name == service);
        self.running = keep;
        for mut r in stopping {
            r.stop();
        }
    }

    /// The port of the operations endpoints (`/healthz`, `/readyz`, `/metrics`) of the first
    /// running process of a consumer `service`, read from its log once it is listening.
    pub async fn ops_port(&self, service: &str) -> u16 {
        let log = self
            .running
            .iter()
            .find(|r| r.name == service)
            .map(|r| r.log.clone())
            .expect("the service runs");
        self.eventually(
            Duration::from_secs(30),
            "the operations endpoints to listen",
            || {
                let log = log.clone();
                async move {
                    let text = std::fs::read_to_string(&log).ok()?;
                    text.lines().find_map(|line| {
                        let v: Value = serde_json::from_str(line).ok()?;
                        (v["fields"]["message"] == "operations endpoints listening")
                            .then(|| v["fields"]["port"].as_u64())
                            .flatten()
                            .map(|p| p as u16)
                    })
                }
            },
        )
        .await
    }

    /// The `/metrics` text (or any other body) served at `url`.
    pub async fn text(&self, url: &str) -> String {
        let r = self
            .http
            .get(url)
            .send()
            .await
            .expect("the endpoint answers");
        r.text().await.expect("a text body")
    }

    /// The largest value of the metric lines at `url` that start with `name_and_labels`.
    pub async fn metric(&self, url: &str, name_and_labels: &str) -> Option<f64> {
        let text = self.http.get(url).send().await.ok()?.text().await.ok()?;
        text.lines()
            .filter(|l| l.starts_with(name_and_labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .reduce(f64::max)
    }

    /// Asserts that a group-size histogram at `url` (`name`, with `labels` such as
    /// `{consumer="invitation"}` or empty) counted more items than groups: some work was done
    /// together. `what` names the items in the failure message.
    pub async fn assert_grouped(&self, url: &str, name: &str, labels: &str, what: &str) {
        let series = |part: &str| format!("{name}_{part}{labels}");
        let groups = self
            .metric(url, &series("count"))
            .await
            .unwrap_or_else(|| panic!("no {name} count at {url}"));
        let items = self
            .metric(url, &series("sum"))
            .await
            .unwrap_or_else(|| panic!("no {name} sum at {url}"));
        assert!(items > groups, "{items} {what} in {groups} groups");
    }

    /// Kills every process of `service` with SIGKILL: no shutdown, as in a crash.
    pub fn kill(&mut self, service: &str) {
        let (killing, keep): (Vec<_>, Vec<_>) =
            self.running.drain(..).partition(|r| r.name == service);
        self.running = keep;
        for mut r in killing {
            r.kill();
        }
    }

    /// Creates a webhook subscription; returns the answer (with its one-time `secret`).
    pub async fn create_webhook(&self, project: Uuid, body: Value) -> Value {
        let r = self
            .authed(
                reqwest::Method::POST,
                &format!("/api/v1/projects/{project}/webhooks"),
            )
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert_eq!(status, 201, "creating a webhook: {body}");
        body
    }

    /// Runs the operator CLI (`beckon`) against this app's database and broker prefix, with
    /// `stdin` as its input.
    pub fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        use std::io::Write as _;
        let key_setting = self.secret_key_setting();
        let mut command = Command::new(bin_dir().join("beckon"));
        command
            .args(args)
            .env("BECKON_DATABASE_URL", &self.services_db_url)
            .env("BECKON_AMQP_URL", self.amqp_url())
            .env("BECKON_QUEUE_PREFIX", &self.prefix)
            .env_remove("BECKON_SECRET_KEY")
            .env_remove("BECKON_SECRET_KEYS")
            .env(key_setting.0, &key_setting.1)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)));
        if let Some(image) = &self.options.image {
            let name =
                image::container_name(&format!("{}-cli-{}", self.prefix, Uuid::new_v4().simple()));
            command = image::containerized(&command, image, &name, true);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the CLI starts");
        let _ = child
            .stdin
            .take()
            .map(|mut s| s.write_all(stdin.as_bytes()));
        child.wait_with_output().expect("the CLI finishes")
    }

    /// Waits until the gateway answers `/readyz` with 200.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            // Only our gateway's readiness counts (it reports its reply queue).
            if let Ok(r) = self.http.get(self.ops_url("/readyz")).send().await
                && r.status().is_success()
                && r.json::<Value>()
                    .await
                    .is_ok_and(|b| b["reply_queue"] == true)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the gateway was not ready within {timeout:?}; logs in {}",
                    self.log_dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id of every running service process (of Podman, for a service run from an
    /// image), by service name.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.running
            .iter()
            .map(|r| (r.name, r.child.id()))
            .collect()
    }

    /// Where this test's service logs (and any reports) go.
    pub fn log_dir(&self) -> &std::path::Path {
        &self.log_dir
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A URL on the gateway's operations port (`/healthz`, `/readyz`, `/metrics`).
    pub fn ops_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.gateway_ops_port)
    }

    /// A request with the test organization's token.
    pub fn authed(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    /// Issues `project`'s publishable key and widget secret, as `(publishable_key, secret)`.
    pub async fn widget_keys(&self, project: Uuid) -> (String, String) {
        let mut issued = Vec::new();
        for (what, field) in [
            ("publishable-key", "publishable_key"),
            ("widget-secret", "widget_secret"),
        ] {
            let r = self
                .authed(
                    reqwest::Method::POST,
                    &format!("/api/v1/projects/{project}/{what}"),
                )
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 200, "issuing the {what}");
            let body: Value = r.json().await.expect("json");
            issued.push(body[field].as_str().expect(field).to_owned());
        }
        let secret = issued.pop().expect("a secret");
        (issued.pop().expect("a key"), secret)
    }

    pub async fn create_project(&self) -> Uuid {
        let r = self
            .authed(reqwest::Method::POST, "/api/v1/projects")
            .json(&json!({"name": "Web app"}))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 201, "creating a project");
        let body: Value = r.json().await.expect("json");
        body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("an id")
    }

    /// Creates a survey from `overrides` on top of a Live NPS survey with no trigger.
    pub async fn create_survey(&self, project: Uuid, overrides: Value) -> Value {
        let mut body = json!({
            "name": "Churn survey",
            "status": "live",
            "questions": [{"id": "nps", "type": "nps", "title": "How likely?", "required": true}],
        });
        if let (Some(b), Some(o)) = (body.as_object_mut(), overrides.as_object()) {
            for (k, v) in o {
                b.insert(k.clone(), v.clone());
            }
        }
        let r = self
            .authed(
                reqwest::Method::POST,
                &format!("/api/v1/projects/{project}/surveys"),
            )
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert_eq!(status, 201, "creating a survey: {body}");
        body
    }

    /// Dispatches and returns the status and the JSON body.
    pub async fn dispatch(&self, body: Value) -> (u16, Value) {
        let r = self
            .authed(reqwest::Method::POST, "/api/v1/lifecycle/dispatch")
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `POST /api/v1/events/send` with `X-API-Key`, naming the project in `X-Team-ID` when
    /// `team` is given.
    pub async fn send_event(&self, team: Option<Uuid>, body: Value) -> (u16, Value) {
        let mut request = self
            .http
            .post(self.url("/api/v1/events/send"))
            .header("x-api-key", &self.token)
            .json(&body);
        if let Some(team) = team {
            request = request.header("x-team-id", team.to_string());
        }
        let r = request.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `POST /api/v1/events/batch` with `X-API-Key` and `body` (`{"events": [...]}`), naming
    /// the project in `X-Team-ID` when `team` is given.
    pub async fn send_batch(&self, team: Option<Uuid>, body: Value) -> (u16, Value) {
        let mut request = self
            .http
            .post(self.url("/api/v1/events/batch"))
            .header("x-api-key", &self.token)
            .json(&body);
        if let Some(team) = team {
            request = request.header("x-team-id", team.to_string());
        }
        let r = request.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `POST /api/v1/users/upsert`.
    pub async fn upsert_user(&self, body: Value) -> (u16, Value) {
        let r = self
            .authed(reqwest::Method::POST, "/api/v1/users/upsert")
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET /api/v1/triggers/{id}` as the test organization.
    pub async fn trigger(&self, id: &str) -> (u16, Value) {
        let r = self
            .authed(reqwest::Method::GET, &format!("/api/v1/triggers/{id}"))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls the trigger until its status is `status`; returns it then.
    pub async fn wait_trigger(&self, id: &str, status: &str, timeout: Duration) -> Value {
        self.eventually(timeout, &format!("trigger {id} to be {status}"), || async {
            let (_, body) = self.trigger(id).await;
            (body["status"] == status).then_some(body)
        })
        .await
    }

    /// Starts every service again (after [`TestApp::stop`]) and waits for the gateway.
    pub async fn start_all(&mut self) {
        for _ in 0..self.options.matcher_replicas {
            self.start("matcher");
        }
        for _ in 0..self.options.invitation_replicas {
            self.start("invitation");
        }
        self.start("ingest-api");
        self.wait_ready(Duration::from_secs(30))
            .await
            .expect("ready again");
    }

    /// A second organization with its own token.
    pub async fn other_org(&self) -> (Uuid, String) {
        let mut conn = self.store.conn().await.expect("conn");
        let org = tenancy::create_organization(&mut conn, "Other org")
            .await
            .expect("org");
        let (_, token) =
            tenancy::create_token(&mut conn, org.id, "other", &[Scope::Admin], None, None)
                .await
                .expect("token");
        (org.id, token.expose().to_owned())
    }

    /// Runs `sql` against the test database (for arranging states no API makes, such as an
    /// expired invitation).
    pub async fn execute(&self, sql: &str) -> usize {
        use diesel_async::RunQueryDsl;
        let mut conn = self.store.conn().await.expect("conn");
        diesel::sql_query(sql)
            .execute(&mut conn)
            .await
            .expect("sql")
    }

    /// Polls `probe` until it returns `Some`, or panics after `timeout`.
    pub async fn eventually<T, F, Fut>(&self, timeout: Duration, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; logs in {}",
                self.log_dir.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // The containers first, all at once: killing Podman would leave them running.
        let containers: Vec<String> = self
            .running
            .iter()
            .filter_map(|r| r.container.clone())
            .collect();
        image::remove(&containers);
        for r in &mut self.running {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
        // Delete this test's queues and exchanges now rather than let them expire in bulk
        // later.
        delete_queues(self.amqp_url(), self.prefix.clone());
    }
}

/// Deletes the queues and exchanges of queue prefix `prefix`, ignoring failures. Callable
/// from `Drop`, even inside a runtime (which cannot block on itself: this uses a thread).
pub fn delete_queues(amqp_url: String, prefix: String) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let config = beckon_bus::BusConfig::new(amqp_url, prefix);
            let topology = beckon_bus::Topology::new(&config);
            let conn = beckon_bus::connect::connect(&config.uri, "test-cleanup")
                .await
                .ok()?;
            let channel = conn.create_channel().await.ok()?;
            topology
                .delete(&channel, &beckon_bus::topology::queues::all())
                .await
                .ok()
        })
    })
    .join();
}

/// The committed JSON Schema of an envelope type and version.
pub fn envelope_schema(kind: &str, version: u64) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../proto-schemas/envelopes")
        .join(format!("{kind}.v{version}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("a schema is JSON")
}

/// Asserts `envelope` validates against the committed schema its `type` and `version` name.
pub fn assert_valid_envelope(envelope: &Value) {
    let kind = envelope["type"].as_str().expect("a type");
    let version = envelope["version"].as_u64().expect("a version");
    let schema = envelope_schema(kind, version);
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(envelope)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{kind} v{version} violates its schema: {errors:?}\n{envelope}"
    );
}
