//! One `*Page` struct per page, each rendering one template in `templates/` (grouped by area:
//! `core/` for the site's own pages, `image/` for image pages). All of them extend
//! `templates/base.html`, which reads the shared [`Chrome`].

use askama::Template;

use super::api_doc::ApiDoc;
use super::assets;
use super::view::{ImageDetail, SearchRow, SummaryRow};

/// What every page's frame needs.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// The `<title>`, before " · MicroBadger".
    pub title: String,
    /// The search box's text.
    pub query: String,
    pub css: &'static str,
    pub js: &'static str,
    pub favicon: &'static str,
}

impl Chrome {
    pub fn new(title: impl Into<String>) -> Chrome {
        Chrome {
            title: title.into(),
            query: String::new(),
            css: assets::url("app.css"),
            js: assets::url("app.js"),
            favicon: assets::url("favicon.svg"),
        }
    }
}

/// `/`: search, recently changed images, best-labelled images.
#[derive(Template)]
#[template(path = "core/home.html")]
pub struct HomePage {
    pub chrome: Chrome,
    pub recent: Vec<SummaryRow>,
    pub best: Vec<SummaryRow>,
    pub known: i64,
}

/// `/search?q=`.
#[derive(Template)]
#[template(path = "core/search.html")]
pub struct SearchPage {
    pub chrome: Chrome,
    pub query: String,
    pub results: Vec<SearchRow>,
    /// More results exist than are listed.
    pub more: bool,
    /// The query read as an image name: a link to look it up directly.
    pub direct: Option<(String, String)>,
}

/// `/api`: the OpenAPI document as a page, plus the badge URLs (which it does not cover).
#[derive(Template)]
#[template(path = "core/api.html")]
pub struct ApiPage {
    pub chrome: Chrome,
    pub spec_href: &'static str,
    pub doc: ApiDoc,
    pub badge_kinds: Vec<(&'static str, &'static str)>,
    /// An example badge URL on the public base URL.
    pub badge_example: String,
}

/// Any error: status, a heading and the (escaped) message.
#[derive(Template)]
#[template(path = "core/error.html")]
pub struct ErrorPage {
    pub chrome: Chrome,
    pub status: u16,
    pub heading: &'static str,
    pub message: String,
}

/// `/images/{image}[:tag]`.
#[derive(Template)]
#[template(path = "image/image.html")]
pub struct ImagePage {
    pub chrome: Chrome,
    pub d: ImageDetail,
}

/// `/images/{image}/version/{digest}`.
#[derive(Template)]
#[template(path = "image/version.html")]
pub struct VersionPage {
    pub chrome: Chrome,
    pub d: ImageDetail,
}

/// An image being inspected: refreshes itself until the image page is ready.
#[derive(Template)]
#[template(path = "image/inspecting.html")]
pub struct InspectingPage {
    pub chrome: Chrome,
    /// `nginx:1.27`.
    pub name: String,
    pub page_href: String,
    /// Answers 202 while inspecting, 200 once the page is ready (see `pages::poll`).
    pub poll_href: String,
}
