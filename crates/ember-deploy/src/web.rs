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
}
