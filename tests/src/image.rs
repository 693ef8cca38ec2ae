//! Beckon's container image, packaged by `scripts/image.sh` from the binaries the tests run,
//! and the Podman commands that run it: every container on the host's network, so the
//! services reach the local PostgreSQL and RabbitMQ and the tests reach the services, all on
//! 127.0.0.1.
//!
//! Containers are named `beckon-e2e-<test process id>-…`: the test removes its own when it
//! ends (panics included), and [`build`] first removes those whose test process died without
//! doing so.

use std::path::PathBuf;
use std::process::Command;

/// `scripts/image.sh`, through which every Podman call goes (it gives Podman the settings this
/// kind of machine needs).
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/image.sh")
}

/// `scripts/image.sh podman`, to be given Podman's arguments.
pub fn podman() -> Command {
    let mut command = Command::new(script());
    command.arg("podman");
    command
}

/// `scripts/image.sh compose`: podman-compose, to be given its arguments.
pub fn compose() -> Command {
    let mut command = Command::new(script());
    command.arg("compose");
    command
}

/// The Debian base image `scripts/image.sh` makes (once) with debootstrap; returns its name.
/// Panics when that fails.
pub fn base() -> String {
    let out = Command::new(script())
        .arg("base")
        .output()
        .expect("scripts/image.sh runs");
    assert!(
        out.status.success(),
        "scripts/image.sh base: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Packages the workspace's binaries (built first, as for any test) into the Dockerfile's
/// `packaged` stage on the Debian base `scripts/image.sh` makes; returns the image's name.
/// Panics when that fails.
pub fn build() -> String {
    let status = Command::new(script())
        .arg("clean")
        .status()
        .expect("scripts/image.sh runs");
    assert!(status.success(), "scripts/image.sh clean failed");
    let bin_dir = crate::binary("beckon")
        .parent()
        .expect("binaries live in a directory")
        .to_path_buf();
    let out = Command::new(script())
        .arg("build")
        .arg(&bin_dir)
        .output()
        .expect("scripts/image.sh runs");
    assert!(
        out.status.success(),
        "scripts/image.sh build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A container name of this test process's own, ending in `what`.
pub fn container_name(what: &str) -> String {
    format!("beckon-e2e-{}-{what}", std::process::id())
}

/// The same program as `command` (a workspace binary, its arguments and the environment it
/// was given), run instead in a container of `image` named `name`, on the host's network.
/// Podman removes the container when the program exits, hands it the signals it gets
/// (SIGTERM stops the service inside) and exits with its status. The environment reaches the
/// container by name only (`--env NAME`, its value taken from Podman's own), so no secret
/// shows on a command line. With `stdin`, the container reads Podman's standard input.
pub fn containerized(command: &Command, image: &str, name: &str, stdin: bool) -> Command {
    let program = PathBuf::from(command.get_program());
    let program = program
        .file_name()
        .expect("a binary's path names a file")
        .to_owned();
    let mut podman = podman();
    podman.args(["run", "--rm", "--network", "host", "--log-driver", "none"]);
    podman.args(["--name", name]);
    if stdin {
        podman.arg("--interactive");
    }
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            podman.arg("--env").arg(key).env(key, value);
        }
    }
    podman.arg(image).arg(program).args(command.get_args());
    podman
}

/// Removes these containers at once, killing what runs in them (SIGKILL, as in a crash).
pub fn remove(names: &[String]) {
    if names.is_empty() {
        return;
    }
    let _ = podman()
        .args(["rm", "--force", "--time", "0", "--ignore"])
        .args(names)
        .output();
}

/// The names of this test process's containers that exist (running or not).
pub fn containers() -> Vec<String> {
    let out = podman()
        .args(["ps", "--all", "--format", "{{.Names}}"])
        .output()
        .expect("podman runs");
    assert!(out.status.success(), "podman ps failed");
    let own = container_name("");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|name| name.starts_with(&own))
        .map(str::to_owned)
        .collect()
}
