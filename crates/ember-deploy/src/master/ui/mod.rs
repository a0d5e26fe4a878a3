//! The master's web UI: an HTML overview, application pages and Spark's JSON.
//!
//! Spark counterpart: `MasterWebUI` with `MasterPage`, `ApplicationPage` and `JsonProtocol`.
//! Every request asks the master endpoint for a [`MasterStateResponse`]
//! (`ClientToMaster::RequestMasterState`) and renders it; the UI holds no state of its own.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | workers, applications and drivers (HTML) |
//! | `GET /app/?appId=…` | one application and its executors (HTML) |
//! | `GET /json`, `GET /json/` | the whole state, Spark's `writeMasterState` |
//! | `GET /json/<field>` | one field of it, `{"<field>": …}` (`""` if unknown) |
//! | `GET /json/clusterutilization` | Spark's `writeClusterUtilization` |
//! | `POST /app/kill?id=…&terminate=true` | kill an application, then back to `/` |
//! | `POST /driver/kill?id=…&terminate=true` | kill a driver, then back to `/` |

mod html;
pub mod json;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tracing::warn;

use ember_rpc::EndpointRef;

use crate::ids::{AppId, DriverId, now_millis};
use crate::messages::{ClientToMaster, KillDriverResponse, MasterMessage, MasterStateResponse};

#[derive(Debug, Clone)]
struct Ui {
    master: EndpointRef<MasterMessage>,
}

/// The UI's routes, talking to `master` (a ref in the same process).
pub fn router(master: EndpointRef<MasterMessage>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/json", get(json_all))
        .route("/json/", get(json_all))
        .route("/json/{*field}", get(json_field))
        .route("/app", get(app))
        .route("/app/", get(app))
        .route("/app/kill", post(kill_app))
        .route("/app/kill/", post(kill_app))
        .route("/driver/kill", post(kill_driver))
        .route("/driver/kill/", post(kill_driver))
        .with_state(Ui { master })
}

fn unavailable(error: impl std::fmt::Display) -> Response {
    warn!(%error, "the master did not answer the web UI");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the master did not answer: {error}"),
    )
        .into_response()
}

async fn master_state(ui: &Ui) -> Result<MasterStateResponse, Response> {
    ui.master
        .ask::<MasterStateResponse>(ClientToMaster::RequestMasterState)
        .await
        .map_err(unavailable)
}

fn json_response(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string_pretty(value) {
        Ok(text) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn index(State(ui): State<Ui>) -> Response {
    match master_state(&ui).await {
        Ok(state) => html::master_page(&state, now_millis()).into_response(),
        Err(r) => r,
    }
}

async fn json_all(State(ui): State<Ui>) -> Response {
    match master_state(&ui).await {
        Ok(state) => json_response(&json::master_json(&state, now_millis())),
        Err(r) => r,
    }
}

/// Spark matches `/json/([a-zA-Z]+).*`: the field is the leading letters of the rest.
async fn json_field(State(ui): State<Ui>, Path(rest): Path<String>) -> Response {
    let state = match master_state(&ui).await {
        Ok(state) => state,
        Err(r) => return r,
    };
    let field: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
    match field.as_str() {
        "" => json_response(&json::master_json(&state, now_millis())),
        "clusterutilization" => json_response(&json::cluster_utilization(&state)),
        field => json_response(&json::master_json_field(&state, field, now_millis())),
    }
}

async fn app(State(ui): State<Ui>, Query(query): Query<HashMap<String, String>>) -> Response {
    let Some(app_id) = query.get("appId") else {
        return (StatusCode::BAD_REQUEST, "missing appId").into_response();
    };
    let state = match master_state(&ui).await {
        Ok(state) => state,
        Err(r) => return r,
    };
    let found = state
        .active_apps
        .iter()
        .chain(&state.completed_apps)
        .find(|a| a.id.as_str() == app_id);
    match found {
        Some(app) => html::app_page(app, now_millis()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no application with id {app_id}"),
        )
            .into_response(),
    }
}

fn kill_target(query: &HashMap<String, String>) -> Option<&String> {
    let terminate = query
        .get("terminate")
        .is_some_and(|t| t.eq_ignore_ascii_case("true"));
    query.get("id").filter(|_| terminate)
}

async fn kill_app(State(ui): State<Ui>, Query(query): Query<HashMap<String, String>>) -> Response {
    if let Some(id) = kill_target(&query) {
        let asked = ClientToMaster::RequestKillApplication {
            app_id: AppId::from(id.as_str()),
        };
        if let Err(e) = ui.master.ask::<bool>(asked).await {
            return unavailable(e);
        }
    }
    Redirect::to("/").into_response()
}

async fn kill_driver(
    State(ui): State<Ui>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(id) = kill_target(&query) {
        let asked = ClientToMaster::RequestKillDriver {
            driver_id: DriverId::from(id.as_str()),
        };
        if let Err(e) = ui.master.ask::<KillDriverResponse>(asked).await {
            return unavailable(e);
        }
    }
    Redirect::to("/").into_response()
}
