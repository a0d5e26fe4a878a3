//! The Worker's web UI: an HTML status page, executor and driver logs, and JSON.
//!
//! Spark counterpart: `WorkerWebUI`, `WorkerPage`, `LogPage` and `JsonProtocol.writeWorkerState`.
//! Routes:
//!
//! | route | what |
//! |---|---|
//! | `/` | HTML: id, master, cores and memory, running and finished executors and drivers with log links |
//! | `/json`, `/json/` | the worker state with Spark's field names (`id`, `masterurl`, `coresused`, …) |
//! | `/logPage/?appId=&executorId=&logType=stdout\|stderr` (or `driverId=`), `offset`, `byteLength` | a log, escaped, in a page |
//! | `/log/?…` | the same bytes as plain text, after a `==== Bytes a-b of n of path ====` line |
//!
//! Every page asks the endpoint for a [`WorkerStateResponse`] snapshot. Logs are only served from
//! the directories of executors and drivers the worker knows, and only `stdout` or `stderr`.

mod json;
mod pages;

use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use ember_rpc::EndpointRef;
use serde::Deserialize;

use crate::ids::ExecutorId;
use crate::messages::{WorkerMessage, WorkerStateResponse};

/// Bytes of a log shown when the request does not say.
pub const DEFAULT_LOG_BYTES: u64 = 100 * 1024;
/// The most bytes of a log one request returns.
pub const MAX_LOG_BYTES: u64 = 4 * 1024 * 1024;

/// The router of a worker's UI, reading state from `worker`.
pub fn router(worker: EndpointRef<WorkerMessage>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/json", get(json))
        .route("/json/", get(json))
        .route("/logPage", get(log_page))
        .route("/logPage/", get(log_page))
        .route("/log", get(raw_log))
        .route("/log/", get(raw_log))
        .with_state(worker)
}

type Worker = State<EndpointRef<WorkerMessage>>;

/// Why a request was refused: the status and a sentence for the user.
type Refusal = (StatusCode, String);

async fn snapshot(worker: &EndpointRef<WorkerMessage>) -> Result<WorkerStateResponse, Refusal> {
    worker
        .ask::<WorkerStateResponse>(WorkerMessage::RequestWorkerState)
        .await
        .map_err(|e| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the worker did not answer: {e}"),
            )
        })
}

async fn index(State(worker): Worker) -> Response {
    match snapshot(&worker).await {
        Ok(state) => pages::worker_page(&state).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn json(State(worker): Worker) -> Response {
    match snapshot(&worker).await {
        Ok(state) => axum::Json(json::worker_state(&state)).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// The query of `/logPage/` and `/log/` (Spark's parameter names).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    /// The executor's application.
    pub app_id: Option<String>,
    /// The executor.
    pub executor_id: Option<String>,
    /// Or a driver.
    pub driver_id: Option<String>,
    /// `stdout` or `stderr`.
    pub log_type: Option<String>,
    /// First byte; by default the last `byteLength` bytes are shown.
    pub offset: Option<u64>,
    /// How many bytes.
    pub byte_length: Option<u64>,
}

/// A slice of a log file.
#[derive(Debug)]
pub(crate) struct LogSlice {
    pub(crate) title: String,
    pub(crate) path: PathBuf,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) length: u64,
    pub(crate) text: String,
}

async fn log_page(State(worker): Worker, Query(query): Query<LogQuery>) -> Response {
    match read_log(&worker, &query).await {
        Ok(slice) => pages::log_page(&slice, &query).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn raw_log(State(worker): Worker, Query(query): Query<LogQuery>) -> Response {
    match read_log(&worker, &query).await {
        Ok(slice) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "==== Bytes {}-{} of {} of {} ====\n{}",
                slice.start,
                slice.end,
                slice.length,
                slice.path.display(),
                slice.text
            ),
        )
            .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

fn refuse(status: StatusCode, text: impl Into<String>) -> Refusal {
    (status, text.into())
}

async fn read_log(
    worker: &EndpointRef<WorkerMessage>,
    query: &LogQuery,
) -> Result<LogSlice, Refusal> {
    let log_type = match query.log_type.as_deref() {
        Some(t @ ("stdout" | "stderr")) => t,
        Some(_) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "logType must be stdout or stderr",
            ));
        }
        None => return Err(refuse(StatusCode::BAD_REQUEST, "logType is missing")),
    };
    let state = snapshot(worker).await?;
    let (title, dir) = runner_dir(&state, query)?;
    let path = Path::new(&dir).join(log_type);
    // The runner directories are under the work dir; make sure symlinks do not lead elsewhere.
    let inside = match (
        tokio::fs::canonicalize(&path).await,
        tokio::fs::canonicalize(&state.work_dir).await,
    ) {
        (Ok(file), Ok(root)) => file.starts_with(&root),
        _ => false,
    };
    if !inside {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("no {log_type} log for {title}"),
        ));
    }
    let byte_length = query
        .byte_length
        .unwrap_or(DEFAULT_LOG_BYTES)
        .min(MAX_LOG_BYTES);
    let offset = query.offset;
    let read = tokio::task::spawn_blocking(move || {
        read_range(&path, offset, byte_length).map(|r| (path, r))
    })
    .await
    .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let (path, (start, end, length, bytes)) = read.map_err(|e| {
        refuse(
            StatusCode::NOT_FOUND,
            format!("cannot read the log of {title}: {e}"),
        )
    })?;
    Ok(LogSlice {
        title: format!("{log_type} log page for {title}"),
        path,
        start,
        end,
        length,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// The directory of the executor or driver the query names, among those the worker knows.
fn runner_dir(state: &WorkerStateResponse, query: &LogQuery) -> Result<(String, String), Refusal> {
    if let Some(driver_id) = &query.driver_id {
        return state
            .drivers
            .iter()
            .chain(&state.finished_drivers)
            .find(|d| d.driver_id.as_str() == driver_id)
            .map(|d| (d.driver_id.to_string(), d.work_dir.clone()))
            .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "no such driver on this worker"));
    }
    let (Some(app_id), Some(exec_id)) = (&query.app_id, &query.executor_id) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "give appId and executorId, or driverId",
        ));
    };
    let exec_id = exec_id
        .parse::<u32>()
        .map(ExecutorId)
        .map_err(|_| refuse(StatusCode::BAD_REQUEST, "executorId must be a number"))?;
    state
        .executors
        .iter()
        .chain(&state.finished_executors)
        .find(|e| e.app_id.as_str() == app_id && e.exec_id == exec_id)
        .map(|e| (format!("{}/{}", e.app_id, e.exec_id), e.work_dir.clone()))
        .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "no such executor on this worker"))
}

/// Reads up to `len` bytes from `offset` (default: the last `len` bytes). Returns
/// (start, end, file length, bytes). Blocking.
fn read_range(
    path: &Path,
    offset: Option<u64>,
    len: u64,
) -> std::io::Result<(u64, u64, u64, Vec<u8>)> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let length = file.metadata()?.len();
    let start = offset
        .unwrap_or_else(|| length.saturating_sub(len))
        .min(length);
    let end = start.saturating_add(len).min(length);
    let mut buf = vec![0u8; (end - start) as usize];
    file.read_exact_at(&mut buf, start)?;
    Ok((start, end, length, buf))
}

/// HTML helper shared by the pages.
pub(crate) fn html(title: &str, body: &str) -> Html<String> {
    crate::web::page(title, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_default_to_the_tail() {
        let path = std::env::temp_dir().join(format!("ember-log-range-{}", std::process::id()));
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(
            read_range(&path, None, 4).unwrap(),
            (6, 10, 10, b"6789".to_vec())
        );
        assert_eq!(
            read_range(&path, Some(2), 3).unwrap(),
            (2, 5, 10, b"234".to_vec())
        );
        assert_eq!(
            read_range(&path, Some(50), 3).unwrap(),
            (10, 10, 10, Vec::new())
        );
        assert_eq!(read_range(&path, None, 100).unwrap().0, 0);
        std::fs::remove_file(&path).unwrap();
    }
}
