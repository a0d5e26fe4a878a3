//! The worker's HTML pages (Spark's `WorkerPage` and `LogPage`), rendered on the server.

use std::fmt::Write as _;

use axum::response::Html;

use super::{LogQuery, LogSlice, html};
use crate::messages::{DriverRunnerSummary, ExecutorRunnerSummary, WorkerStateResponse};
use crate::web::{escape, external_link, format_mb, table};

/// `/`.
pub(crate) fn worker_page(state: &WorkerStateResponse) -> Html<String> {
    let mut body = String::from("<ul class=\"summary\">");
    let master = match (&state.master_url, &state.master_web_ui_url) {
        (Some(url), Some(ui)) => external_link(ui, url),
        (Some(url), None) => escape(url),
        (None, _) => "(not registered)".to_owned(),
    };
    let _ = write!(
        body,
        "<li><strong>ID:</strong> {}</li><li><strong>Master URL:</strong> {master}</li>\
         <li><strong>Cores:</strong> {} ({} Used)</li>\
         <li><strong>Memory:</strong> {} ({} Used)</li>\
         <li><strong>Work dir:</strong> {}</li></ul>",
        escape(state.worker_id.as_str()),
        state.cores,
        state.cores_used,
        format_mb(u64::from(state.memory_mb)),
        format_mb(u64::from(state.memory_used_mb)),
        escape(&state.work_dir),
    );
    section(
        &mut body,
        "Running Executors",
        &state.executors,
        executor_table,
    );
    section(&mut body, "Running Drivers", &state.drivers, driver_table);
    section(
        &mut body,
        "Finished Executors",
        &state.finished_executors,
        executor_table,
    );
    section(
        &mut body,
        "Finished Drivers",
        &state.finished_drivers,
        driver_table,
    );
    html(
        &format!("Ember Worker at {}:{}", state.host, state.port),
        &body,
    )
}

fn section<T>(body: &mut String, title: &str, items: &[T], render: fn(&[T]) -> String) {
    let _ = write!(body, "<h2>{} ({})</h2>", escape(title), items.len());
    if !items.is_empty() {
        body.push_str(&render(items));
    }
}

fn log_links(query: &str) -> String {
    format!(
        "<a href=\"logPage/?{q}&amp;logType=stdout\">stdout</a> \
         <a href=\"logPage/?{q}&amp;logType=stderr\">stderr</a>",
        q = escape(query)
    )
}

fn executor_table(executors: &[ExecutorRunnerSummary]) -> String {
    let rows: Vec<Vec<String>> = executors
        .iter()
        .map(|e| {
            vec![
                e.exec_id.to_string(),
                format!("<span class=\"state-{0}\">{0}</span>", e.state),
                e.cores.to_string(),
                format_mb(u64::from(e.memory_mb)),
                format!(
                    "ID: {}<br>Name: {}<br>User: {}",
                    escape(e.app_id.as_str()),
                    escape(&e.app_desc.name),
                    escape(&e.app_desc.user)
                ),
                e.exit_status.map(|s| s.to_string()).unwrap_or_default(),
                log_links(&format!("appId={}&executorId={}", e.app_id, e.exec_id)),
            ]
        })
        .collect();
    table(
        &[
            "ExecutorID",
            "State",
            "Cores",
            "Memory",
            "Job Details",
            "Exit Status",
            "Logs",
        ],
        &rows,
    )
}

fn driver_table(drivers: &[DriverRunnerSummary]) -> String {
    let rows: Vec<Vec<String>> = drivers
        .iter()
        .map(|d| {
            vec![
                escape(d.driver_id.as_str()),
                format!("<span class=\"state-{0}\">{0}</span>", d.state),
                d.desc.cores.to_string(),
                format_mb(u64::from(d.desc.mem_mb)),
                escape(&d.desc.command.to_string()),
                escape(d.exception.as_deref().unwrap_or("")),
                log_links(&format!("driverId={}", d.driver_id)),
            ]
        })
        .collect();
    table(
        &[
            "DriverID", "State", "Cores", "Memory", "Command", "Error", "Logs",
        ],
        &rows,
    )
}

/// `/logPage/`.
pub(crate) fn log_page(slice: &LogSlice, query: &LogQuery) -> Html<String> {
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>Showing bytes {}-{} of {} of <code>{}</code></p>",
        slice.start,
        slice.end,
        slice.length,
        escape(&slice.path.display().to_string())
    );
    let len = slice.end - slice.start;
    let base = |offset: u64| {
        let mut q = String::new();
        if let Some(d) = &query.driver_id {
            let _ = write!(q, "driverId={d}");
        } else {
            let _ = write!(
                q,
                "appId={}&executorId={}",
                query.app_id.as_deref().unwrap_or(""),
                query.executor_id.as_deref().unwrap_or("")
            );
        }
        let _ = write!(
            q,
            "&logType={}&offset={offset}&byteLength={}",
            query.log_type.as_deref().unwrap_or(""),
            len.max(1)
        );
        escape(&q)
    };
    if slice.start > 0 {
        let _ = write!(
            body,
            "<a href=\"?{}\">Previous {} bytes</a> ",
            base(slice.start.saturating_sub(len.max(1))),
            len
        );
    }
    if slice.end < slice.length {
        let _ = write!(body, "<a href=\"?{}\">Next bytes</a>", base(slice.end));
    }
    let _ = write!(body, "<pre>{}</pre>", escape(&slice.text));
    html(&slice.title, &body)
}
