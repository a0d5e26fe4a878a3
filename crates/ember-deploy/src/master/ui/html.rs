//! The master's HTML pages, rendered on the server.
//!
//! Spark counterparts: `MasterPage` and `ApplicationPage`. Every piece of text from the state is
//! escaped with [`web::escape`]; URLs that workers and drivers supply are links only when they
//! are `http://` or `https://` URLs ([`web::external_link`]); kill buttons are plain forms
//! posting to `/app/kill` and `/driver/kill`.

use std::fmt::Write as _;

use axum::response::Html;

use crate::messages::{ApplicationSummary, DriverSummary, MasterStateResponse, WorkerSummary};
use crate::state::{DriverState, WorkerState};
use crate::web::{
    self, escape, external_link, format_duration_ms, format_mb, format_time_ms, is_http_url, table,
};

fn state_cell(state: &str) -> String {
    format!("<span class=\"state-{0}\">{0}</span>", escape(state))
}

fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", escape(href), escape(text))
}

fn kill_form(action: &str, id: &str, what: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}?id={}&amp;terminate=true\" style=\"display:inline\">\
         <button type=\"submit\" title=\"Kill this {what}\">kill</button></form>",
        escape(action),
        escape(&url_encode(id)),
    )
}

/// Percent-encodes a query value.
pub(super) fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn worker_rows(workers: &[WorkerSummary], now_ms: u64) -> Vec<Vec<String>> {
    let mut sorted: Vec<&WorkerSummary> = workers.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    sorted
        .into_iter()
        .map(|w| {
            vec![
                external_link(&w.web_ui_address, w.id.as_str()),
                escape(&format!("{}:{}", w.host, w.port)),
                state_cell(w.state.as_str()),
                format!("{} ({} used)", w.cores, w.cores_used),
                format!(
                    "{} ({} used)",
                    format_mb(u64::from(w.memory_mb)),
                    format_mb(u64::from(w.memory_used_mb))
                ),
                format!(
                    "{} ({} ago)",
                    format_time_ms(w.last_heartbeat_ms),
                    format_duration_ms(now_ms.saturating_sub(w.last_heartbeat_ms))
                ),
            ]
        })
        .collect()
}

fn app_rows(apps: &[ApplicationSummary], now_ms: u64, active: bool) -> Vec<Vec<String>> {
    let mut sorted: Vec<&ApplicationSummary> = apps.iter().collect();
    sorted.sort_by_key(|x| std::cmp::Reverse(x.start_time_ms));
    sorted
        .into_iter()
        .map(|a| {
            let mut id = link(
                &format!("/app/?appId={}", url_encode(a.id.as_str())),
                a.id.as_str(),
            );
            if active {
                id.push(' ');
                id.push_str(&kill_form("/app/kill", a.id.as_str(), "application"));
            }
            let name = match &a.desc.app_ui_url {
                Some(url) if active => external_link(url, &a.desc.name),
                _ => escape(&a.desc.name),
            };
            vec![
                id,
                name,
                a.cores_granted.to_string(),
                format_mb(u64::from(a.desc.memory_per_executor_mb)),
                format_time_ms(a.start_time_ms),
                escape(&a.desc.user),
                state_cell(a.state.as_str()),
                format_duration_ms(
                    a.end_time_ms
                        .unwrap_or(now_ms)
                        .saturating_sub(a.start_time_ms),
                ),
            ]
        })
        .collect()
}

fn driver_rows(drivers: &[DriverSummary], active: bool) -> Vec<Vec<String>> {
    let mut sorted: Vec<&DriverSummary> = drivers.iter().collect();
    sorted.sort_by_key(|x| std::cmp::Reverse(x.start_time_ms));
    sorted
        .into_iter()
        .map(|d| {
            let mut id = escape(d.id.as_str());
            if active {
                id.push(' ');
                id.push_str(&kill_form("/driver/kill", d.id.as_str(), "driver"));
            }
            vec![
                id,
                format_time_ms(d.start_time_ms),
                d.worker_id
                    .as_ref()
                    .map_or_else(|| "None".to_owned(), |w| escape(w.as_str())),
                state_cell(d.state.as_str()),
                d.desc.cores.to_string(),
                format_mb(u64::from(d.desc.mem_mb)),
                escape(&d.desc.command.binary.name),
                d.exception.as_deref().map(escape).unwrap_or_default(),
            ]
        })
        .collect()
}

/// `/`: the cluster at a glance.
pub(super) fn master_page(state: &MasterStateResponse, now_ms: u64) -> Html<String> {
    let alive: Vec<&WorkerSummary> = state
        .workers
        .iter()
        .filter(|w| w.state == WorkerState::Alive)
        .collect();
    let cores: u64 = alive.iter().map(|w| u64::from(w.cores)).sum();
    let cores_used: u64 = alive.iter().map(|w| u64::from(w.cores_used)).sum();
    let memory: u64 = alive.iter().map(|w| u64::from(w.memory_mb)).sum();
    let memory_used: u64 = alive.iter().map(|w| u64::from(w.memory_used_mb)).sum();
    let waiting_drivers = state
        .active_drivers
        .iter()
        .filter(|d| d.state == DriverState::Submitted)
        .count();
    let mut body = String::new();
    let _ = write!(
        body,
        "<ul class=\"summary\">\
         <li><strong>URL:</strong> {url}</li>\
         <li><strong>Alive Workers:</strong> {alive}</li>\
         <li><strong>Cores in use:</strong> {cores} Total, {cores_used} Used</li>\
         <li><strong>Memory in use:</strong> {memory} Total, {memory_used} Used</li>\
         <li><strong>Applications:</strong> {running_apps} Running, {completed_apps} Completed</li>\
         <li><strong>Drivers:</strong> {running_drivers} Running ({waiting_drivers} Waiting), {completed_drivers} Completed</li>\
         <li><strong>Status:</strong> {status}</li></ul>",
        url = escape(&state.url()),
        alive = alive.len(),
        memory = format_mb(memory),
        memory_used = format_mb(memory_used),
        running_apps = state.active_apps.len(),
        completed_apps = state.completed_apps.len(),
        running_drivers = state.active_drivers.len() - waiting_drivers,
        completed_drivers = state.completed_drivers.len(),
        status = state_cell(state.status.as_str()),
    );
    let _ = write!(
        body,
        "<h2>Workers ({})</h2>{}",
        state.workers.len(),
        table(
            &[
                "Worker Id",
                "Address",
                "State",
                "Cores",
                "Memory",
                "Last Heartbeat"
            ],
            &worker_rows(&state.workers, now_ms),
        )
    );
    let app_headers = [
        "Application ID",
        "Name",
        "Cores",
        "Memory per Executor",
        "Submitted Time",
        "User",
        "State",
        "Duration",
    ];
    let _ = write!(
        body,
        "<h2>Running Applications ({})</h2>{}",
        state.active_apps.len(),
        table(&app_headers, &app_rows(&state.active_apps, now_ms, true))
    );
    let driver_headers = [
        "Submission ID",
        "Submitted Time",
        "Worker",
        "State",
        "Cores",
        "Memory",
        "Main Class",
        "Error",
    ];
    if !state.active_drivers.is_empty() {
        let _ = write!(
            body,
            "<h2>Running Drivers ({})</h2>{}",
            state.active_drivers.len(),
            table(&driver_headers, &driver_rows(&state.active_drivers, true))
        );
    }
    let _ = write!(
        body,
        "<h2>Completed Applications ({})</h2>{}",
        state.completed_apps.len(),
        table(
            &app_headers,
            &app_rows(&state.completed_apps, now_ms, false)
        )
    );
    if !state.completed_drivers.is_empty() {
        let _ = write!(
            body,
            "<h2>Completed Drivers ({})</h2>{}",
            state.completed_drivers.len(),
            table(
                &driver_headers,
                &driver_rows(&state.completed_drivers, false)
            )
        );
    }
    web::page(&format!("Ember Master at {}", state.url()), &body)
}

/// `/app/?appId=…`: one application and its executors.
pub(super) fn app_page(app: &ApplicationSummary, now_ms: u64) -> Html<String> {
    let mut body = String::new();
    let _ = write!(
        body,
        "<ul class=\"summary\">\
         <li><strong>ID:</strong> {id}</li>\
         <li><strong>Name:</strong> {name}</li>\
         <li><strong>User:</strong> {user}</li>\
         <li><strong>Cores:</strong> {cores}</li>\
         <li><strong>Executor Memory:</strong> {memory}</li>\
         <li><strong>Submit Date:</strong> {submitted}</li>\
         <li><strong>State:</strong> {state}</li>\
         <li><strong>Duration:</strong> {duration}</li>\
         <li><strong>Driver:</strong> {driver}</li>",
        id = escape(a_id(app)),
        name = escape(&app.desc.name),
        user = escape(&app.desc.user),
        cores = match app.desc.max_cores {
            Some(max) => format!("{max} (max), {} granted", app.cores_granted),
            None => format!("Unlimited ({} granted)", app.cores_granted),
        },
        memory = format_mb(u64::from(app.desc.memory_per_executor_mb)),
        submitted = format_time_ms(app.start_time_ms),
        state = state_cell(app.state.as_str()),
        duration = format_duration_ms(
            app.end_time_ms
                .unwrap_or(now_ms)
                .saturating_sub(app.start_time_ms)
        ),
        driver = escape(&app.driver_address.to_string()),
    );
    if let Some(url) = &app.desc.app_ui_url
        && !app.state.is_finished()
    {
        let _ = write!(
            body,
            "<li><strong>Application UI:</strong> {}</li>",
            external_link(url, url)
        );
    }
    body.push_str("</ul>");
    let headers = ["Executor ID", "Worker", "Cores", "Memory", "State", "Logs"];
    let row = |e: &crate::messages::ExecutorSummary| {
        let logs = if !is_http_url(&e.worker_web_ui) {
            String::new()
        } else {
            let base = format!(
                "{}/logPage/?appId={}&executorId={}&logType=",
                e.worker_web_ui,
                url_encode(a_id(app)),
                e.id
            );
            format!(
                "{} {}",
                link(&format!("{base}stdout"), "stdout"),
                link(&format!("{base}stderr"), "stderr")
            )
        };
        vec![
            e.id.to_string(),
            escape(&format!("{} ({})", e.worker_id, e.worker_host_port)),
            e.cores.to_string(),
            format_mb(u64::from(e.memory_mb)),
            state_cell(e.state.as_str()),
            logs,
        ]
    };
    let (live, removed): (Vec<_>, Vec<_>) = app.executors.iter().partition(|e| {
        !e.state.is_finished()
            && e.state != crate::state::ExecutorState::Decommissioned
            && !app.state.is_finished()
    });
    let live: Vec<Vec<String>> = live.into_iter().map(row).collect();
    let removed: Vec<Vec<String>> = removed.into_iter().map(row).collect();
    let _ = write!(
        body,
        "<h2>Executors ({})</h2>{}<h2>Removed Executors ({})</h2>{}",
        live.len(),
        table(&headers, &live),
        removed.len(),
        table(&headers, &removed)
    );
    body.push_str("<p><a href=\"/\">Back to the master</a></p>");
    web::page(&format!("Application: {}", app.desc.name), &body)
}

fn a_id(app: &ApplicationSummary) -> &str {
    app.id.as_str()
}

#[cfg(test)]
mod tests {
    use ember_rpc::RpcAddress;

    use super::*;
    use crate::description::{AppBinary, ApplicationDescription, BinaryLocation, Command};
    use crate::messages::ExecutorSummary;
    use crate::state::{ApplicationState, ExecutorState, MasterState};

    fn worker(id: &str, web_ui_address: &str) -> WorkerSummary {
        WorkerSummary {
            id: id.into(),
            host: "10.0.0.1".into(),
            port: 7078,
            web_ui_address: web_ui_address.into(),
            cores: 1,
            cores_used: 0,
            memory_mb: 1024,
            memory_used_mb: 0,
            state: WorkerState::Alive,
            last_heartbeat_ms: 0,
        }
    }

    fn app(app_ui_url: &str, worker_web_ui: &str) -> ApplicationSummary {
        ApplicationSummary {
            id: "app-1".into(),
            desc: ApplicationDescription {
                name: "bench".into(),
                max_cores: None,
                memory_per_executor_mb: 512,
                cores_per_executor: None,
                initial_executor_limit: None,
                command: Command {
                    binary: AppBinary {
                        name: "bench".into(),
                        digest: "00".into(),
                        size: 1,
                        location: BinaryLocation::LocalPath("/bin/bench".into()),
                    },
                    arguments: vec![],
                    environment: vec![],
                },
                app_ui_url: Some(app_ui_url.into()),
                user: "u".into(),
            },
            start_time_ms: 0,
            end_time_ms: None,
            cores_granted: 1,
            state: ApplicationState::Running,
            executors: vec![ExecutorSummary {
                id: crate::ids::ExecutorId(0),
                worker_id: "w-bad".into(),
                worker_host_port: "10.0.0.1:7078".into(),
                worker_web_ui: worker_web_ui.into(),
                cores: 1,
                memory_mb: 512,
                state: ExecutorState::Running,
            }],
            driver_address: RpcAddress::new("10.0.0.2", 40000),
        }
    }

    fn state(workers: Vec<WorkerSummary>, apps: Vec<ApplicationSummary>) -> MasterStateResponse {
        MasterStateResponse {
            host: "10.0.0.9".into(),
            port: 7077,
            rest_port: None,
            web_ui_url: "http://10.0.0.9:8080".into(),
            workers,
            active_apps: apps,
            completed_apps: vec![],
            active_drivers: vec![],
            completed_drivers: vec![],
            status: MasterState::Alive,
        }
    }

    #[test]
    fn a_worker_links_to_its_web_ui_only_when_it_is_an_http_url() {
        let page = master_page(
            &state(
                vec![
                    worker("w-http", "http://10.0.0.1:8081"),
                    worker("w-https", "https://w.example.com/ui?a=1&b=2"),
                    worker("w-js", "javascript:alert(1)"),
                    worker("w-data", "data:text/html,<script>x</script>"),
                    worker("w-none", ""),
                ],
                vec![],
            ),
            0,
        )
        .0;
        assert!(
            page.contains("<a href=\"http://10.0.0.1:8081\">w-http</a>"),
            "{page}"
        );
        assert!(
            page.contains("<a href=\"https://w.example.com/ui?a=1&amp;b=2\">w-https</a>"),
            "{page}"
        );
        for id in ["w-js", "w-data", "w-none"] {
            assert!(page.contains(&format!("<td>{id}</td>")), "{id}: {page}");
        }
        assert!(!page.contains("javascript:"), "{page}");
        assert!(!page.contains("data:text"), "{page}");
    }

    #[test]
    fn application_and_log_urls_from_peers_are_links_only_when_http() {
        let page = master_page(&state(vec![], vec![app("javascript:x()", "")]), 0).0;
        assert!(page.contains("<td>bench</td>"), "{page}");
        assert!(!page.contains("javascript:"), "{page}");
        let page = master_page(&state(vec![], vec![app("http://10.0.0.2:4040", "")]), 0).0;
        assert!(
            page.contains("<a href=\"http://10.0.0.2:4040\">bench</a>"),
            "{page}"
        );

        let page = app_page(&app("javascript:x()", "javascript:y()"), 0).0;
        assert!(!page.contains("javascript:x()</a>"), "{page}");
        assert!(!page.contains("href=\"javascript"), "{page}");
        assert!(!page.contains("logPage"), "no log links: {page}");
        let page = app_page(&app("http://10.0.0.2:4040", "http://10.0.0.1:8081"), 0).0;
        assert!(
            page.contains("<a href=\"http://10.0.0.2:4040\">http://10.0.0.2:4040</a>"),
            "{page}"
        );
        assert!(
            page.contains(
                "<a href=\"http://10.0.0.1:8081/logPage/?appId=app-1&amp;executorId=0&amp;logType=stdout\">stdout</a>"
            ),
            "{page}"
        );
    }
}
