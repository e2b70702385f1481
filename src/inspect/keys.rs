//! Label and annotation key names, so that a typo is a compile error rather than a silently
//! missing field.

/// Prefix of every label-schema rc1 key.
pub const LS_PREFIX: &str = "org.label-schema.";
/// Prefix of the OCI image-spec pre-defined annotation keys.
pub const OCI_PREFIX: &str = "org.opencontainers.image.";

pub const LS_BUILD_DATE: &str = "org.label-schema.build-date";
pub const LS_NAME: &str = "org.label-schema.name";
pub const LS_DESCRIPTION: &str = "org.label-schema.description";
pub const LS_USAGE: &str = "org.label-schema.usage";
pub const LS_URL: &str = "org.label-schema.url";
pub const LS_VCS_URL: &str = "org.label-schema.vcs-url";
pub const LS_VCS_REF: &str = "org.label-schema.vcs-ref";
pub const LS_VENDOR: &str = "org.label-schema.vendor";
pub const LS_VERSION: &str = "org.label-schema.version";
pub const LS_SCHEMA_VERSION: &str = "org.label-schema.schema-version";
/// Not in rc1, but widely used (and read by the original MicroBadger).
pub const LS_LICENSE: &str = "org.label-schema.license";

pub const OCI_CREATED: &str = "org.opencontainers.image.created";
pub const OCI_AUTHORS: &str = "org.opencontainers.image.authors";
pub const OCI_URL: &str = "org.opencontainers.image.url";
pub const OCI_DOCUMENTATION: &str = "org.opencontainers.image.documentation";
pub const OCI_SOURCE: &str = "org.opencontainers.image.source";
pub const OCI_VERSION: &str = "org.opencontainers.image.version";
pub const OCI_REVISION: &str = "org.opencontainers.image.revision";
pub const OCI_VENDOR: &str = "org.opencontainers.image.vendor";
pub const OCI_LICENSES: &str = "org.opencontainers.image.licenses";
pub const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const OCI_TITLE: &str = "org.opencontainers.image.title";
pub const OCI_DESCRIPTION: &str = "org.opencontainers.image.description";
pub const OCI_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
pub const OCI_BASE_NAME: &str = "org.opencontainers.image.base.name";

/// The label Docker recommends in place of the deprecated `MAINTAINER` instruction.
pub const MAINTAINER: &str = "maintainer";
