//! Inherited-label detection.
//!
//! Labels are inherited from the base image, and nothing stops that (label-schema rc1 §1.2).
//! MicroBadger found about 4% of images carrying their base image's name, version or build
//! date, so a page saying "CentOS Base Image, built 2016" for an application built last week.
//! The image config cannot say where a label came from, but three signals make it likely:
//!
//! - **history**: the last `LABEL` step that set the key is followed by a layer built more
//!   than [`InheritOptions::build_gap`] later. Steps of one build run minutes apart; a long
//!   gap means the label step belongs to an earlier build, the base image's;
//! - **stale date**: a build-date / created label more than
//!   [`InheritOptions::stale_after`] older than the config's own `created`;
//! - **base name**: the title / name equals the name of the base image declared in
//!   `org.opencontainers.image.base.name`.
//!
//! Each is a heuristic, so a flag explains itself in plain English and never changes the
//! labels; the compliance score only stops counting a flagged key.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, TimeDelta};
use serde::{Deserialize, Serialize};

use super::keys::*;
use super::validate::{parse_image_ref, parse_rfc3339};
use crate::oci::History;

/// A label that probably describes the base image rather than this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InheritedFlag {
    pub key: String,
    pub value: String,
    /// Why we think so, in plain English.
    pub reason: String,
}

/// Thresholds for [`detect_inherited`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InheritOptions {
    /// A layer built this much later than a `LABEL` step means the step came from an earlier
    /// build. One hour: builds of one Dockerfile run in minutes, while base images are
    /// typically days or months older than their children.
    pub build_gap: TimeDelta,
    /// A date label this much older than the config's `created` is taken as inherited.
    pub stale_after: TimeDelta,
}

impl Default for InheritOptions {
    fn default() -> Self {
        InheritOptions {
            build_gap: TimeDelta::hours(1),
            stale_after: TimeDelta::days(30),
        }
    }
}

/// Find labels that were probably inherited from the base image.
///
/// Only keys in the two metadata namespaces (`org.label-schema.*`,
/// `org.opencontainers.image.*`) are considered: those are the ones that claim to describe
/// *this* image. Annotations are never inherited (they live on the manifest), but
/// `base.name` is read from them too. Flags are ordered by key.
pub fn detect_inherited(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    history: &[History],
    config_created: Option<&str>,
    opts: &InheritOptions,
) -> Vec<InheritedFlag> {
    let mut flags = Vec::new();
    let config_created = config_created.and_then(parse_rfc3339);
    let base_name = labels
        .get(OCI_BASE_NAME)
        .or_else(|| annotations.get(OCI_BASE_NAME))
        .map(|s| s.trim());

    for (key, value) in labels {
        if !(key.starts_with(LS_PREFIX) || key.starts_with(OCI_PREFIX)) {
            continue;
        }
        let mut flag = |reason: String| {
            flags.push(InheritedFlag {
                key: key.clone(),
                value: value.clone(),
                reason,
            });
        };
        if let Some(reason) = history_signal(key, value, history, opts) {
            flag(reason);
        }
        if (key == LS_BUILD_DATE || key == OCI_CREATED)
            && let (Some(label_date), Some(created)) = (parse_rfc3339(value.trim()), config_created)
            && created - label_date > opts.stale_after
        {
            flag(format!(
                "says the image was built on {}, but the image config says it was created on {} ({} days later); the label was most likely inherited from the base image",
                day(&label_date),
                day(&created),
                (created - label_date).num_days()
            ));
        }
        if (key == OCI_TITLE || key == LS_NAME)
            && let Some(reason) = base_name.and_then(|b| base_name_signal(value, b))
        {
            flag(reason);
        }
    }
    flags
}

/// The calendar day of a timestamp, for messages.
fn day(t: &DateTime<FixedOffset>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// Does `created_by` mention `key` as a label being set (followed by `=`, a quote, space, or
/// the end), in a `LABEL` instruction?
fn sets_key(created_by: &str, key: &str) -> bool {
    if !created_by.contains("LABEL") {
        return false;
    }
    created_by.match_indices(key).any(|(i, _)| {
        let before_ok = created_by[..i]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || c == '"' || c == '\'');
        let after = created_by[i + key.len()..].chars().next();
        before_ok && after.is_none_or(|c| c == '=' || c == '"' || c == '\'' || c.is_whitespace())
    })
}

/// Signal (a): the step that set the label is followed by a much later layer.
fn history_signal(
    key: &str,
    value: &str,
    history: &[History],
    opts: &InheritOptions,
) -> Option<String> {
    let (i, step) = history
        .iter()
        .enumerate()
        .rev()
        .find(|(_, h)| h.created_by.as_deref().is_some_and(|c| sets_key(c, key)))?;
    let created_by = step.created_by.as_deref().unwrap_or_default();
    // If the step's text shows neither the current value nor a variable, the value was
    // overridden later by something history does not record (e.g. `buildx --label`), so
    // this step is not where the current value came from.
    let v = value.trim();
    if !v.is_empty() && !created_by.contains(v) && !created_by.contains('$') {
        return None;
    }
    let label_time = step.created.as_deref().and_then(parse_rfc3339)?;
    let latest_layer = history[i + 1..]
        .iter()
        .filter(|h| !h.empty_layer)
        .filter_map(|h| h.created.as_deref().and_then(parse_rfc3339))
        .max()?;
    let gap = latest_layer - label_time;
    (gap > opts.build_gap).then(|| {
        format!(
            "set by a LABEL step from {}, but the image has a layer built on {}, {} later; that LABEL step most likely belongs to the base image's build, so the label describes the base image, not this one",
            day(&label_time),
            day(&latest_layer),
            describe_gap(gap)
        )
    })
}

/// "3 hours", "45 days": coarse, for messages.
fn describe_gap(gap: TimeDelta) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if gap.num_days() >= 1 {
        plural(gap.num_days(), "day")
    } else if gap.num_hours() >= 1 {
        plural(gap.num_hours(), "hour")
    } else {
        plural(gap.num_minutes(), "minute")
    }
}

/// Signal (c): the title equals the declared base image's name.
fn base_name_signal(title: &str, base_name: &str) -> Option<String> {
    let r = parse_image_ref(base_name)?;
    let title = title.trim().to_ascii_lowercase();
    if title.is_empty() {
        return None;
    }
    let last = r.path.rsplit('/').next().unwrap_or(&r.path);
    let full = match &r.host {
        Some(h) => format!("{h}/{}", r.path),
        None => r.path.clone(),
    };
    let same = title == last
        || title == r.path
        || title == full
        || title == base_name.to_ascii_lowercase();
    same.then(|| {
        format!(
            "equals the name of the base image ({base_name}); it most likely describes the base image, not this one"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(created: &str, created_by: &str, empty: bool) -> History {
        History {
            created: Some(created.into()),
            created_by: Some(created_by.into()),
            empty_layer: empty,
            ..History::default()
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// A CentOS-7-like base (labels set in 2016) with an application layer built in 2024.
    fn centos_app() -> (BTreeMap<String, String>, Vec<History>) {
        let labels = map(&[
            (LS_NAME, "CentOS Base Image"),
            (LS_BUILD_DATE, "20161214"),
            (LS_VENDOR, "CentOS"),
            ("org.label-schema.license", "GPLv2"),
        ]);
        let history = vec![
            h(
                "2016-12-14T16:33:49Z",
                "/bin/sh -c #(nop) ADD file:abc in / ",
                false,
            ),
            h(
                "2016-12-14T16:33:51Z",
                "/bin/sh -c #(nop)  LABEL name=CentOS Base Image vendor=CentOS license=GPLv2 build-date=20161214",
                true,
            ),
            h(
                "2016-12-14T16:33:52Z",
                "/bin/sh -c #(nop)  LABEL org.label-schema.schema-version=1.0 org.label-schema.name=CentOS Base Image org.label-schema.vendor=CentOS org.label-schema.license=GPLv2 org.label-schema.build-date=20161214",
                true,
            ),
            h(
                r#"2016-12-14T16:33:53Z"#,
                r#"/bin/sh -c #(nop)  CMD ["/bin/bash"]"#,
                true,
            ),
            h(
                "2024-03-01T10:00:00Z",
                "/bin/sh -c yum install -y httpd",
                false,
            ),
            h(
                "2024-03-01T10:01:00Z",
                "/bin/sh -c #(nop) COPY dir:x in /var/www",
                false,
            ),
        ];
        (labels, history)
    }

    #[test]
    fn centos_base_labels_under_2024_app_are_flagged() {
        let (labels, history) = centos_app();
        let flags = detect_inherited(
            &labels,
            &BTreeMap::new(),
            &history,
            Some("2024-03-01T10:01:00Z"),
            &InheritOptions::default(),
        );
        let keys: Vec<&str> = flags.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                LS_BUILD_DATE,
                "org.label-schema.license",
                LS_NAME,
                LS_VENDOR
            ]
        );
        let name = flags.iter().find(|f| f.key == LS_NAME).unwrap();
        assert_eq!(name.value, "CentOS Base Image");
        assert_eq!(
            name.reason,
            "set by a LABEL step from 2016-12-14, but the image has a layer built on 2024-03-01, 2633 days later; that LABEL step most likely belongs to the base image's build, so the label describes the base image, not this one"
        );
    }

    #[test]
    fn own_last_step_labels_are_not_flagged() {
        let (mut labels, mut history) = centos_app();
        labels.insert(LS_NAME.into(), "My Web App".into());
        labels.insert(OCI_TITLE.into(), "My Web App".into());
        history.push(h(
            "2024-03-01T10:01:05Z",
            r#"LABEL org.label-schema.name="My Web App" org.opencontainers.image.title="My Web App""#,
            true,
        ));
        let flags = detect_inherited(
            &labels,
            &BTreeMap::new(),
            &history,
            Some("2024-03-01T10:01:05Z"),
            &InheritOptions::default(),
        );
        assert!(
            flags.iter().all(|f| f.key != LS_NAME && f.key != OCI_TITLE),
            "{flags:?}"
        );
        // The vendor label was not overridden, so it is still flagged.
        assert!(flags.iter().any(|f| f.key == LS_VENDOR));
    }

    #[test]
    fn label_then_layers_within_one_build_is_not_flagged() {
        let labels = map(&[(OCI_TITLE, "app")]);
        let history = vec![
            h("2024-03-01T10:00:00Z", "ADD rootfs.tar / # buildkit", false),
            h(
                "2024-03-01T10:00:01Z",
                "LABEL org.opencontainers.image.title=app",
                true,
            ),
            h(
                "2024-03-01T10:20:00Z",
                "RUN /bin/sh -c make # buildkit",
                false,
            ),
        ];
        let flags = detect_inherited(
            &labels,
            &BTreeMap::new(),
            &history,
            None,
            &InheritOptions::default(),
        );
        assert!(flags.is_empty(), "{flags:?}");
        // With a tighter gap the same history is flagged: the threshold is honoured.
        let tight = InheritOptions {
            build_gap: TimeDelta::minutes(5),
            ..InheritOptions::default()
        };
        assert_eq!(
            detect_inherited(&labels, &BTreeMap::new(), &history, None, &tight).len(),
            1
        );
    }

    #[test]
    fn label_overridden_outside_history_is_not_flagged() {
        // The base set title=base; the child passed `--label title=child`, which history does
        // not record.
        let labels = map(&[(OCI_TITLE, "child")]);
        let history = vec![
            h(
                "2020-01-01T00:00:00Z",
                "LABEL org.opencontainers.image.title=base",
                true,
            ),
            h(
                "2024-01-01T00:00:00Z",
                "RUN /bin/sh -c make # buildkit",
                false,
            ),
        ];
        let flags = detect_inherited(
            &labels,
            &BTreeMap::new(),
            &history,
            None,
            &InheritOptions::default(),
        );
        assert!(flags.is_empty(), "{flags:?}");
    }

    #[test]
    fn stale_build_date_is_flagged() {
        let labels = map(&[
            (OCI_CREATED, "2016-04-12T23:20:50.52Z"),
            (LS_BUILD_DATE, "2024-02-20T00:00:00Z"),
        ]);
        let flags = detect_inherited(
            &labels,
            &BTreeMap::new(),
            &[],
            Some("2024-03-01T00:00:00Z"),
            &InheritOptions::default(),
        );
        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].key, OCI_CREATED);
        assert_eq!(
            flags[0].reason,
            "says the image was built on 2016-04-12, but the image config says it was created on 2024-03-01 (2879 days later); the label was most likely inherited from the base image"
        );
        // A reproducible build with created = epoch never flags a newer label.
        let flags = detect_inherited(
            &labels,
            &BTreeMap::new(),
            &[],
            Some("1970-01-01T00:00:00Z"),
            &InheritOptions::default(),
        );
        assert!(flags.is_empty());
    }

    #[test]
    fn title_equal_to_base_name_is_flagged() {
        let labels = map(&[(OCI_TITLE, "Alpine"), (LS_NAME, "my-app")]);
        let ann = map(&[(OCI_BASE_NAME, "docker.io/library/alpine:3.19")]);
        let flags = detect_inherited(&labels, &ann, &[], None, &InheritOptions::default());
        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].key, OCI_TITLE);
        assert_eq!(
            flags[0].reason,
            "equals the name of the base image (docker.io/library/alpine:3.19); it most likely describes the base image, not this one"
        );
    }

    #[test]
    fn odd_input_does_not_panic() {
        let labels = map(&[(OCI_TITLE, ""), (LS_BUILD_DATE, "é"), (OCI_CREATED, "")]);
        let ann = map(&[(OCI_BASE_NAME, "💥")]);
        let history = vec![
            h("not a date", "LABEL org.opencontainers.image.title=", true),
            History::default(),
            h(
                "2024-01-01T00:00:00Z",
                "é LABEL org.opencontainers.image.titleé",
                false,
            ),
        ];
        let _ = detect_inherited(
            &labels,
            &ann,
            &history,
            Some("garbage"),
            &InheritOptions::default(),
        );
        assert!(sets_key(
            "LABEL \"org.opencontainers.image.title\"=x",
            OCI_TITLE
        ));
        assert!(!sets_key(
            "LABEL org.opencontainers.image.title.extra=x",
            OCI_TITLE
        ));
        assert!(!sets_key(
            "RUN echo org.opencontainers.image.title=x",
            "other"
        ));
    }
}
