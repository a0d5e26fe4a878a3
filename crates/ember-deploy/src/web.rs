//! What the daemons' web UIs share: binding, serving until shutdown, and HTML helpers.
//!
//! Spark counterpart: `WebUI` / `UIUtils`. Pages are rendered on the server as plain HTML with a
//! little inline CSS: no scripts, no build step.

use std::fmt::Write as _;

use axum::Router;
use axum::response::Html;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::error::DeployError;

/// Binds a web server's listener; port 0 picks a free port.
pub async fn bind(what: &'static str, host: &str, port: u16) -> Result<TcpListener, DeployError> {
    TcpListener::bind((host, port))
        .await
        .map_err(|source| DeployError::Bind {
            what,
            address: format!("{host}:{port}"),
            source,
        })
}

/// Serves `router` on `listener` until `shutdown` is cancelled. Returns the serving task.
pub fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            warn!(error = %e, "web server stopped");
        }
    })
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.5em}\
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
th{background:#f3f3f3}ul.summary{list-style:none;padding:0}ul.summary li{margin:.15em 0}\
.state-ALIVE,.state-RUNNING{color:#16702e}.state-DEAD,.state-FAILED,.state-LOST,.state-ERROR{color:#b00020}";

/// A whole page: `title` in the head and as the heading, `body` already HTML.
pub fn page(title: &str, body: &str) -> Html<String> {
    let title = escape(title);
    Html(format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>{STYLE}</style></head><body><h1>{title}</h1>{body}</body></html>"
    ))
}

/// Whether `url` is an absolute `http://` or `https://` URL (scheme in any case, a host after
/// it, no whitespace or control characters).
pub fn is_http_url(url: &str) -> bool {
    let rest = ["http://", "https://"].iter().find_map(|scheme| {
        url.get(..scheme.len())
            .filter(|head| head.eq_ignore_ascii_case(scheme))
            .map(|_| &url[scheme.len()..])
    });
    rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A link to `href` showing `text`, both escaped, when `href` is an [`is_http_url`]; else `text`
/// alone. For URLs that peers supply (a worker's web UI, an application's UI): a `javascript:`
/// or `data:` URL in a link would run in the web UI's origin when clicked.
pub fn external_link(href: &str, text: &str) -> String {
    if is_http_url(href) {
        format!("<a href=\"{}\">{}</a>", escape(href), escape(text))
    } else {
        escape(text)
    }
}

/// An HTML table; cells are already HTML (escape text with [`escape`]).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// Memory in MiB as Spark's UI shows it: `512.0 MiB`, `4.0 GiB`.
pub fn format_mb(mb: u64) -> String {
    if mb >= 1024 {
        format!("{:.1} GiB", mb as f64 / 1024.0)
    } else {
        format!("{mb}.0 MiB")
    }
}

/// A duration in milliseconds for humans: `850 ms`, `12 s`, `3.5 min`, `2.0 h`.
pub fn format_duration_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{} s", ms / 1000),
        60_000..3_600_000 => format!("{:.1} min", ms as f64 / 60_000.0),
        _ => format!("{:.1} h", ms as f64 / 3_600_000.0),
    }
}

/// A Unix time in milliseconds as `2026/11/21 12:21:47` (UTC).
pub fn format_time_ms(unix_millis: u64) -> String {
    let (y, mo, d, h, mi, s) = crate::ids::civil_from_unix(unix_millis / 1000);
    format!("{y:04}/{mo:02}/{d:02} {h:02}:{mi:02}:{s:02}")
}

/// The object keys of a JSON document, in the order the text has them (nested objects included,
/// depth first): what a test compares to see fields written in Spark's order, which a parsed
/// `serde_json::Value` forgets.
#[cfg(test)]
pub(crate) fn json_keys_in_order(text: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut string = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => string.extend(chars.next()),
                '"' => break,
                c => string.push(c),
            }
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek() == Some(&':') {
            keys.push(string);
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_formats() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(format_mb(512), "512.0 MiB");
        assert_eq!(format_mb(4096), "4.0 GiB");
        assert_eq!(format_duration_ms(90_000), "1.5 min");
        assert_eq!(format_time_ms(1_795_263_707_520), "2026/11/21 12:21:47");
    }

    #[test]
    fn json_keys_come_in_text_order() {
        let text = r#"{ "b" : 1, "a": {"z":"x:\"y\"", "y" : [ {"k": ":"} ]}, "c" :"" }"#;
        assert_eq!(json_keys_in_order(text), ["b", "a", "z", "y", "k", "c"]);
    }

    #[test]
    fn only_http_urls_become_links() {
        for url in [
            "http://10.0.0.1:8081",
            "https://w1.example.com/ui",
            "HTTP://W1:8081",
        ] {
            assert!(is_http_url(url), "{url}");
        }
        for url in [
            "",
            "javascript:alert(1)",
            "JavaScript://%0aalert(1)",
            "data:text/html,<script>alert(1)</script>",
            "//evil.example.com",
            "/relative",
            "http://",
            "http:///path",
            "ftp://w1",
            "http://w1:8081 onmouseover=x",
            "http://w1\n",
            " http://w1",
        ] {
            assert!(!is_http_url(url), "{url:?}");
        }
        assert_eq!(
            external_link("http://w1:8081/?a=1&b=\"2\"", "w<1>"),
            "<a href=\"http://w1:8081/?a=1&amp;b=&quot;2&quot;\">w&lt;1&gt;</a>"
        );
        assert_eq!(external_link("javascript:alert(1)", "w<1>"), "w&lt;1&gt;");
    }
}
