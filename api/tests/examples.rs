//! Every example spec in `manifests/examples/` parses and validates.

use std::path::Path;

#[test]
fn every_example_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = herd_api::yaml::parse_cluster_spec(&text) {
            panic!("{}: {e}", path.display());
        }
        checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    checked.sort();
    assert_eq!(checked, ["hadoop.yaml", "quickstart.yaml"]);
}

#[test]
fn the_examples_form_clusters() {
    use herd_api::Role;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples");
    for name in ["hadoop.yaml", "quickstart.yaml"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let spec = herd_api::yaml::parse_cluster_spec(&text).unwrap();
        for role in Role::ALL {
            assert!(spec.pools.contains_key(&role), "{name} has no {role} pool");
        }
    }
}
