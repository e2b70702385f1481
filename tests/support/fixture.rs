//! Fixture images built with `umoci` (OCI layouts, no Docker engine) and pushed with
//! `skopeo copy`: independent tools, not our code.
//!
//! ```ignore
//! let reg = TestRegistry::start(Auth::None);
//! let img = Fixture::new("team/app", "1.0")
//!     .label("org.opencontainers.image.version", "1.0")
//!     .layer_with_file("app/hello.txt", "hello", "COPY hello.txt /app/")
//!     .empty_step("CMD [\"/app/run\"]")
//!     .push(&reg, Format::Oci);
//! ```
//!
//! Builds are deterministic for the same fixture: file mtimes, `created` and history times are
//! all the fixture's `created` (default [`DEFAULT_CREATED`]), so digests repeat across runs.

use super::registry::TestRegistry;
use super::{media, run_tool};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `created` of fixtures that do not set one.
pub const DEFAULT_CREATED: &str = "2024-01-02T03:04:05Z";

/// Manifest format on the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OCI image manifest / OCI index (as umoci builds them).
    Oci,
    /// Docker schema 2 manifest / manifest list (`skopeo copy --format v2s2`; OCI manifest
    /// annotations are dropped by the conversion).
    DockerV2,
}

#[derive(Debug, Clone)]
enum Step {
    Layer {
        files: Vec<(String, Vec<u8>)>,
        created_by: String,
    },
    Empty {
        created_by: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

/// An image to build and push. Builder methods consume and return `self`.
#[derive(Debug, Clone)]
pub struct Fixture {
    name: String,
    tag: String,
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
    env: Vec<String>,
    cmd: Vec<String>,
    steps: Vec<Step>,
    created: Option<String>,
    author: Option<String>,
    platform: Option<Platform>,
    base: Option<Box<Fixture>>,
}

/// What a push left on the registry.
#[derive(Debug, Clone)]
pub struct PushedImage {
    pub name: String,
    pub tag: String,
    /// `127.0.0.1:PORT/name:tag`
    pub reference: String,
    /// Manifest digest as the registry knows it (differs between `Oci` and `DockerV2`).
    pub digest: String,
    /// Manifest media type.
    pub media_type: String,
    /// Manifest bytes exactly as served.
    pub manifest: Vec<u8>,
    pub config_digest: String,
}

impl PushedImage {
    /// `127.0.0.1:PORT/name@sha256:...`
    pub fn reference_by_digest(&self) -> String {
        let host = self.reference.split('/').next().unwrap_or("");
        format!("{host}/{}@{}", self.name, self.digest)
    }

    pub fn manifest_json(&self) -> Value {
        serde_json::from_slice(&self.manifest).expect("manifest JSON")
    }

    /// Layer digests in manifest order.
    pub fn layer_digests(&self) -> Vec<String> {
        self.manifest_json()["layers"]
            .as_array()
            .map(|ls| {
                ls.iter()
                    .filter_map(|l| l["digest"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Fixture {
    /// A linux/amd64 image with no layers; `name` like `team/app`.
    pub fn new(name: &str, tag: &str) -> Self {
        Fixture {
            name: name.to_string(),
            tag: tag.to_string(),
            labels: Vec::new(),
            annotations: Vec::new(),
            env: Vec::new(),
            cmd: Vec::new(),
            steps: Vec::new(),
            created: None,
            author: None,
            platform: None,
            base: None,
        }
    }

    /// An image for one platform of a [`MultiArch`] (which ignores its name and tag).
    pub fn for_platform(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Fixture::new("", "").platform(os, architecture, variant)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// A config label (`config.Labels`).
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_string(), value.to_string()));
        self
    }

    pub fn labels<'a>(mut self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        for (k, v) in pairs {
            self = self.label(k, v);
        }
        self
    }

    /// A manifest annotation (OCI only: `DockerV2` drops it).
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.push((key.to_string(), value.to_string()));
        self
    }

    /// A config environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push(format!("{key}={value}"));
        self
    }

    /// The config `Cmd`.
    pub fn cmd(mut self, args: &[&str]) -> Self {
        self.cmd = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// A layer adding one file (`path` relative to `/`), with a history entry `created_by`.
    pub fn layer_with_file(self, path: &str, contents: impl AsRef<[u8]>, created_by: &str) -> Self {
        self.layer_with_files(&[(path, contents.as_ref())], created_by)
    }

    /// A layer adding several files.
    pub fn layer_with_files(mut self, files: &[(&str, &[u8])], created_by: &str) -> Self {
        self.steps.push(Step::Layer {
            files: files
                .iter()
                .map(|(p, c)| (p.trim_start_matches('/').to_string(), c.to_vec()))
                .collect(),
            created_by: created_by.to_string(),
        });
        self
    }

    /// A history entry with `empty_layer: true` (like `ENV`, `LABEL`, `CMD` in a Dockerfile).
    pub fn empty_step(mut self, created_by: &str) -> Self {
        self.steps.push(Step::Empty {
            created_by: created_by.to_string(),
        });
        self
    }

    /// Image `created` (RFC 3339); also used for history entries and file times.
    pub fn created(mut self, rfc3339: &str) -> Self {
        chrono::DateTime::parse_from_rfc3339(rfc3339).expect("created must be RFC 3339");
        self.created = Some(rfc3339.to_string());
        self
    }

    pub fn author(mut self, author: &str) -> Self {
        self.author = Some(author.to_string());
        self
    }

    /// Platform in the config (and in the index, for [`MultiArch`]). Default linux/amd64.
    pub fn platform(mut self, os: &str, architecture: &str, variant: Option<&str>) -> Self {
        self.platform = Some(Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        });
        self
    }

    /// Build on top of `base` (its layers, history, labels and config), like `FROM base`.
    /// This fixture's labels are added to the base's, not replacing them; its platform and
    /// `created` apply when set.
    pub fn based_on(mut self, base: Fixture) -> Self {
        self.base = Some(Box::new(base));
        self
    }

    /// A CentOS-7-like base image: label-schema labels, an old `created` (2018-12-05), one
    /// layer and `LABEL`/`CMD` history entries, as Docker Hub's `centos:7` had.
    pub fn labelled_base(name: &str, tag: &str) -> Self {
        let labels = [
            ("org.label-schema.schema-version", "1.0"),
            ("org.label-schema.name", "CentOS Base Image"),
            ("org.label-schema.vendor", "CentOS"),
            ("org.label-schema.license", "GPLv2"),
            ("org.label-schema.build-date", "20181205"),
        ];
        Fixture::new(name, tag)
            .created("2018-12-05T01:20:35Z")
            .labels(labels)
            .layer_with_file(
                "etc/centos-release",
                "CentOS Linux release 7.6.1810 (Core)\n",
                "/bin/sh -c #(nop) ADD file:6340c690b08865d7eb8d4bdd0eb5a1c3b1d6f3ef2b0bd3fa1ce6fa4a0bc0c42e in / ",
            )
            .empty_step(
                "/bin/sh -c #(nop)  LABEL org.label-schema.schema-version=1.0 \
                 org.label-schema.name=CentOS Base Image org.label-schema.vendor=CentOS \
                 org.label-schema.license=GPLv2 org.label-schema.build-date=20181205",
            )
            .cmd(&["/bin/bash"])
            .empty_step("/bin/sh -c #(nop)  CMD [\"/bin/bash\"]")
    }

    /// An image built `FROM` [`labelled_base`](Self::labelled_base) with two newer layers
    /// (created 2024-03-01) and no labels of its own, so every label is inherited and stale.
    pub fn labelled_derived(name: &str, tag: &str) -> Self {
        Fixture::new(name, tag)
            .based_on(Fixture::labelled_base("library/centos", "7"))
            .created("2024-03-01T12:00:00Z")
            .layer_with_file(
                "app/hello.sh",
                "#!/bin/sh\necho hello\n",
                "/bin/sh -c #(nop) COPY file:0a1b2c3d in /app/ ",
            )
            .layer_with_file(
                "app/VERSION",
                "2.1.0\n",
                "/bin/sh -c echo 2.1.0 > /app/VERSION",
            )
            .cmd(&["/app/hello.sh"])
            .empty_step("/bin/sh -c #(nop)  CMD [\"/app/hello.sh\"]")
    }

    fn created_or_default(&self) -> &str {
        self.created.as_deref().unwrap_or(DEFAULT_CREATED)
    }

    /// The platform the built config has (own, else the base's, else linux/amd64).
    fn effective_platform(&self) -> Platform {
        self.platform.clone().unwrap_or_else(|| match &self.base {
            Some(b) => b.effective_platform(),
            None => Platform {
                os: "linux".into(),
                architecture: "amd64".into(),
                variant: None,
            },
        })
    }

    /// Builds this image into the OCI layout `layout` (already `umoci init`-ed) under `tag`,
    /// using `work` for scratch bundles.
    pub fn build_into(&self, layout: &Path, tag: &str, work: &Path) {
        let image = format!("{}:{tag}", layout.display());
        let created = self.created_or_default().to_string();
        let mut config = umoci();
        config.args(["config", "--no-history", "--image"]);
        match &self.base {
            Some(base) => {
                let base_tag = format!("{tag}-base");
                base.build_into(layout, &base_tag, work);
                config
                    .arg(format!("{}:{base_tag}", layout.display()))
                    .args(["--tag", tag]);
            }
            None => {
                run_tool(umoci().args(["new", "--image", &image]));
                config.arg(&image);
            }
        }
        if self.base.is_none() || self.created.is_some() {
            config.args(["--created", &created]);
        }
        if self.base.is_none() || self.platform.is_some() {
            let p = self.effective_platform();
            config
                .args(["--os", &p.os])
                .args(["--architecture", &p.architecture]);
        }
        if let Some(a) = &self.author {
            config.args(["--author", a]);
        }
        for (k, v) in &self.labels {
            config.arg("--config.label").arg(format!("{k}={v}"));
        }
        for e in &self.env {
            config.arg("--config.env").arg(e);
        }
        if !self.cmd.is_empty() {
            config.args(["--clear", "config.cmd"]);
            for c in &self.cmd {
                config.arg("--config.cmd").arg(c);
            }
        }
        for (k, v) in &self.annotations {
            config.arg("--manifest.annotation").arg(format!("{k}={v}"));
        }
        run_tool(&mut config);

        let mtime = system_time(&created);
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                Step::Empty { created_by } => {
                    run_tool(umoci().args([
                        "config",
                        "--image",
                        &image,
                        "--history.created_by",
                        created_by,
                        "--history.created",
                        &created,
                    ]));
                }
                Step::Layer { files, created_by } => {
                    // A fresh bundle per layer: repacking a reused bundle replaces the
                    // previous layer instead of adding one (umoci 0.4.7).
                    let bundle = work.join(format!("bundle-{tag}-{i}"));
                    run_tool(
                        umoci()
                            .args(["unpack", "--rootless", "--image", &image])
                            .arg(&bundle),
                    );
                    let rootfs = bundle.join("rootfs");
                    for (path, contents) in files {
                        let target = rootfs.join(path);
                        if let Some(parent) = target.parent() {
                            std::fs::create_dir_all(parent).expect("create dirs in rootfs");
                        }
                        std::fs::write(&target, contents).expect("write file in rootfs");
                    }
                    set_mtimes(&rootfs, mtime);
                    run_tool(
                        umoci()
                            .args(["repack", "--image", &image])
                            .args(["--history.created_by", created_by])
                            .args(["--history.created", &created])
                            .arg(&bundle),
                    );
                    let _ = std::fs::remove_dir_all(&bundle);
                }
            }
        }
        // umoci 0.4.7 has no --variant: patch the config directly.
        let platform = self.effective_platform();
        if let Some(variant) = platform.variant {
            layout::patch_config(layout, tag, |cfg| cfg["variant"] = json!(variant));
        }
    }

    /// Builds the image in a temporary layout and pushes it as `name:tag`.
    pub fn push(&self, registry: &TestRegistry, format: Format) -> PushedImage {
        let work = super::scratch_dir("fixture-");
        let layout = work.path().join("layout");
        run_tool(umoci().args(["init", "--layout"]).arg(&layout));
        self.build_into(&layout, &self.tag, work.path());
        let digest = skopeo_copy(
            registry,
            &layout,
            &self.tag,
            &self.name,
            &self.tag,
            format,
            false,
            work.path(),
        );
        let resp = registry.get_manifest(&self.name, &digest);
        let manifest: Value = serde_json::from_slice(&resp.body).expect("manifest JSON");
        PushedImage {
            name: self.name.clone(),
            tag: self.tag.clone(),
            reference: registry.reference(&format!("{}:{}", self.name, self.tag)),
            digest,
            media_type: resp.header("Content-Type").unwrap_or_default().to_string(),
            config_digest: manifest["config"]["digest"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            manifest: resp.body,
        }
    }
}

/// One platform entry of a pushed index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedPlatform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub digest: String,
    pub media_type: String,
}

/// What a multi-arch push left on the registry.
#[derive(Debug, Clone)]
pub struct PushedIndex {
    pub name: String,
    pub tag: String,
    pub reference: String,
    /// Digest of the index / manifest list.
    pub digest: String,
    pub media_type: String,
    /// Index bytes exactly as served.
    pub manifest: Vec<u8>,
    pub platforms: Vec<PushedPlatform>,
}

/// A multi-platform image: an OCI index (`Format::Oci`) or a Docker manifest list
/// (`Format::DockerV2`, converted by `skopeo copy --all --format v2s2`).
#[derive(Debug, Clone)]
pub struct MultiArch {
    name: String,
    tag: String,
    images: Vec<Fixture>,
    annotations: Vec<(String, String)>,
}

impl MultiArch {
    pub fn new(name: &str, tag: &str) -> Self {
        MultiArch {
            name: name.to_string(),
            tag: tag.to_string(),
            images: Vec::new(),
            annotations: Vec::new(),
        }
    }

    /// Adds one platform's image (its name and tag are ignored; set its `platform`).
    pub fn add(mut self, image: Fixture) -> Self {
        self.images.push(image);
        self
    }

    /// An index annotation (OCI only).
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.push((key.to_string(), value.to_string()));
        self
    }

    pub fn push(&self, registry: &TestRegistry, format: Format) -> PushedIndex {
        let work = super::scratch_dir("fixture-index-");
        let layout_dir = work.path().join("layout");
        run_tool(umoci().args(["init", "--layout"]).arg(&layout_dir));
        let mut manifests = Vec::new();
        for (i, image) in self.images.iter().enumerate() {
            let tag = format!("platform-{i}");
            image.build_into(&layout_dir, &tag, work.path());
            let mut desc = layout::tag_descriptor(&layout_dir, &tag);
            let p = image.effective_platform();
            let mut platform = json!({"architecture": p.architecture, "os": p.os});
            if let Some(v) = p.variant {
                platform["variant"] = json!(v);
            }
            desc["platform"] = platform;
            if let Some(obj) = desc.as_object_mut() {
                obj.remove("annotations");
            }
            manifests.push(desc);
        }
        let mut index = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": manifests,
        });
        if !self.annotations.is_empty() {
            index["annotations"] = self
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        let bytes = serde_json::to_vec(&index).expect("index JSON");
        let desc = layout::write_blob(&layout_dir, media::OCI_INDEX, &bytes);
        layout::set_tag(&layout_dir, &self.tag, desc);
        let digest = skopeo_copy(
            registry,
            &layout_dir,
            &self.tag,
            &self.name,
            &self.tag,
            format,
            true,
            work.path(),
        );
        let resp = registry.get_manifest(&self.name, &digest);
        let served: Value = serde_json::from_slice(&resp.body).expect("index JSON");
        let platforms = served["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .map(|m| PushedPlatform {
                os: m["platform"]["os"].as_str().unwrap_or_default().to_string(),
                architecture: m["platform"]["architecture"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                variant: m["platform"]["variant"].as_str().map(str::to_string),
                digest: m["digest"].as_str().unwrap_or_default().to_string(),
                media_type: m["mediaType"].as_str().unwrap_or_default().to_string(),
            })
            .collect();
        PushedIndex {
            name: self.name.clone(),
            tag: self.tag.clone(),
            reference: registry.reference(&format!("{}:{}", self.name, self.tag)),
            digest,
            media_type: resp.header("Content-Type").unwrap_or_default().to_string(),
            manifest: resp.body,
            platforms,
        }
    }
}

fn umoci() -> Command {
    let mut c = Command::new("umoci");
    c.env("TZ", "UTC");
    c
}

/// `skopeo copy` from an OCI layout to the registry; returns the pushed manifest digest.
#[expect(
    clippy::too_many_arguments,
    reason = "private helper with one caller per kind"
)]
fn skopeo_copy(
    registry: &TestRegistry,
    layout: &Path,
    layout_tag: &str,
    name: &str,
    tag: &str,
    format: Format,
    all: bool,
    work: &Path,
) -> String {
    let digest_file = work.join(format!("digest-{tag}"));
    let mut cmd = Command::new("skopeo");
    cmd.args([
        "--insecure-policy",
        "copy",
        "--quiet",
        "--retry-times=0",
        "--dest-tls-verify=false",
    ]);
    cmd.args([
        "--format",
        match format {
            Format::Oci => "oci",
            Format::DockerV2 => "v2s2",
        },
    ]);
    if all {
        cmd.arg("--all");
    }
    match registry.creds() {
        Some(c) => cmd.arg("--dest-creds").arg(c.colon_joined()),
        None => cmd.arg("--dest-no-creds"),
    };
    cmd.arg("--digestfile").arg(&digest_file);
    cmd.arg(format!("oci:{}:{layout_tag}", layout.display()));
    cmd.arg(format!("docker://{}/{name}:{tag}", registry.host()));
    run_tool(&mut cmd);
    std::fs::read_to_string(&digest_file)
        .expect("skopeo --digestfile")
        .trim()
        .to_string()
}

fn system_time(rfc3339: &str) -> SystemTime {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).expect("RFC 3339 time");
    UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
}

/// Sets mtime and atime of `dir` and everything below it (no symlinks are created here).
fn set_mtimes(dir: &Path, t: SystemTime) {
    let times = std::fs::FileTimes::new().set_accessed(t).set_modified(t);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|ft| ft.is_dir()) {
                set_mtimes(&p, t);
            } else if e.file_type().is_ok_and(|ft| ft.is_file()) {
                let f = std::fs::File::options().write(true).open(&p).expect("open");
                f.set_times(times).expect("set file times");
            }
        }
    }
    let d = std::fs::File::open(dir).expect("open dir");
    d.set_times(times).expect("set dir times");
}

/// Small helpers on an OCI image layout (`index.json` + `blobs/sha256/`).
pub mod layout {
    use super::super::sha256_digest;
    use serde_json::{Value, json};
    use std::path::Path;

    fn read_json(path: &Path) -> Value {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_slice(&bytes).expect("layout JSON")
    }

    pub fn blob(layout: &Path, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        std::fs::read(layout.join("blobs/sha256").join(hex)).expect("read blob")
    }

    /// Writes a blob; returns its descriptor.
    pub fn write_blob(layout: &Path, media_type: &str, bytes: &[u8]) -> Value {
        let digest = sha256_digest(bytes);
        let hex = digest.trim_start_matches("sha256:");
        std::fs::write(layout.join("blobs/sha256").join(hex), bytes).expect("write blob");
        json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
    }

    /// The `index.json` descriptor tagged `tag`.
    pub fn tag_descriptor(layout: &Path, tag: &str) -> Value {
        let index = read_json(&layout.join("index.json"));
        index["manifests"]
            .as_array()
            .and_then(|ms| {
                ms.iter().find(|m| {
                    m["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag)
                })
            })
            .cloned()
            .unwrap_or_else(|| panic!("tag {tag} not in {}", layout.display()))
    }

    /// Points `tag` at `descriptor` in `index.json`.
    pub fn set_tag(layout: &Path, tag: &str, mut descriptor: Value) {
        let path = layout.join("index.json");
        let mut index = read_json(&path);
        let ms = index["manifests"].as_array_mut().expect("manifests");
        ms.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str() != Some(tag));
        descriptor["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        ms.push(descriptor);
        std::fs::write(&path, serde_json::to_vec(&index).expect("JSON")).expect("write index");
    }

    /// Rewrites the config of the image at `tag` (new config and manifest blobs, retagged).
    pub fn patch_config(layout: &Path, tag: &str, edit: impl FnOnce(&mut Value)) {
        let desc = tag_descriptor(layout, tag);
        let mut manifest: Value =
            serde_json::from_slice(&blob(layout, desc["digest"].as_str().expect("digest")))
                .expect("manifest JSON");
        let mut config: Value = serde_json::from_slice(&blob(
            layout,
            manifest["config"]["digest"]
                .as_str()
                .expect("config digest"),
        ))
        .expect("config JSON");
        edit(&mut config);
        let config_media = manifest["config"]["mediaType"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let cdesc = write_blob(
            layout,
            &config_media,
            &serde_json::to_vec(&config).expect("JSON"),
        );
        manifest["config"]["digest"] = cdesc["digest"].clone();
        manifest["config"]["size"] = cdesc["size"].clone();
        let mdesc = write_blob(
            layout,
            desc["mediaType"].as_str().unwrap_or_default(),
            &serde_json::to_vec(&manifest).expect("JSON"),
        );
        set_tag(layout, tag, mdesc);
    }
}
