//! `beckon-bench`: the benchmark behind `make bench`.
//!
//! Brings up the real stack (the four services from this binary's target directory — release
//! builds under `make bench` — against the local RabbitMQ and PostgreSQL), a webhook receiver
//! on 127.0.0.1, and drives it from this process: everything shares the machine, the load
//! generator included. Each scenario runs `--runs` times; the report gives the median of the
//! runs, the per-stage handler times, the RSS of each service and the CPU split.
//!
//! ```sh
//! beckon-bench [--runs 3] [--seconds 8] [--out BENCHMARKS.md]
//!              [--only send,dispatch,e2e,fanout,targeting] [--rates 200,500,750,1000,2000]
//! ```
//!
//! `--only` runs some parts (for a quick look while working on one); the report then shows `—`
//! for the figures not measured. `--only targeting-plain` runs the targeting part without its
//! conditions, for a build from before them. `--rates` picks the end-to-end rates (e.g. `--rates 200`
//! to profile one).
//!
//! `--callgrind` runs the matcher under `valgrind --tool=callgrind` and counts the instructions
//! it executes to handle the targeting part's backlog: a figure that, unlike a rate, does not
//! move with whatever else the machine is doing. The matcher runs some fifty times slower, so
//! pair it with `--only targeting --seconds 1` (1,000 events per variant) and an `--out` of its
//! own; its rates and CPU figures then mean nothing.

use beckon_e2e::broker::Broker;
use beckon_e2e::receiver::{Received, Receiver};
use beckon_e2e::{Options, TestApp};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Latencies and counts of one measured window.
#[derive(Default)]
struct Window {
    latencies: Vec<Duration>,
    ok: usize,
    failed: usize,
    elapsed: Duration,
    /// With `--callgrind`, the instructions the matcher executed over the window.
    instructions: Option<f64>,
}

impl Window {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1000.0
    }
}

/// The end-to-end rates tried, unless `--rates` says otherwise.
const E2E_RATES: [u64; 5] = [200, 500, 750, 1000, 2000];

/// Live surveys listening for the event in the targeting scenario, each with a condition in
/// its second half; and surveys of the same project listening for another event.
const TARGETED_SURVEYS: usize = 20;
const OTHER_SURVEYS: usize = 5;
/// Events queued for the matcher per second of `--seconds` in the targeting scenario.
const TARGETING_EVENTS_PER_SECOND: u64 = 1000;

/// Named figures of one run of every scenario.
type Figures = BTreeMap<String, f64>;

struct Bench {
    app: TestApp,
    /// Reads the work queues' depths.
    broker: Broker,
    receiver: Receiver,
    http: reqwest::Client,
    seconds: u64,
    run: usize,
    /// `--only`: the parts to run (all when absent).
    only: Option<Vec<String>>,
    /// `--rates`: the end-to-end rates, in events per second.
    rates: Vec<u64>,
    /// Per-stage mean handler time (ms) and RSS/CPU of the last run.
    stages: Mutex<BTreeMap<String, f64>>,
    processes: Mutex<ProcessStats>,
    /// Scenario → PostgreSQL's own counters over it, and the statements the services sent
    /// it (last run).
    database: Mutex<BTreeMap<String, (DbCounters, i64)>>,
    /// `--callgrind`: the matcher runs under callgrind, its dumps here.
    callgrind: Option<Callgrind>,
}

/// The matcher under `valgrind --tool=callgrind`: its counters dumped on request
/// (`callgrind_control`), each dump a file of its own in `dir`.
struct Callgrind {
    dir: std::path::PathBuf,
}

impl Callgrind {
    fn new() -> Self {
        // Said before the stack starts: a matcher that cannot start would read as one that
        // never got ready.
        for tool in ["valgrind", "callgrind_control"] {
            let found = std::process::Command::new(tool)
                .arg("--version")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok();
            assert!(
                found,
                "--callgrind needs `{tool}` (Debian's valgrind package)"
            );
        }
        let dir =
            std::env::temp_dir().join(format!("beckon-bench-callgrind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for callgrind's dumps");
        Self { dir }
    }

    /// The words that start the matcher under callgrind.
    fn wrapper(&self) -> Vec<String> {
        vec![
            "valgrind".into(),
            "--tool=callgrind".into(),
            format!("--callgrind-out-file={}/matcher.%p", self.dir.display()),
            format!("--log-file={}/valgrind.%p.log", self.dir.display()),
        ]
    }

    /// The instructions `pid` executed since its last dump (the `summary:` of a new dump),
    /// which zeroes them; `None` when no new dump was written. `callgrind_control` exits 0
    /// whether or not it reached the process, so only a dump numbered past the last one
    /// tells it did: reading the newest file regardless would give the last window's count
    /// for this one. (Counted from a dump, not from `callgrind_control -z`: after a zero, a
    /// dump's `totals:` exceeds its `summary:`, the count since the zero, by however much
    /// depends on what ran when it was zeroed; after a dump the two agree.)
    fn dump(&self, pid: u32) -> Option<f64> {
        let prefix = format!("matcher.{pid}.");
        let newest = || {
            std::fs::read_dir(&self.dir)
                .ok()?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|name| name.strip_prefix(&prefix)?.parse::<u32>().ok())
                .max()
        };
        let before = newest();
        let status = std::process::Command::new("callgrind_control")
            .args(["-d", &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .status();
        let read = |dump: u32| -> Option<f64> {
            let text = std::fs::read_to_string(self.dir.join(format!("{prefix}{dump}"))).ok()?;
            let summary = text
                .lines()
                .find_map(|line| line.strip_prefix("summary:"))?;
            summary.split_whitespace().next()?.parse().ok()
        };
        let instructions = newest().filter(|&dump| before < Some(dump)).and_then(read);
        if instructions.is_none() {
            eprintln!("warning: callgrind_control -d {pid} ({status:?}) wrote no dump to read");
        }
        instructions
    }
}

/// PostgreSQL's counters for the benchmark's database (`pg_stat_database`).
#[derive(Debug, Clone, Copy, Default, diesel::QueryableByName)]
struct DbCounters {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    commits: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    written: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    fetched: i64,
}

impl DbCounters {
    async fn read(app: &TestApp) -> Self {
        use diesel_async::RunQueryDsl;
        let Ok(mut conn) = app.store.conn().await else {
            return Self::default();
        };
        // The statistics collector reports with a short delay; clear its snapshot.
        let _ = diesel::sql_query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut conn)
            .await;
        diesel::sql_query(
            "SELECT xact_commit AS commits, tup_inserted + tup_updated + tup_deleted AS written, \
             tup_fetched AS fetched FROM pg_stat_database WHERE datname = current_database()",
        )
        .get_result(&mut conn)
        .await
        .unwrap_or_default()
    }

    fn since(self, before: Self) -> Self {
        Self {
            commits: self.commits - before.commits,
            written: self.written - before.written,
            fetched: self.fetched - before.fetched,
        }
    }
}

impl Bench {
    async fn project_with_survey(&self, subscriptions: &[String]) -> Uuid {
        let project = self.app.create_project().await;
        self.app
            .create_survey(
                project,
                json!({"trigger": {"events": ["trial_expired"]}, "cooldown_seconds": 0}),
            )
            .await;
        for url in subscriptions {
            self.app.create_webhook(project, json!({"url": url})).await;
        }
        project
    }

    /// `concurrency` clients, each sending its next request as soon as the last is answered.
    async fn closed_loop<F, Fut>(&self, concurrency: usize, make: F) -> Window
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        let make = Arc::new(make);
        let deadline = Instant::now() + Duration::from_secs(self.seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for client in 0..concurrency {
            let make = make.clone();
            tasks.push(tokio::spawn(async move {
                let mut w = Window::default();
                let mut n = client;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if make(n).await {
                        w.ok += 1;
                        w.latencies.push(t.elapsed());
                    } else {
                        w.failed += 1;
                    }
                    n += concurrency;
                }
                w
            }));
        }
        let mut all = Window::default();
        for task in tasks {
            let w = task.await.expect("a client task");
            all.ok += w.ok;
            all.failed += w.failed;
            all.latencies.extend(w.latencies);
        }
        all.elapsed = started.elapsed();
        all
    }

    /// Requests at a fixed `rate`, each timed from when it was due (so a slow answer does not
    /// hide the requests that queued behind it). Returns the window and when each was due.
    async fn open_loop<F, Fut>(&self, rate: u64, make: F) -> (Window, Vec<Instant>)
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = bool> + Send + 'static,
    {
        let total = (rate * self.seconds) as usize;
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let started = Instant::now();
        let results = Arc::new(Mutex::new(Window::default()));
        let mut due_times = Vec::with_capacity(total);
        let mut tasks = Vec::with_capacity(total);
        for n in 0..total {
            let due = started + interval * n as u32;
            tokio::time::sleep_until(due.into()).await;
            due_times.push(due);
            let request = make(n);
            let results = results.clone();
            tasks.push(tokio::spawn(async move {
                let ok = request.await;
                let mut w = results.lock().unwrap();
                if ok {
                    w.ok += 1;
                    w.latencies.push(due.elapsed());
                } else {
                    w.failed += 1;
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        let mut w = std::mem::take(&mut *results.lock().unwrap());
        w.elapsed = started.elapsed();
        (w, due_times)
    }

    /// Waits until the pipeline has nothing in flight: no trigger unfinished, no delivery
    /// pending, no message waiting in a work queue (at most a minute).
    async fn quiesce(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let busy = self
                .app
                .execute(
                    "SELECT 1 FROM triggers WHERE status IN ('queued', 'processing') \
                     UNION ALL SELECT 1 FROM webhook_deliveries WHERE status = 'pending' LIMIT 1",
                )
                .await;
            let mut queued = 0;
            for queue in beckon_bus::topology::queues::all() {
                queued += self
                    .broker
                    .depth(&format!("{}.{}", self.app.prefix, queue.name))
                    .await;
            }
            if busy == 0 && queued == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("warning: the pipeline did not drain within a minute");
    }

    /// Leaves no maintenance from one scenario to slow the next: vacuums and analyzes what it
    /// wrote, and checkpoints, so each scenario starts from a settled database.
    async fn settle(&self) {
        use diesel_async::RunQueryDsl;
        let Ok(mut conn) = self.app.store.conn().await else {
            return;
        };
        for sql in ["VACUUM (ANALYZE)", "CHECKPOINT"] {
            if let Err(err) = diesel::sql_query(sql).execute(&mut conn).await {
                eprintln!("warning: {sql} before a scenario failed: {err}");
            }
        }
    }

    /// Runs `scenario` while sampling the processes and the services' handler metrics.
    async fn measured<T>(&self, name: &str, scenario: impl std::future::Future<Output = T>) -> T {
        self.quiesce().await;
        self.settle().await;
        let before = self.handler_totals().await;
        let statements_before = self.statements().await;
        let db_before = DbCounters::read(&self.app).await;
        let sampler = ProcessStats::start(&self.app);
        let out = scenario.await;
        let (rss, cpu) = sampler.stop().await;
        // Let the pipeline finish this scenario's work, so the counters hold all of it.
        self.quiesce().await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let db = DbCounters::read(&self.app).await.since(db_before);
        let statements = self.statements().await - statements_before;
        self.database
            .lock()
            .unwrap()
            .insert(name.to_owned(), (db, statements));
        {
            let mut processes = self.processes.lock().unwrap();
            processes.rss.insert(name.to_owned(), rss);
            processes.cpu.insert(name.to_owned(), cpu);
        }
        let after = self.handler_totals().await;
        for (stage, (sum, count)) in &after {
            let (sum0, count0) = before.get(stage).copied().unwrap_or_default();
            if count - count0 > 0.0 {
                self.stages.lock().unwrap().insert(
                    format!("{name} | {stage}"),
                    (sum - sum0) / (count - count0) * 1000.0,
                );
            }
        }
        out
    }

    /// Each service's `/metrics` text.
    async fn scrape(&self) -> Vec<(String, String)> {
        let mut urls = vec![("ingest-api".to_owned(), self.app.ops_url("/metrics"))];
        for service in ["matcher", "invitation", "webhook-delivery"] {
            let port = self.app.ops_port(service).await;
            urls.push((service.into(), format!("http://127.0.0.1:{port}/metrics")));
        }
        let mut texts = Vec::new();
        for (service, url) in urls {
            if let Ok(r) = self.http.get(&url).send().await {
                texts.push((service, r.text().await.unwrap_or_default()));
            }
        }
        texts
    }

    /// The statements every service has sent to PostgreSQL (`beckon_db_statements_total`).
    async fn statements(&self) -> i64 {
        self.scrape()
            .await
            .iter()
            .flat_map(|(_, text)| text.lines())
            .filter_map(|line| line.strip_prefix("beckon_db_statements_total "))
            .filter_map(|value| value.trim().parse::<f64>().ok())
            .sum::<f64>() as i64
    }

    /// `beckon_handler_seconds` and the gateway's request time, (sum, count) per stage.
    async fn handler_totals(&self) -> HashMap<String, (f64, f64)> {
        let mut totals: HashMap<String, (f64, f64)> = HashMap::new();
        for (service, text) in self.scrape().await {
            for line in text.lines() {
                let Some((series, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                let Ok(value) = value.parse::<f64>() else {
                    continue;
                };
                let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
                let stage = match metric {
                    "beckon_handler_seconds_sum" | "beckon_handler_seconds_count" => {
                        format!("{service} handler {}", label(labels, "type"))
                    }
                    "beckon_http_request_seconds_sum" | "beckon_http_request_seconds_count"
                        if labels.contains("/api/v1/") =>
                    {
                        format!(
                            "gateway {} {}",
                            label(labels, "method"),
                            label(labels, "route")
                        )
                    }
                    "beckon_webhook_attempt_seconds_sum"
                    | "beckon_webhook_attempt_seconds_count" => {
                        "webhook-delivery attempt".to_owned()
                    }
                    _ => continue,
                };
                let entry = totals.entry(stage).or_default();
                if metric.ends_with("_sum") {
                    entry.0 += value;
                } else {
                    entry.1 += value;
                }
            }
        }
        totals
    }

    async fn run_all(&self) -> Figures {
        let mut figures = Figures::new();
        if self.wants("send") {
            self.send(&mut figures).await;
        }
        if self.wants("dispatch") {
            self.dispatch(&mut figures).await;
        }
        if self.wants("e2e") {
            self.end_to_end(&mut figures).await;
        }
        if self.wants("fanout") {
            self.fan_out(&mut figures).await;
        }
        if self.wants("targeting") || self.only_wants("targeting-plain") {
            self.targeting(&mut figures).await;
        }
        figures
    }

    /// Whether `--only` (a comma-separated list of send, dispatch, e2e, fanout, targeting)
    /// selects a part (all when absent).
    fn wants(&self, part: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|parts| parts.iter().any(|p| p == part))
    }

    /// Whether `--only` names `part`, one run only when asked for.
    fn only_wants(&self, part: &str) -> bool {
        self.only
            .as_ref()
            .is_some_and(|parts| parts.iter().any(|p| p == part))
    }

    /// 1. events/send accepted, closed loop.
    async fn send(&self, figures: &mut Figures) {
        let run = self.run;
        for concurrency in [32, 128] {
            let project = self.project_with_survey(&[]).await;
            let sender = SendFn::new(self, project, format!("s{run}c{concurrency}"));
            let mut w = self
                .measured(
                    &format!("events/send c{concurrency}"),
                    self.closed_loop(concurrency, move |n| sender.event(n)),
                )
                .await;
            figures.insert(format!("events_send_c{concurrency}_per_s"), w.rate());
            figures.insert(
                format!("events_send_c{concurrency}_p50_ms"),
                w.percentile_ms(0.5),
            );
            figures.insert(
                format!("events_send_c{concurrency}_p99_ms"),
                w.percentile_ms(0.99),
            );
            figures.insert(
                format!("events_send_c{concurrency}_failed"),
                w.failed as f64,
            );
            figures.insert(
                format!("events_send_c{concurrency}_requests"),
                (w.ok + w.failed) as f64,
            );
        }
    }

    /// 2. synchronous dispatch at fixed rates, then its peak.
    async fn dispatch(&self, figures: &mut Figures) {
        let run = self.run;
        for rate in [50u64, 200, 500] {
            let project = self.project_with_survey(&[]).await;
            let sender = SendFn::new(self, project, format!("d{run}r{rate}"));
            let (mut w, _) = self
                .measured(
                    &format!("dispatch {rate}/s"),
                    self.open_loop(rate, move |n| sender.dispatch(n)),
                )
                .await;
            figures.insert(format!("dispatch_r{rate}_p50_ms"), w.percentile_ms(0.5));
            figures.insert(format!("dispatch_r{rate}_p99_ms"), w.percentile_ms(0.99));
            figures.insert(format!("dispatch_r{rate}_failed"), w.failed as f64);
            figures.insert(
                format!("dispatch_r{rate}_requests"),
                (w.ok + w.failed) as f64,
            );
        }
        let project = self.project_with_survey(&[]).await;
        let sender = SendFn::new(self, project, format!("d{run}peak"));
        let w = self
            .measured(
                "dispatch peak",
                self.closed_loop(64, move |n| sender.dispatch(n)),
            )
            .await;
        figures.insert("dispatch_peak_per_s".into(), w.rate());
    }

    /// 3. end to end: event → signed invitation.created at the receiver.
    async fn end_to_end(&self, figures: &mut Figures) {
        let run = self.run;
        let mut kept_up = 0.0;
        for rate in self.rates.iter().copied() {
            let path = format!("/ok/e2e-{run}-{rate}");
            let project = self.project_with_survey(&[self.receiver.url(&path)]).await;
            let prefix = format!("e{run}r{rate}-");
            let sender = SendFn::new(self, project, prefix.clone());
            let (w, due) = self
                .measured(
                    &format!("end to end {rate}/s"),
                    self.open_loop(rate, move |n| sender.event(n)),
                )
                .await;
            let mut e2e = self.delivered(&path, &prefix, &due, 1).await;
            let sent = w.ok;
            figures.insert(format!("e2e_r{rate}_sent"), sent as f64);
            figures.insert(format!("e2e_r{rate}_delivered"), e2e.ok as f64);
            figures.insert(format!("e2e_r{rate}_p50_ms"), e2e.percentile_ms(0.5));
            figures.insert(format!("e2e_r{rate}_p99_ms"), e2e.percentile_ms(0.99));
            figures.insert(format!("e2e_r{rate}_per_s"), e2e.rate());
            // Kept up: every event delivered within the send window and one second more. The
            // figure is the rate delivered, not the rate offered.
            if w.failed == 0
                && e2e.ok == sent
                && e2e.elapsed <= Duration::from_secs(self.seconds + 1)
            {
                kept_up = e2e.rate();
            } else {
                // Higher rates only pile up more backlog to drain: they are not run.
                break;
            }
        }
        figures.insert("e2e_kept_up_per_s".into(), kept_up);
    }

    /// 4. fan-out: ten subscriptions, 200 events/s.
    async fn fan_out(&self, figures: &mut Figures) {
        let run = self.run;
        let paths: Vec<String> = (0..10).map(|k| format!("/ok/fan-{run}-{k}")).collect();
        let urls: Vec<String> = paths.iter().map(|p| self.receiver.url(p)).collect();
        let project = self.project_with_survey(&urls).await;
        let prefix = format!("f{run}-");
        let sender = SendFn::new(self, project, prefix.clone());
        let (w, due) = self
            .measured(
                "fan-out 10x200/s",
                self.open_loop(200, move |n| sender.event(n)),
            )
            .await;
        let mut fan = self
            .delivered(&format!("/ok/fan-{run}-"), &prefix, &due, 10)
            .await;
        figures.insert("fanout_expected".into(), (w.ok * 10) as f64);
        figures.insert("fanout_delivered".into(), fan.ok as f64);
        figures.insert("fanout_per_s".into(), fan.rate());
        figures.insert("fanout_p99_ms".into(), fan.percentile_ms(0.99));
    }

    /// 5. targeting: the matcher's handling rate, with and without conditions.
    ///
    /// A project of 20 Live surveys that listen for the event (and 5 that listen for another),
    /// first without conditions, then with a condition on each of the 20 (over the event, the
    /// user, or through a segment) that holds for every event sent, so both hand the same
    /// surveys on.
    async fn targeting(&self, figures: &mut Figures) {
        let run = self.run;
        // `--only targeting-plain`: without conditions only, for a build that has none.
        // Each run takes them in the other order than the run before, so neither always
        // follows the other's leftovers.
        let variants: &[(&str, bool)] = match (self.wants("targeting"), run % 2) {
            (true, 0) => &[("plain", false), ("conditions", true)],
            (true, _) => &[("conditions", true), ("plain", false)],
            (false, _) => &[("plain", false)],
        };
        for &(variant, conditions) in variants {
            let project = self.project_with_targeted_surveys(conditions).await;
            let sender = SendFn::new(self, project, format!("t{run}{variant}-"));
            let total = (TARGETING_EVENTS_PER_SECOND * self.seconds) as usize;
            let w = self
                .measured(
                    &targeting_scenario(variant),
                    self.matcher_drain(&sender, total),
                )
                .await;
            figures.insert(format!("targeting_{variant}_per_s"), w.rate());
            figures.insert(format!("targeting_{variant}_handled"), w.ok as f64);
            figures.insert(format!("targeting_{variant}_events"), total as f64);
            figures.insert(format!("targeting_{variant}_refused"), w.failed as f64);
            if let Some(instructions) = w.instructions {
                figures.insert(
                    format!("targeting_{variant}_instructions"),
                    instructions / (w.ok as f64).max(1.0),
                );
            }
        }
    }

    /// A project with the targeting scenario's surveys, their conditions true for the events
    /// [`SendFn::targeted_event`] sends.
    async fn project_with_targeted_surveys(&self, conditions: bool) -> Uuid {
        let project = self.app.create_project().await;
        let segment = if conditions {
            let r = self
                .app
                .authed(
                    reqwest::Method::POST,
                    &format!("/api/v1/projects/{project}/segments"),
                )
                .json(
                    &json!({"name": "Customers, not staff", "condition": {"all": [
                    {"exists": {"field": "email"}},
                    {"not": {"contains": {"field": "groups", "value": "internal"}}}]}}),
                )
                .send()
                .await
                .expect("creating a segment");
            let body: serde_json::Value = r.json().await.expect("json");
            body["id"].as_str().map(str::to_owned)
        } else {
            None
        };
        for k in 0..TARGETED_SURVEYS {
            let mut trigger = json!({"events": ["trial_expired"]});
            if conditions {
                trigger["conditions"] = match k % 4 {
                    0 => json!({"eq": {"field": "event_data.plan", "value": "pro"}}),
                    1 => {
                        json!({"in": {"field": "custom_fields.country", "value": ["DE", "FR", "NL"]}})
                    }
                    2 => json!({"all": [{"after": {"field": "created_at", "value": "now-30d"}},
                                        {"gt": {"field": "event_data.amount", "value": 10}}]}),
                    _ => json!({"segment": segment.as_deref().expect("the segment was created")}),
                };
            }
            self.app
                .create_survey(
                    project,
                    json!({"name": format!("Survey {k}"), "trigger": trigger,
                        "cooldown_seconds": 0, "sample_rate": 0.05}),
                )
                .await;
        }
        for k in 0..OTHER_SURVEYS {
            self.app
                .create_survey(
                    project,
                    json!({"name": format!("Other {k}"),
                        "trigger": {"events": ["subscription_cancelled"]}}),
                )
                .await;
        }
        project
    }

    /// Queues `total` events while the matcher and the invitation stage are stopped
    /// (`SIGSTOP`), then lets the matcher go on alone and times how long it takes to handle
    /// them all: its handling rate with a backlog and the machine to itself. The invitation
    /// stage goes on once it has (or after two minutes; twenty under callgrind).
    async fn matcher_drain(&self, sender: &SendFn, total: usize) -> Window {
        let invitation = Stopped::services(&self.app, &["invitation"]);
        let matcher_pid = self
            .app
            .pids()
            .into_iter()
            .find_map(|(name, pid)| (name == "matcher").then_some(pid))
            .expect("the matcher runs");
        // Counted from this dump: a stopped matcher executes nothing, so what the next one
        // holds is the backlog's handling (and the few scrapes of its metrics that tell it is
        // done). Without it, the next would hold whatever came before too: no figure then.
        let counting = self
            .callgrind
            .as_ref()
            .and_then(|callgrind| callgrind.dump(matcher_pid))
            .is_some();
        let handled_before = self.matcher_handled().await;
        let matcher = Stopped::services(&self.app, &["matcher"]);
        // events/send, not events/batch: the part also measures builds from before the batch
        // endpoint (`--only targeting-plain`).
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (sender, next) = (sender.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let (mut accepted, mut refused) = (0, 0);
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if n >= total {
                        return (accepted, refused);
                    }
                    if sender.targeted_event(n).await {
                        accepted += 1;
                    } else {
                        refused += 1;
                    }
                }
            }));
        }
        let mut w = Window::default();
        for task in tasks {
            let (accepted, refused) = task.await.expect("a load task");
            w.ok += accepted;
            w.failed += refused;
        }
        let queued = w.ok;
        let started = Instant::now();
        drop(matcher);
        // Under callgrind each scrape of the metrics is counted too: few of them.
        let (limit, poll) = match self.callgrind {
            Some(_) => (Duration::from_secs(1200), Duration::from_secs(1)),
            None => (Duration::from_secs(120), Duration::from_millis(10)),
        };
        let deadline = started + limit;
        let mut handled = 0.0;
        while Instant::now() < deadline {
            handled = self.matcher_handled().await - handled_before;
            if handled >= queued as f64 {
                break;
            }
            tokio::time::sleep(poll).await;
        }
        w.elapsed = started.elapsed();
        w.instructions = self
            .callgrind
            .as_ref()
            .filter(|_| counting)
            .and_then(|callgrind| callgrind.dump(matcher_pid));
        drop(invitation);
        if handled < queued as f64 {
            eprintln!(
                "warning: the matcher handled {handled} of {queued} events in {} s",
                limit.as_secs()
            );
        }
        w.ok = handled as usize;
        w
    }

    /// The events the matcher has handled since it started (`beckon_handler_seconds_count`
    /// of `event.received`).
    async fn matcher_handled(&self) -> f64 {
        let port = self.app.ops_port("matcher").await;
        let Ok(r) = self
            .http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        else {
            return 0.0;
        };
        r.text()
            .await
            .unwrap_or_default()
            .lines()
            .filter(|line| {
                line.starts_with("beckon_handler_seconds_count{")
                    && line.contains("type=\"event.received\"")
            })
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// Webhooks under `path` for events named `prefix<n>`: latency from each event's due
    /// time; waits until `per_event` × events arrived or 20 s of quiet.
    async fn delivered(
        &self,
        path: &str,
        prefix: &str,
        due: &[Instant],
        per_event: usize,
    ) -> Window {
        let expected = due.len() * per_event;
        let mut last_count = 0;
        let mut last_change = Instant::now();
        loop {
            let count = self.receiver.received(path).len();
            if count >= expected || last_change.elapsed() > Duration::from_secs(20) {
                break;
            }
            if count != last_count {
                last_count = count;
                last_change = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let received: Vec<Received> = self.receiver.received(path);
        let mut w = Window::default();
        let mut last = due.first().copied().unwrap_or_else(Instant::now);
        for r in &received {
            let body = r.json();
            let user = body["data"]["user"]["user_ref"].as_str().unwrap_or("");
            let Some(n) = user
                .strip_prefix(prefix)
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            if let Some(due) = due.get(n) {
                w.ok += 1;
                w.latencies.push(r.at.saturating_duration_since(*due));
                last = last.max(r.at);
            }
        }
        w.elapsed = last.saturating_duration_since(due.first().copied().unwrap_or(last));
        w
    }
}

/// The targeting target's measured cell: instructions per event under `--callgrind` (a
/// figure missing shown so, not replaced with a rate, which means nothing there), else the
/// rates.
fn targeting_measured(get: &impl Fn(&str) -> Option<f64>, callgrind: bool) -> String {
    let (unit, conditions, plain) = if callgrind {
        (
            " instructions per event (callgrind)",
            get("targeting_conditions_instructions"),
            get("targeting_plain_instructions"),
        )
    } else {
        (
            "",
            get("targeting_conditions_per_s"),
            get("targeting_plain_per_s"),
        )
    };
    let rate = |v: Option<f64>| match unit {
        "" => cell(v, "/s"),
        _ => cell(v, ""),
    };
    format!(
        "{} against {}{unit}{}",
        rate(conditions),
        rate(plain),
        match (conditions, plain) {
            (Some(c), Some(p)) if p > 0.0 => format!(" ({:+.1}%)", (c / p - 1.0) * 100.0),
            _ => String::new(),
        }
    )
}

/// Whether the matcher with conditions handles events within 10% of its rate without them:
/// by instructions per event under `--callgrind` (a rate 10% lower is 1/0.9 the
/// instructions; not when either is missing), else by the rates.
fn targeting_within(get: &impl Fn(&str) -> Option<f64>, callgrind: bool) -> bool {
    if callgrind {
        return match (
            get("targeting_conditions_instructions"),
            get("targeting_plain_instructions"),
        ) {
            (Some(c), Some(p)) => c > 0.0 && p > 0.0 && c * 0.9 <= p,
            _ => false,
        };
    }
    match (
        get("targeting_conditions_per_s"),
        get("targeting_plain_per_s"),
    ) {
        (Some(c), Some(p)) => p > 0.0 && c >= 0.9 * p,
        _ => false,
    }
}

/// The name of a targeting scenario, as the report's tables show it.
fn targeting_scenario(variant: &str) -> String {
    match variant {
        "plain" => format!("matcher, {TARGETED_SURVEYS} surveys without conditions"),
        _ => format!("matcher, {TARGETED_SURVEYS} surveys with conditions"),
    }
}

/// Some of the services' processes, stopped (`SIGSTOP`) until this is dropped, when they go
/// on (`SIGCONT`) — also when a scenario panics.
struct Stopped(Vec<u32>);

impl Stopped {
    fn services(app: &TestApp, names: &[&str]) -> Self {
        let pids: Vec<u32> = app
            .pids()
            .into_iter()
            .filter(|(name, _)| names.contains(name))
            .map(|(_, pid)| pid)
            .collect();
        signal("-STOP", &pids);
        Self(pids)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal("-CONT", &self.0);
    }
}

fn signal(signal: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let status = std::process::Command::new("kill")
        .arg(signal)
        .args(pids.iter().map(u32::to_string))
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("warning: kill {signal} {pids:?} failed");
    }
}

fn label<'a>(labels: &'a str, name: &str) -> &'a str {
    labels
        .split(',')
        .find_map(|kv| kv.trim_end_matches('}').strip_prefix(&format!("{name}=")))
        .map(|v| v.trim_matches('"'))
        .unwrap_or("")
}

/// What a load task needs to send one request, without borrowing the bench.
#[derive(Clone)]
struct SendFn {
    http: reqwest::Client,
    base: String,
    token: String,
    project: Uuid,
    prefix: String,
}

impl SendFn {
    fn new(bench: &Bench, project: Uuid, prefix: String) -> Self {
        Self {
            http: bench.http.clone(),
            base: bench.app.base_url.clone(),
            token: bench.app.token.clone(),
            project,
            prefix,
        }
    }

    fn event(&self, n: usize) -> impl std::future::Future<Output = bool> + Send + use<> {
        self.send(json!({"event_name": "trial_expired",
            "user_info": {"contact_external_id": format!("{}{n}", self.prefix)}}))
    }

    /// The `n`th event of the targeting scenario: its user and event data such that every
    /// targeting condition holds.
    fn targeted_event(&self, n: usize) -> impl std::future::Future<Output = bool> + Send + use<> {
        let user = format!("{}{n}", self.prefix);
        self.send(json!({"event_name": "trial_expired",
            "user_info": {"contact_external_id": user, "email": format!("{user}@example.com"),
                "custom_fields": {"country": "DE"}},
            "event_data": {"plan": "pro", "amount": 42}}))
    }

    /// `events/send` of `body` to the project; whether it was accepted.
    fn send(
        &self,
        body: serde_json::Value,
    ) -> impl std::future::Future<Output = bool> + Send + use<> {
        let request = self
            .http
            .post(format!("{}/api/v1/events/send", self.base))
            .header("x-api-key", &self.token)
            .header("x-team-id", self.project.to_string())
            .json(&body);
        async move { matches!(request.send().await, Ok(r) if r.status().as_u16() == 201) }
    }

    fn dispatch(&self, n: usize) -> impl std::future::Future<Output = bool> + Send + use<> {
        let request = self
            .http
            .post(format!("{}/api/v1/lifecycle/dispatch", self.base))
            .header("x-api-key", &self.token)
            .json(
                &json!({"project_id": self.project, "user_ref": format!("{}{n}", self.prefix),
                "event": "trial_expired"}),
            );
        async move { matches!(request.send().await, Ok(r) if r.status().as_u16() == 200) }
    }
}

/// RSS (sampled every 200 ms, the maximum kept) and CPU time of the services, the broker,
/// the database and this process.
#[derive(Default)]
struct ProcessStats {
    /// Scenario → group → max RSS in MiB.
    rss: BTreeMap<String, BTreeMap<String, f64>>,
    /// Scenario → group → CPU seconds.
    cpu: BTreeMap<String, BTreeMap<String, f64>>,
}

struct Sampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<BTreeMap<String, f64>>,
    /// CPU seconds of each process at the start.
    start_cpu: HashMap<u32, f64>,
    groups: Vec<(String, Vec<u32>)>,
}

fn processes_named(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .collect()
}

/// CPU seconds (user and system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let read = || -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) / ticks_per_second)
    };
    read().unwrap_or(0.0)
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

impl ProcessStats {
    fn groups(app: &TestApp) -> Vec<(String, Vec<u32>)> {
        let mut groups: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (name, pid) in app.pids() {
            groups.entry(name.to_owned()).or_default().push(pid);
        }
        groups.insert("rabbitmq".into(), processes_named("beam.smp"));
        groups.insert("postgresql".into(), processes_named("postgres"));
        groups.insert("load generator".into(), vec![std::process::id()]);
        groups.into_iter().collect()
    }

    fn start(app: &TestApp) -> Sampler {
        let groups = Self::groups(app);
        let start_cpu = groups
            .iter()
            .flat_map(|(_, pids)| pids.iter().map(|&pid| (pid, cpu_seconds(pid))))
            .collect();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let services: Vec<(String, Vec<u32>)> = groups
            .iter()
            .filter(|(g, _)| !matches!(g.as_str(), "rabbitmq" | "postgresql" | "load generator"))
            .cloned()
            .collect();
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut max: BTreeMap<String, f64> = BTreeMap::new();
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                for (g, pids) in &services {
                    for pid in pids {
                        let v = rss_mib(*pid);
                        let m = max.entry(g.clone()).or_default();
                        *m = m.max(v);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            max
        });
        Sampler {
            stop,
            task,
            start_cpu,
            groups,
        }
    }
}

impl Sampler {
    /// The largest RSS per service and the CPU seconds per group since the start.
    async fn stop(self) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let rss = self.task.await.unwrap_or_default();
        // The broker's and the database's processes are listed again: a database backend
        // started during the scenario (a pool growing) counts from zero.
        let cpu = self
            .groups
            .iter()
            .map(|(g, pids)| {
                let pids = match g.as_str() {
                    "rabbitmq" => processes_named("beam.smp"),
                    "postgresql" => processes_named("postgres"),
                    _ => pids.clone(),
                };
                let used: f64 = pids
                    .iter()
                    .map(|&pid| cpu_seconds(pid) - self.start_cpu.get(&pid).copied().unwrap_or(0.0))
                    .sum();
                (g.clone(), used)
            })
            .collect();
        (rss, cpu)
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn shell(command: &str, args: &[&str]) -> String {
    std::process::Command::new(command)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!(
        "{cores} cores ({model}), {mem:.0} GiB RAM, Linux {}; {}; RabbitMQ {}",
        shell("uname", &["-r"]),
        shell("psql", &["--version"]),
        shell("rabbitmqctl", &["version"]),
    )
}

fn cell(v: Option<f64>, unit: &str) -> String {
    match v {
        Some(v) if v.is_finite() && unit == "ms" => format!("{v:.1} ms"),
        Some(v) if v.is_finite() && unit == "/s" => format!("{v:.0}/s"),
        Some(v) if v.is_finite() => format!("{v:.0}"),
        _ => "—".into(),
    }
}

fn report(runs: &[Figures], bench: &Bench, seconds: u64, command: &str) -> String {
    let mut all: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for run in runs {
        for (k, v) in run {
            all.entry(k.as_str()).or_default().push(*v);
        }
    }
    let m: BTreeMap<&str, f64> = all
        .into_iter()
        .map(|(k, mut v)| (k, median(&mut v)))
        .collect();
    let get = |k: &str| m.get(k).copied();
    let met = |ok: bool| if ok { "met" } else { "**missed**" };
    let lt = |k: &str, limit: f64| get(k).is_some_and(|v| v < limit);
    let ge = |k: &str, limit: f64| get(k).is_some_and(|v| v >= limit);
    let le = |k: &str, limit: f64| get(k).is_some_and(|v| v <= limit);
    let commit = shell("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = if shell("git", &["status", "--porcelain"]).is_empty() {
        ""
    } else {
        " (with uncommitted changes)"
    };
    let date = shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let mut out = String::new();
    out.push_str("# Benchmarks\n\n");
    out.push_str("Produced by `make bench`; every figure below was measured by that command on the machine named here, \
        with the load generator, the webhook receiver, RabbitMQ, PostgreSQL and all four services (release builds) \
        sharing it. Each scenario starts once the one before has drained, and after a `VACUUM (ANALYZE)` and a \
        `CHECKPOINT`, so no scenario pays for another's maintenance. Each figure is the median of the runs.\n\n");
    out.push_str(&format!(
        "- Machine: {}\n- Commit: `{commit}`{dirty}\n- Date: {date}\n- Command: `{command}` ({} runs, {seconds} s per scenario)\n\n",
        machine(),
        runs.len()
    ));
    out.push_str(
        "## Against the targets\n\n| figure | target | measured | |\n| --- | --- | --- | --- |\n",
    );
    let rows: Vec<(String, &str, String, bool)> = vec![
        (
            "events/send accepted, 32 concurrent".into(),
            "≥ 3,000/s, p99 < 50 ms",
            format!(
                "{}, p50 {}, p99 {}",
                cell(get("events_send_c32_per_s"), "/s"),
                cell(get("events_send_c32_p50_ms"), "ms"),
                cell(get("events_send_c32_p99_ms"), "ms")
            ),
            ge("events_send_c32_per_s", 3000.0) && lt("events_send_c32_p99_ms", 50.0),
        ),
        (
            "end to end, sustained with every webhook delivered".into(),
            "≥ 1,500 events/s",
            format!(
                "{} delivered (at the highest rate offered that kept up)",
                cell(get("e2e_kept_up_per_s"), "/s")
            ),
            ge("e2e_kept_up_per_s", 1500.0),
        ),
        (
            "end to end at 750 events/s".into(),
            "p50 < 10 ms, p99 < 50 ms",
            format!(
                "p50 {}, p99 {}",
                cell(get("e2e_r750_p50_ms"), "ms"),
                cell(get("e2e_r750_p99_ms"), "ms")
            ),
            lt("e2e_r750_p50_ms", 10.0) && lt("e2e_r750_p99_ms", 50.0),
        ),
        (
            "end to end at 200 events/s".into(),
            "p50 ≤ 5 ms, p99 ≤ 15 ms",
            format!(
                "p50 {}, p99 {}",
                cell(get("e2e_r200_p50_ms"), "ms"),
                cell(get("e2e_r200_p99_ms"), "ms")
            ),
            le("e2e_r200_p50_ms", 5.0) && le("e2e_r200_p99_ms", 15.0),
        ),
        (
            "sync dispatch at 200/s".into(),
            "p99 < 20 ms; peak ≥ 1,000/s",
            format!(
                "p99 {}; peak {}",
                cell(get("dispatch_r200_p99_ms"), "ms"),
                cell(get("dispatch_peak_per_s"), "/s")
            ),
            lt("dispatch_r200_p99_ms", 20.0) && ge("dispatch_peak_per_s", 1000.0),
        ),
        (
            "fan-out, 10 subscriptions × 200 events/s".into(),
            "all 2,000 webhooks/s delivered, p99 < 100 ms",
            format!(
                "{} of {} delivered at {}, p99 {}",
                cell(get("fanout_delivered"), ""),
                cell(get("fanout_expected"), ""),
                cell(get("fanout_per_s"), "/s"),
                cell(get("fanout_p99_ms"), "ms")
            ),
            get("fanout_delivered") == get("fanout_expected")
                && ge("fanout_per_s", 1900.0)
                && lt("fanout_p99_ms", 100.0),
        ),
        (
            format!(
                "matcher handling rate, a condition on each of {TARGETED_SURVEYS} Live surveys"
            ),
            "within 10% of the same surveys without conditions",
            targeting_measured(&get, bench.callgrind.is_some()),
            ["plain", "conditions"].iter().all(|v| {
                get(&format!("targeting_{v}_handled")) == get(&format!("targeting_{v}_events"))
            }) && targeting_within(&get, bench.callgrind.is_some()),
        ),
    ];
    let processes = bench.processes.lock().unwrap();
    let rss_max = processes
        .rss
        .values()
        .flat_map(|g| g.values().copied())
        .fold(0.0f64, f64::max);
    for (figure, target, measured, ok) in rows {
        out.push_str(&format!(
            "| {figure} | {target} | {measured} | {} |\n",
            met(ok)
        ));
    }
    out.push_str(&format!(
        "| RSS of each service under load | < 64 MiB | largest {rss_max:.1} MiB | {} |\n\n",
        met(rss_max > 0.0 && rss_max < 64.0)
    ));

    out.push_str("## Every figure\n\n| scenario | rate | p50 | p99 | notes |\n| --- | --- | --- | --- | --- |\n");
    for c in [32, 128] {
        out.push_str(&format!(
            "| events/send, {c} concurrent (closed loop) | {} | {} | {} | {} refused |\n",
            cell(get(&format!("events_send_c{c}_per_s")), "/s"),
            cell(get(&format!("events_send_c{c}_p50_ms")), "ms"),
            cell(get(&format!("events_send_c{c}_p99_ms")), "ms"),
            cell(get(&format!("events_send_c{c}_failed")), ""),
        ));
    }
    for r in [50, 200, 500] {
        out.push_str(&format!(
            "| sync dispatch at {r}/s (open loop) | {r}/s | {} | {} | {} failed |\n",
            cell(get(&format!("dispatch_r{r}_p50_ms")), "ms"),
            cell(get(&format!("dispatch_r{r}_p99_ms")), "ms"),
            cell(get(&format!("dispatch_r{r}_failed")), ""),
        ));
    }
    out.push_str(&format!(
        "| sync dispatch peak, 64 concurrent | {} | | | |\n",
        cell(get("dispatch_peak_per_s"), "/s")
    ));
    for r in bench.rates.iter() {
        if get(&format!("e2e_r{r}_sent")).is_none() {
            out.push_str(&format!(
                "| end to end at {r}/s | not run: a lower rate already fell behind | | | |\n"
            ));
            continue;
        }
        out.push_str(&format!(
            "| end to end at {r}/s (event → webhook received) | {} | {} | {} | {} of {} delivered |\n",
            cell(get(&format!("e2e_r{r}_per_s")), "/s"),
            cell(get(&format!("e2e_r{r}_p50_ms")), "ms"),
            cell(get(&format!("e2e_r{r}_p99_ms")), "ms"),
            cell(get(&format!("e2e_r{r}_delivered")), ""),
            cell(get(&format!("e2e_r{r}_sent")), ""),
        ));
    }
    out.push_str(&format!(
        "| fan-out, 10 subscriptions × 200 events/s | {} | | {} | {} of {} delivered |\n",
        cell(get("fanout_per_s"), "/s"),
        cell(get("fanout_p99_ms"), "ms"),
        cell(get("fanout_delivered"), ""),
        cell(get("fanout_expected"), ""),
    ));
    for variant in ["plain", "conditions"] {
        out.push_str(&format!(
            "| {} ({OTHER_SURVEYS} more on another event; a backlog, handled with the invitation stage stopped) | {} | | | {} of {} handled, {} refused at intake{} |\n",
            targeting_scenario(variant),
            cell(get(&format!("targeting_{variant}_per_s")), "/s"),
            cell(get(&format!("targeting_{variant}_handled")), ""),
            cell(get(&format!("targeting_{variant}_events")), ""),
            cell(get(&format!("targeting_{variant}_refused")), ""),
            match get(&format!("targeting_{variant}_instructions")) {
                Some(i) => format!("; {i:.0} matcher instructions per event (callgrind)"),
                None => String::new(),
            },
        ));
    }
    out.push('\n');

    out.push_str("## Where the time goes (last run)\n\nMean time per message in each stage, from the services' own \
        `beckon_handler_seconds` and `beckon_http_request_seconds` histograms over the scenario.\n\n\
        | scenario | stage | mean |\n| --- | --- | --- |\n");
    for (key, ms) in bench.stages.lock().unwrap().iter() {
        let (scenario, stage) = key.split_once(" | ").unwrap_or((key, ""));
        out.push_str(&format!("| {scenario} | {stage} | {ms:.2} ms |\n"));
    }
    out.push_str("\n## What PostgreSQL does per event (last run)\n\nFrom `pg_stat_database` over each scenario, \
        after the pipeline drained: transactions committed (a statement sent outside a transaction, a read too, commits \
        on its own) and rows written (inserted, updated, deleted) and fetched, in total and per request sent; and the \
        statements the services sent (their `beckon_db_statements_total`, `BEGIN` and `COMMIT` included; statements \
        sent together share a round trip, so this bounds the round trips from above).\n\n\
        | scenario | requests | commits | rows written | rows fetched | statements | commits per request | rows written per request | statements per request |\n\
        | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    let last = runs.last().cloned().unwrap_or_default();
    for (scenario, (db, statements)) in bench.database.lock().unwrap().iter() {
        let requests = requests_of(scenario, &last);
        let per = |v: i64| {
            if requests > 0.0 {
                format!("{:.1}", v as f64 / requests)
            } else {
                "—".into()
            }
        };
        out.push_str(&format!(
            "| {scenario} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            if requests > 0.0 {
                format!("{requests:.0}")
            } else {
                "—".into()
            },
            db.commits,
            db.written,
            db.fetched,
            statements,
            per(db.commits),
            per(db.written),
            per(*statements)
        ));
    }
    out.push_str("\n## Memory and CPU (last run)\n\nLargest RSS of each service while the scenario ran, and the CPU \
        seconds each part of the machine used during it (2 cores give 2 CPU-seconds per second).\n\n");
    let groups: Vec<String> = processes
        .cpu
        .values()
        .next()
        .map(|g| g.keys().cloned().collect())
        .unwrap_or_default();
    out.push_str(&format!(
        "| scenario | {} |\n|{}\n",
        groups.join(" | "),
        " --- |".repeat(groups.len() + 1)
    ));
    for (scenario, cpu) in &processes.cpu {
        let rss = processes.rss.get(scenario);
        let cells: Vec<String> = groups
            .iter()
            .map(|g| {
                let c = cpu.get(g).copied().unwrap_or(0.0);
                match rss.and_then(|r| r.get(g)) {
                    Some(mib) => format!("{c:.1} s CPU, {mib:.1} MiB"),
                    None => format!("{c:.1} s CPU"),
                }
            })
            .collect();
        out.push_str(&format!("| {scenario} | {} |\n", cells.join(" | ")));
    }
    out.push_str("\n## CPU per event (last run)\n\nThe CPU above divided by the requests sent: \
        milliseconds of CPU each part of the machine spent per event, whatever the machine's speed.\n\n");
    out.push_str(&format!(
        "| scenario | {} | all |\n|{}\n",
        groups.join(" | "),
        " --- |".repeat(groups.len() + 2)
    ));
    for (scenario, cpu) in &processes.cpu {
        let requests = requests_of(scenario, &last);
        if requests <= 0.0 {
            continue;
        }
        let per = |c: f64| format!("{:.2} ms", c * 1000.0 / requests);
        let cells: Vec<String> = groups
            .iter()
            .map(|g| per(cpu.get(g).copied().unwrap_or(0.0)))
            .collect();
        out.push_str(&format!(
            "| {scenario} | {} | {} |\n",
            cells.join(" | "),
            per(cpu.values().sum())
        ));
    }
    out
}

/// Where the hand-kept history of a report begins and ends.
const HISTORY_BEGINS: &str = "<!-- history: kept by hand, carried over by make bench -->";
const HISTORY_ENDS: &str = "<!-- /history -->";

/// The hand-kept history section of a report, markers included.
fn history(report: &str) -> Option<&str> {
    let start = report.find(HISTORY_BEGINS)?;
    let end = report[start..].find(HISTORY_ENDS)? + start + HISTORY_ENDS.len();
    Some(&report[start..end])
}

/// How many requests a scenario sent, from a run's figures; 0 when it does not say.
fn requests_of(scenario: &str, figures: &Figures) -> f64 {
    let key = match scenario {
        "events/send c32" => "events_send_c32_requests".to_owned(),
        "events/send c128" => "events_send_c128_requests".to_owned(),
        s if s.starts_with("dispatch ") && s.ends_with("/s") => {
            format!(
                "dispatch_r{}_requests",
                s.trim_start_matches("dispatch ").trim_end_matches("/s")
            )
        }
        s if s == targeting_scenario("plain") => "targeting_plain_events".to_owned(),
        s if s == targeting_scenario("conditions") => "targeting_conditions_events".to_owned(),
        s if s.starts_with("end to end ") => {
            format!(
                "e2e_r{}_sent",
                s.trim_start_matches("end to end ").trim_end_matches("/s")
            )
        }
        _ => String::new(),
    };
    figures.get(&key).copied().unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let runs: usize = arg("--runs").and_then(|v| v.parse().ok()).unwrap_or(3);
    let seconds: u64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(8);
    let out = arg("--out").unwrap_or_else(|| "BENCHMARKS.md".into());
    // The services' defaults, but quiet logs and no per-organization rate limit (one
    // organization sends everything here).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let callgrind = std::env::args()
        .any(|a| a == "--callgrind")
        .then(Callgrind::new);
    let app = TestApp::spawn_with(Options {
        env: vec![
            // Quiet, but for the line that says where the metrics are served.
            ("RUST_LOG", "warn,beckon_runtime=info".into()),
            ("BECKON_RATE_LIMIT_PER_SECOND", "0".into()),
            ("BECKON_HTTP_WORKERS", cores.to_string()),
            ("BECKON_DB_POOL_SIZE", "8".into()),
            ("BECKON_DELIVERY_LIMIT", "5".into()),
            ("BECKON_SCHEDULER_INTERVAL_MS", "200".into()),
            ("BECKON_WEBHOOK_POLL_INTERVAL_MS", "200".into()),
        ],
        wrap: callgrind.as_ref().map(|c| ("matcher", c.wrapper())),
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()
        .expect("an HTTP client");
    let broker = Broker::connect(&app.prefix).await;
    let mut bench = Bench {
        app,
        broker,
        receiver,
        http,
        seconds,
        run: 0,
        only: arg("--only").map(|v| v.split(',').map(str::to_owned).collect()),
        rates: arg("--rates")
            .map(|v| {
                v.split(',')
                    .map(|r| {
                        r.trim()
                            .parse()
                            .expect("--rates: events per second, e.g. 200,500")
                    })
                    .collect()
            })
            .unwrap_or_else(|| E2E_RATES.to_vec()),
        stages: Mutex::default(),
        processes: Mutex::default(),
        database: Mutex::default(),
        callgrind,
    };
    let mut results = Vec::new();
    for run in 0..runs {
        bench.run = run;
        bench.stages.lock().unwrap().clear();
        eprintln!("run {} of {runs}", run + 1);
        let figures = bench.run_all().await;
        for (k, v) in &figures {
            eprintln!("  {k} = {v:.2}");
        }
        results.push(figures);
    }
    let command = std::env::var("BECKON_BENCH_COMMAND")
        .unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" "));
    let mut text = report(&results, &bench, seconds, &command);
    // The hand-written record of changes and what they did is carried over from the report
    // this one replaces.
    if let Some(history) = std::fs::read_to_string(&out)
        .ok()
        .as_deref()
        .and_then(history)
    {
        text.push('\n');
        text.push_str(history);
        text.push('\n');
    }
    std::fs::write(&out, &text).expect("write the report");
    println!("{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_that_was_not_written_gives_no_count() {
        let dir = std::env::temp_dir().join(format!("beckon-bench-test-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        // The last window's dump, of a process callgrind does not run (this one): the dump
        // asked for now is never written, and that one must not be taken for it.
        let pid = std::process::id();
        std::fs::write(
            dir.join(format!("matcher.{pid}.1")),
            "events: Ir\nsummary: 5000\n\ntotals: 5000\n",
        )
        .unwrap();
        let callgrind = Callgrind { dir: dir.clone() };
        assert_eq!(callgrind.dump(pid), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn under_callgrind_a_missing_count_is_not_replaced_with_a_rate() {
        let figures: BTreeMap<&str, f64> = [
            ("targeting_conditions_per_s", 1000.0),
            ("targeting_plain_per_s", 1000.0),
            ("targeting_plain_instructions", 250_000.0),
        ]
        .into();
        let get = |key: &str| figures.get(key).copied();
        assert!(!targeting_within(&get, true));
        assert_eq!(
            targeting_measured(&get, true),
            "— against 250000 instructions per event (callgrind)"
        );
        assert!(targeting_within(&get, false));
    }
}
