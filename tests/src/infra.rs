//! Disturbing the shared infrastructure, for the tests that run alone: restart or stop the
//! local RabbitMQ and PostgreSQL.

use std::process::Command;

/// Runs `rabbitmqctl` with `args`; panics when it fails.
pub fn rabbitmqctl(args: &[&str]) {
    let status = Command::new("rabbitmqctl")
        .args(args)
        .status()
        .expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {args:?} failed");
}

/// Stops and starts the broker application and waits until it is up again.
pub fn restart_rabbitmq() {
    rabbitmqctl(&["stop_app"]);
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
}

/// `pg_ctlcluster <version> main <action>` on the local cluster; panics when it fails.
pub fn postgres(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a local PostgreSQL")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .max()
        .expect("a cluster version");
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", action])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "pg_ctlcluster {action} failed");
}
