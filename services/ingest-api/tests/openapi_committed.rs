//! The committed `openapi.json` is the served spec, byte for byte, so clients can be generated
//! from the repository and a change to the API shows in review. `make schemas` rewrites it.

use std::path::PathBuf;

#[test]
fn the_committed_spec_is_the_served_one() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi.json");
    let spec: serde_json::Value = serde_json::from_str(ingest_api::openapi::spec()).unwrap();
    let generated = serde_json::to_string_pretty(&spec).unwrap() + "\n";
    if std::env::var_os("BECKON_BLESS_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is missing ({e}); run `make schemas`", path.display()));
    assert!(
        committed == generated,
        "{} drifted from the served spec; run `make schemas`",
        path.display()
    );
}
