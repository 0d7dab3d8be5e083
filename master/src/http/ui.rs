//! The web UI's static files, embedded in the binary (`ui/`: one page of vanilla JavaScript,
//! no build step, nothing fetched from outside the master): `/` answers `index.html`,
//! `/ui/{file}` the script, the stylesheet and the icon. They need no token: they hold no
//! cluster data; the page asks `/api/v1/` for it with the token the user signs in with, and
//! those endpoints decide.
//!
//! Every answer carries a strict `Content-Security-Policy`: scripts, styles, images and
//! requests only from the master itself, no inline script or style (the page sets styles only
//! through the CSSOM), no framing. The page is revalidated on each load (`no-cache`), so an
//! upgraded master serves its own script at once; the assets are small.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The policy every UI answer carries.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file: its name under `/ui/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("ui/index.html"),
};

const ASSETS: &[Asset] = &[
    INDEX,
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("ui/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("ui/app.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("ui/favicon.svg"),
    },
];

fn serve(asset: &Asset) -> Response {
    let mut r = ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// `GET /`: the page.
pub async fn index() -> Response {
    serve(&INDEX)
}

/// `GET /ui/{file}`: an embedded file, or 404.
pub async fn file(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => serve(a),
        None => {
            let mut r = ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("the UI has no file {name:?}; open / for the UI"),
            )
            .into_response();
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            );
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_embedded_files_and_has_no_inline_script_or_style() {
        let page = std::str::from_utf8(INDEX.body).unwrap();
        for part in page.split("/ui/").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                .collect();
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "index.html links /ui/{name}, which is not embedded"
            );
        }
        assert!(!page.contains("<script>"), "inline script breaks the CSP");
        assert!(!page.contains("style="), "inline style breaks the CSP");
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
