//! `skopeo inspect` as the reference answer (skopeo 1.9.x; plain HTTP via `--tls-verify=false`).

use super::{Creds, run_tool};
use std::process::Command;

fn docker_ref(reference: &str) -> String {
    if reference.starts_with("docker://") {
        reference.to_string()
    } else {
        format!("docker://{reference}")
    }
}

/// `skopeo inspect --tls-verify=false [--creds u:p] [extra...] docker://REFERENCE`; returns
/// stdout. `reference` is `host:port/name:tag` or `...@sha256:...` (`docker://` optional).
/// For an index, skopeo picks the host platform unless `extra` has `--override-arch` etc.
pub fn skopeo_inspect_with(reference: &str, creds: Option<&Creds>, extra: &[&str]) -> Vec<u8> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false", "--retry-times=0"]);
    if let Some(c) = creds {
        cmd.arg("--creds").arg(c.colon_joined());
    } else {
        cmd.arg("--no-creds");
    }
    cmd.args(extra).arg(docker_ref(reference));
    run_tool(&mut cmd).stdout
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "skopeo printed no JSON ({e}): {}",
            String::from_utf8_lossy(bytes)
        )
    })
}

/// `skopeo inspect`: `Name`, `Digest`, `RepoTags`, `Created`, `Labels`, `Architecture`, `Os`,
/// `Layers`, `Env`, ...
pub fn skopeo_inspect(reference: &str, creds: Option<&Creds>) -> serde_json::Value {
    json(&skopeo_inspect_with(reference, creds, &[]))
}

/// `skopeo inspect --config`: the image config blob (OCI form).
pub fn skopeo_inspect_config(reference: &str, creds: Option<&Creds>) -> serde_json::Value {
    json(&skopeo_inspect_with(reference, creds, &["--config"]))
}

/// `skopeo inspect --raw`: the manifest (or index) bytes exactly as the registry serves them.
pub fn skopeo_inspect_raw(reference: &str, creds: Option<&Creds>) -> Vec<u8> {
    skopeo_inspect_with(reference, creds, &["--raw"])
}
