//! End-to-end tests of [`inspect_image`] and [`inspect_schema1`] on inline JSON fixtures.

use super::*;
use crate::oci::Schema1Manifest;

const MANIFEST: &str = r#"{
  "schemaVersion": 2,
  "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
  "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1234,
             "digest": "sha256:cfg"},
  "layers": [
    {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 2000, "digest": "sha256:l1"},
    {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 300, "digest": "sha256:l2"},
    {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 45, "digest": "sha256:l3"}
  ],
  "annotations": {"org.opencontainers.image.vendor": "Manifest Vendor", "shared": "manifest"}
}"#;

const CONFIG: &str = r#"{
  "architecture": "arm64", "os": "linux", "variant": "v8",
  "created": "2024-03-01T10:01:05Z",
  "author": "Someone <someone@example.com>",
  "config": {
    "Env": ["PATH=/usr/bin", "DB_PASSWORD=hunter2"],
    "ExposedPorts": {"8080/tcp": {}, "443/tcp": {}, "53/udp": {}, "80/tcp": {}},
    "Entrypoint": ["/entrypoint.sh"],
    "Cmd": ["serve"],
    "User": "app",
    "WorkingDir": "/srv",
    "Volumes": {"/data": {}},
    "Labels": {
      "org.opencontainers.image.title": "web",
      "org.opencontainers.image.source": "git@github.com:acme/web.git",
      "org.opencontainers.image.revision": "0123abc",
      "org.opencontainers.image.licenses": "apache-2.0",
      "org.opencontainers.image.created": "2024-03-01T10:01:00Z",
      "org.label-schema.name": "web-ls",
      "org.label-schema.version": "2.1.0"
    }
  },
  "rootfs": {"type": "layers", "diff_ids": ["sha256:d1", "sha256:d2", "sha256:d3"]},
  "history": [
    {"created": "2024-02-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
    {"created": "2024-02-01T00:00:01Z", "created_by": "/bin/sh -c #(nop)  CMD [\"sh\"]", "empty_layer": true},
    {"created": "2024-03-01T10:00:00Z", "created_by": "RUN /bin/sh -c apk add curl # buildkit"},
    {"created": "2024-03-01T10:00:30Z", "created_by": "ENV DB_PASSWORD=hunter2", "empty_layer": true},
    {"created": "2024-03-01T10:01:00Z", "created_by": "COPY app /srv # buildkit"},
    {"created": "2024-03-01T10:01:05Z", "created_by": "LABEL org.opencontainers.image.title=web", "empty_layer": true}
  ]
}"#;

fn inspect_fixture(
    manifest: &str,
    config: &str,
    index_annotations: Option<&BTreeMap<String, String>>,
) -> ImageVersion {
    let manifest: OciImageManifest = serde_json::from_str(manifest).unwrap();
    let config: ImageConfig = serde_json::from_str(config).unwrap();
    inspect_image(&ImageInput {
        manifest_digest: "sha256:manifest",
        media_type: crate::oci::DOCKER_MANIFEST_V2,
        manifest: &manifest,
        config: &config,
        index_annotations,
    })
}

#[test]
fn full_image() {
    let index: BTreeMap<String, String> = [
        ("shared".to_owned(), "index".to_owned()),
        (
            "org.opencontainers.image.url".to_owned(),
            "https://acme.example".to_owned(),
        ),
    ]
    .into();
    let v = inspect_fixture(MANIFEST, CONFIG, Some(&index));
    assert_eq!(v.digest, "sha256:manifest");
    assert_eq!(v.config_digest.as_deref(), Some("sha256:cfg"));
    assert_eq!(v.platform.as_ref().unwrap().to_string(), "linux/arm64/v8");
    assert_eq!(v.layer_count, 3);
    assert_eq!(v.download_size, 2345);
    assert_eq!(v.env_count, 2);
    assert_eq!(
        v.exposed_ports,
        vec!["53/udp", "80/tcp", "443/tcp", "8080/tcp"]
    );
    assert_eq!(v.entrypoint, vec!["/entrypoint.sh"]);
    assert_eq!(v.cmd, vec!["serve"]);
    assert_eq!(v.user.as_deref(), Some("app"));
    assert_eq!(v.volumes, vec!["/data"]);
    assert!(!v.legacy_schema1);
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);

    let cmds: Vec<Option<&str>> = v.layers.iter().map(|l| l.command.as_deref()).collect();
    assert_eq!(
        cmds,
        vec![
            Some("ADD file:abc in /"),
            Some("RUN apk add curl"),
            Some("COPY app /srv")
        ]
    );
    assert_eq!(v.layers[1].created.as_deref(), Some("2024-03-01T10:00:00Z"));
    assert_eq!(v.layers[2].diff_id.as_deref(), Some("sha256:d3"));
    assert_eq!(v.layers[0].size, 2000);

    // Annotations: the manifest wins over the index.
    assert_eq!(v.annotations["shared"], "manifest");
    assert_eq!(
        v.annotations["org.opencontainers.image.url"],
        "https://acme.example"
    );

    let d = &v.derived;
    assert_eq!(d.name.as_deref(), Some("web"));
    assert_eq!(d.version.as_deref(), Some("2.1.0"));
    assert_eq!(d.source.as_deref(), Some("https://github.com/acme/web"));
    assert_eq!(
        d.commit_url.as_deref(),
        Some("https://github.com/acme/web/tree/0123abc")
    );
    assert_eq!(d.vendor.as_deref(), Some("Manifest Vendor"));
    assert_eq!(d.url.as_deref(), Some("https://acme.example"));
    assert_eq!(d.sources["url"].origin, Origin::Annotation);
    assert_eq!(d.authors.as_deref(), Some("Someone <someone@example.com>"));
    let lic = d.license.as_ref().unwrap();
    assert!(lic.valid);
    assert_eq!(lic.canonical.as_deref(), Some("Apache-2.0"));
    assert_eq!(d.build_date.as_deref(), Some("2024-03-01T10:01:00Z"));

    // OCI: title, source (scp form is not a URL: invalid), revision, licences, created,
    // version? no; vendor and url from annotations; description missing.
    let c = &v.compliance;
    assert_eq!(
        c.oci
            .keys
            .iter()
            .find(|k| k.key == keys::OCI_SOURCE)
            .unwrap()
            .status,
        KeyStatus::Invalid
    );
    assert_eq!(c.oci.score, 67); // 6 of 9
    assert!(c.inherited.is_empty(), "{:?}", c.inherited);
    // Concepts: title, created, source (label-schema has none, OCI invalid -> no), revision,
    // version (label-schema), vendor, url, licence = 7 of 9.
    assert_eq!(c.score, 78);
}

#[test]
fn env_values_are_never_serialised() {
    let v = inspect_fixture(MANIFEST, CONFIG, None);
    let json = serde_json::to_string(&v).unwrap();
    // The history step `ENV DB_PASSWORD=hunter2` made no layer, so it is not shown either.
    assert!(!json.contains("hunter2"), "{json}");
    assert!(json.contains("\"EnvCount\":2"));
    assert!(json.contains("\"LayerCount\":3"));
    assert!(json.contains("\"DownloadSize\":2345"));
    let back: ImageVersion = serde_json::from_str(&json).unwrap();
    assert_eq!(back, v);
}

#[test]
fn history_layer_mismatch_warns_and_omits_commands() {
    let config = CONFIG.replace(
        r#"{"created": "2024-03-01T10:01:00Z", "created_by": "COPY app /srv # buildkit"},"#,
        "",
    );
    let v = inspect_fixture(MANIFEST, &config, None);
    assert!(v.layers.iter().all(|l| l.command.is_none()));
    assert_eq!(
        v.warnings,
        vec![
            "history lists 2 layer-creating steps but the manifest has 3 layers; layer commands are not shown"
        ]
    );
}

#[test]
fn container_config_labels_are_a_fallback_only() {
    let config = r#"{"architecture":"amd64","os":"linux",
        "config":{"Labels":null},
        "container_config":{"Labels":{"org.label-schema.name":"from-cc"}}}"#;
    let manifest = r#"{"schemaVersion":2,"config":{"mediaType":"x","size":1,"digest":"sha256:c"},"layers":[]}"#;
    let v = inspect_fixture(manifest, config, None);
    assert_eq!(v.labels["org.label-schema.name"], "from-cc");
    assert!(v.warnings.iter().any(|w| w.contains("container_config")));

    let config =
        r#"{"config":{"Labels":{"a":"config"}},"container_config":{"Labels":{"a":"cc","b":"x"}}}"#;
    let v = inspect_fixture(manifest, config, None);
    assert_eq!(v.labels.len(), 1);
    assert_eq!(v.labels["a"], "config");
    assert_eq!(v.platform, None);
}

#[test]
fn odd_configs_give_warnings_not_panics() {
    let manifest = r#"{"schemaVersion":2,"config":{"mediaType":"x","size":1,"digest":""},
        "layers":[{"mediaType":"x","size":-5,"digest":"sha256:a"}]}"#;
    let config = r#"{"created":"yesterday\n","os":"","architecture":"amd64",
        "rootfs":{"type":"layers","diff_ids":["sha256:1","sha256:2"]},
        "config":{"ExposedPorts":{"http":{},"80/tcp":{},"":{}},
        "Labels":{"org.opencontainers.image.title":"\u0000💥\u202e","":"", "org.label-schema.build-date":"é"}}}"#;
    let v = inspect_fixture(manifest, config, None);
    assert_eq!(v.config_digest, None);
    assert_eq!(v.platform, None);
    assert_eq!(v.download_size, 0);
    assert_eq!(v.exposed_ports, vec!["80/tcp", "", "http"]);
    assert_eq!(v.layers[0].diff_id, None);
    assert_eq!(v.warnings.len(), 3, "{:?}", v.warnings);
    assert!(v.warnings.iter().any(|w| w.contains("diff IDs")));
    assert!(v.warnings.iter().any(|w| w.contains("negative")));
    assert!(
        v.warnings
            .iter()
            .any(|w| w == "the config's created date `yesterday\\n` is not RFC 3339")
    );
}

#[test]
fn huge_label_values_do_not_panic() {
    let big = "é".repeat(200_000);
    let config = format!(
        r#"{{"config":{{"Labels":{{"org.opencontainers.image.title":"{big}","org.opencontainers.image.licenses":"{big}","org.label-schema.description":"{big}","org.opencontainers.image.source":"https://github.com/{big}"}}}}}}"#
    );
    let manifest = r#"{"schemaVersion":2,"config":{"mediaType":"x","size":1,"digest":"sha256:c"},"layers":[]}"#;
    let v = inspect_fixture(manifest, &config, None);
    assert_eq!(v.derived.name.as_deref().map(str::len), Some(big.len()));
    assert!(!v.derived.license.unwrap().valid);
}

fn schema1(history: &[&str], layers: &[&str]) -> Schema1Manifest {
    let value = serde_json::json!({
        "schemaVersion": 1,
        "name": "library/hello",
        "tag": "latest",
        "architecture": "amd64",
        "fsLayers": layers.iter().map(|b| serde_json::json!({"blobSum": b})).collect::<Vec<_>>(),
        "history": history.iter().map(|h| serde_json::json!({"v1Compatibility": h})).collect::<Vec<_>>(),
    });
    serde_json::from_value(value).unwrap()
}

const V1_TOP: &str = r##"{"id":"top","parent":"base","created":"2017-01-01T00:00:05Z","author":"Jane",
    "os":"linux","architecture":"amd64",
    "config":{"Cmd":["/hello"],"Labels":{"org.label-schema.name":"hello","org.label-schema.vcs-url":"https://github.com/o/hello","org.label-schema.vcs-ref":"abc"}},
    "container_config":{"Cmd":["/bin/sh","-c","#(nop) ","CMD [\"/hello\"]"]},"throwaway":true}"##;
const V1_BASE: &str = r##"{"id":"base","created":"2017-01-01T00:00:00Z",
    "container_config":{"Cmd":["/bin/sh","-c","#(nop) COPY file:abc in / "]}}"##;

#[test]
fn schema1_reads_labels_and_commands() {
    let m = schema1(&[V1_TOP, V1_BASE], &["sha256:empty", "sha256:hello"]);
    let v = inspect_schema1("sha256:m", crate::oci::DOCKER_MANIFEST_V1_SIGNED, &m);
    assert!(v.legacy_schema1);
    assert_eq!(v.labels["org.label-schema.name"], "hello");
    assert_eq!(v.created.as_deref(), Some("2017-01-01T00:00:05Z"));
    assert_eq!(v.author.as_deref(), Some("Jane"));
    assert_eq!(v.platform.as_ref().unwrap().to_string(), "linux/amd64");
    assert_eq!(v.layer_count, 2);
    assert_eq!(v.layers[0].digest, "sha256:hello");
    assert_eq!(v.layers[0].command.as_deref(), Some("COPY file:abc in /"));
    assert_eq!(v.layers[1].command.as_deref(), Some(r#"CMD ["/hello"]"#));
    assert_eq!(v.download_size, 0);
    assert_eq!(v.cmd, vec!["/hello"]);
    assert_eq!(v.warnings, vec!["legacy schema 1: sizes unknown"]);
    assert_eq!(
        v.derived.commit_url.as_deref(),
        Some("https://github.com/o/hello/tree/abc")
    );
    assert_eq!(v.config_digest, None);
}

#[test]
fn schema1_survives_garbage() {
    for garbage in [
        "",
        "not json",
        "[]",
        "null",
        "42",
        "{\"config\":[1,2]}",
        "{\"config\":{\"Labels\":[\"x\"]}}",
    ] {
        let m = schema1(&[garbage, V1_BASE], &["sha256:a", "sha256:b"]);
        let v = inspect_schema1("sha256:m", crate::oci::DOCKER_MANIFEST_V1, &m);
        assert!(v.labels.is_empty(), "{garbage:?}");
        assert_eq!(v.layer_count, 2);
        assert_eq!(v.layers[0].command.as_deref(), Some("COPY file:abc in /"));
    }
    let m = schema1(&["not json"], &["sha256:a"]);
    let v = inspect_schema1("sha256:m", crate::oci::DOCKER_MANIFEST_V1, &m);
    assert!(
        v.warnings
            .iter()
            .any(|w| w == "1 of 1 schema-1 history entries have an unreadable v1Compatibility")
    );
    // Platform from the manifest even when the config is unreadable.
    assert_eq!(v.platform.unwrap().to_string(), "linux/amd64");

    // Odd but readable: a string Cmd and a numeric label keep the rest.
    let odd = r#"{"config":{"Cmd":"/run.sh","Labels":{"org.label-schema.name":"odd","n":5}}}"#;
    let m = schema1(&[odd], &["sha256:a"]);
    let v = inspect_schema1("sha256:m", crate::oci::DOCKER_MANIFEST_V1, &m);
    assert_eq!(v.labels.len(), 1);
    assert_eq!(v.labels["org.label-schema.name"], "odd");
    assert_eq!(v.cmd, vec!["/run.sh"]);

    // Mismatched arrays: layers are kept, commands are not guessed.
    let m = schema1(&[V1_TOP], &["sha256:a", "sha256:b"]);
    let v = inspect_schema1("sha256:m", crate::oci::DOCKER_MANIFEST_V1, &m);
    assert_eq!(v.layer_count, 2);
    assert!(v.layers.iter().all(|l| l.command.is_none()));
    assert!(v.warnings.iter().any(|w| w.contains("fsLayers")));

    let v = inspect_schema1(
        "sha256:m",
        crate::oci::DOCKER_MANIFEST_V1,
        &Schema1Manifest::default(),
    );
    assert_eq!(v.layer_count, 0);
    assert_eq!(v.platform, None);
}

#[test]
fn schema1_inherited_labels_are_flagged_from_v1_history() {
    let base_label = r##"{"id":"b2","created":"2016-12-14T16:33:52Z",
        "container_config":{"Cmd":["/bin/sh","-c","#(nop) ","LABEL org.label-schema.name=CentOS Base Image"]},"throwaway":true}"##;
    let app = r#"{"id":"top","created":"2024-03-01T10:00:00Z",
        "config":{"Labels":{"org.label-schema.name":"CentOS Base Image"}},
        "container_config":{"Cmd":["/bin/sh","-c","yum install -y httpd"]}}"#;
    let m = schema1(
        &[app, base_label, V1_BASE],
        &["sha256:app", "sha256:empty", "sha256:base"],
    );
    let v = inspect_schema1("sha256:m", crate::oci::DOCKER_MANIFEST_V1, &m);
    assert_eq!(v.compliance.inherited.len(), 1);
    assert_eq!(v.compliance.inherited[0].key, "org.label-schema.name");
    assert_eq!(
        v.layers[2].command.as_deref(),
        Some("RUN yum install -y httpd")
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Keys the engine treats specially, plus arbitrary ones.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(keys::OCI_TITLE.to_owned()),
            Just(keys::OCI_SOURCE.to_owned()),
            Just(keys::OCI_REVISION.to_owned()),
            Just(keys::OCI_LICENSES.to_owned()),
            Just(keys::OCI_CREATED.to_owned()),
            Just(keys::OCI_BASE_NAME.to_owned()),
            Just(keys::LS_NAME.to_owned()),
            Just(keys::LS_VCS_URL.to_owned()),
            Just(keys::LS_BUILD_DATE.to_owned()),
            Just(keys::LS_LICENSE.to_owned()),
            "org\\.label-schema\\.[ -~]{0,12}",
            "org\\.opencontainers\\.image\\.[ -~]{0,12}",
            any::<String>(),
        ]
    }

    proptest! {
        /// Any labels, annotations and history: no panic, and every generated fix line is one
        /// line without control characters.
        #[test]
        fn never_panics_and_fix_lines_stay_single_line(
            labels in proptest::collection::btree_map(key(), any::<String>(), 0..12),
            annotations in proptest::collection::btree_map(key(), any::<String>(), 0..4),
            history in proptest::collection::vec((any::<String>(), any::<bool>(), any::<Option<String>>()), 0..6),
            created in any::<Option<String>>(),
        ) {
            let config = ImageConfig {
                created,
                config: Some(RuntimeConfig { labels, ..RuntimeConfig::default() }),
                history: history
                    .into_iter()
                    .map(|(by, empty, created)| History {
                        created_by: Some(by),
                        empty_layer: empty,
                        created,
                        ..History::default()
                    })
                    .collect(),
                ..ImageConfig::default()
            };
            let manifest = OciImageManifest {
                annotations: Some(annotations),
                ..OciImageManifest::default()
            };
            let v = inspect_image(&ImageInput {
                manifest_digest: "sha256:x",
                media_type: crate::oci::OCI_MANIFEST,
                manifest: &manifest,
                config: &config,
                index_annotations: None,
            });
            for report in [&v.compliance.label_schema, &v.compliance.oci] {
                for line in report.fix.dockerfile.iter().chain(&report.fix.buildx) {
                    prop_assert!(!line.chars().any(char::is_control), "{line:?}");
                }
            }
            if let Some(u) = &v.derived.source {
                prop_assert!(u.starts_with("https://") || u.starts_with("http://"));
            }
            if let Some(u) = &v.derived.url {
                prop_assert!(u.starts_with("https://") || u.starts_with("http://"));
            }
        }

        #[test]
        fn license_and_commands_never_panic(s in any::<String>()) {
            let _ = parse_license(&s);
            let _ = clean_command(&s);
            let _ = s.parse::<Platform>();
        }
    }
}
