//! What the workspace itself promises: the Rust version it declares builds the crates it
//! locks, the license it declares ships with it, and the image build leaves out what must not
//! travel.

use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The target triple of this machine, as rustc reports it.
fn host() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = std::process::Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("rustc runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc names its host")
        .to_owned()
}

/// `1.89` and `1.89.0` alike, as `[1, 89, 0]`.
fn version(raw: &str) -> [u64; 3] {
    let mut parts = raw.split('.').map(|p| p.parse().unwrap_or(0));
    [(); 3].map(|_| parts.next().unwrap_or(0))
}

#[test]
fn the_declared_rust_version_is_enough_for_every_locked_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The crates built for this machine: a fresh clone has never fetched the ones only other
    // platforms use, and the test must not need the network.
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host()])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let members: Vec<&str> = metadata["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let declared = packages
        .iter()
        .find(|p| members.contains(&p["id"].as_str().unwrap()))
        .and_then(|p| p["rust_version"].as_str())
        .expect("the workspace declares a rust-version");
    let needs: Vec<String> = packages
        .iter()
        .filter_map(|p| {
            let wants = p["rust_version"].as_str()?;
            (version(wants) > version(declared))
                .then(|| format!("{} {} needs {wants}", p["name"], p["version"]))
        })
        .collect();
    assert!(
        needs.is_empty(),
        "rust-version is {declared}, but {needs:#?}"
    );
}

#[test]
fn the_declared_license_ships_with_the_sources() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(manifest.contains("license = \"Apache-2.0\""));
    let license = std::fs::read_to_string(root().join("LICENSE")).expect("a LICENSE file");
    assert!(license.trim_start().starts_with("Apache License"));
    assert!(license.contains("Version 2.0, January 2004"));
}

#[test]
fn the_image_build_leaves_out_build_output_local_state_and_history() {
    let ignored = std::fs::read_to_string(root().join(".dockerignore")).expect("a .dockerignore");
    let entries: Vec<&str> = ignored
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    for must in ["target", ".beckon", ".git"] {
        assert!(
            entries.contains(&must),
            "{must} is not left out: {entries:?}"
        );
    }
}
