//! Why a standalone application gets no executors: a diagnosis from the master's state.
//!
//! Spark only says "Initial job has not accepted any resources; check your cluster UI to ensure
//! that workers are registered and have sufficient resources". Ember asks the master for its
//! state (`RequestMasterState`) and names the reason: no worker alive, not enough free memory on
//! any worker for `ember.executor.memory`, every core held by other applications (named), or
//! executors granted that never registered.

use ember_deploy::description::ApplicationDescription;
use ember_deploy::ids::AppId;
use ember_deploy::messages::{MasterStateResponse, WorkerSummary};
use ember_deploy::state::WorkerState;

fn free_memory(w: &WorkerSummary) -> u32 {
    w.memory_mb.saturating_sub(w.memory_used_mb)
}

fn free_cores(w: &WorkerSummary) -> u32 {
    w.cores.saturating_sub(w.cores_used)
}

/// Explains, in one or two sentences, why `app` gets no executors from the master whose state
/// is `state`.
pub fn diagnose(
    state: &MasterStateResponse,
    app_id: Option<&AppId>,
    app: &ApplicationDescription,
) -> String {
    let url = state.url();
    let alive: Vec<&WorkerSummary> = state
        .workers
        .iter()
        .filter(|w| w.state == WorkerState::Alive)
        .collect();
    if alive.is_empty() {
        return if state.workers.is_empty() {
            format!(
                "The master at {url} has no worker registered; start workers with `ember worker {url}`."
            )
        } else {
            let states: Vec<String> = state
                .workers
                .iter()
                .map(|w| format!("{} is {}", w.id, w.state))
                .collect();
            format!(
                "No worker is alive at the master at {url}: {}.",
                states.join(", ")
            )
        };
    }
    if app.initial_executor_limit == Some(0) {
        return "ember.executor.instances is 0, so the application asks for no executor."
            .to_owned();
    }
    let memory = app.memory_per_executor_mb;
    let cores = app.cores_per_executor.unwrap_or(1);
    let others: Vec<String> = state
        .active_apps
        .iter()
        .filter(|a| Some(&a.id) != app_id && a.cores_granted > 0)
        .map(|a| {
            format!(
                "{} ({}) holds {} core(s)",
                a.id, a.desc.name, a.cores_granted
            )
        })
        .collect();
    let held_by = if others.is_empty() {
        String::new()
    } else {
        format!(" Other applications: {}.", others.join(", "))
    };
    let largest_total = alive.iter().map(|w| w.memory_mb).max().unwrap_or(0);
    let largest_free = alive.iter().map(|w| free_memory(w)).max().unwrap_or(0);
    if largest_total < memory {
        return format!(
            "No worker is big enough: the largest alive worker has {largest_total} MiB in all, \
             below the {memory} MiB per executor this application asks for \
             (ember.executor.memory)."
        );
    }
    if largest_free < memory {
        return format!(
            "The largest free memory on any alive worker is {largest_free} MiB, below the \
             {memory} MiB per executor this application asks for (ember.executor.memory).{held_by}"
        );
    }
    let roomy: Vec<&&WorkerSummary> = alive.iter().filter(|w| free_memory(w) >= memory).collect();
    let largest_cores = alive.iter().map(|w| w.cores).max().unwrap_or(0);
    if largest_cores < cores {
        return format!(
            "No worker has {cores} cores (ember.executor.cores); the largest alive worker has \
             {largest_cores}."
        );
    }
    if roomy.iter().all(|w| free_cores(w) < cores) {
        return if others.is_empty() {
            format!(
                "No worker with {memory} MiB free has {cores} free core(s) for an executor \
                 (ember.executor.cores)."
            )
        } else {
            format!(
                "Every core of the workers with {memory} MiB free is held by other \
                 applications: {}.",
                others.join(", ")
            )
        };
    }
    let ours = app_id.and_then(|id| state.active_apps.iter().find(|a| &a.id == id));
    match ours {
        None => format!(
            "The master at {url} does not list this application as active (it is not \
             registered yet, or was removed), although workers have room."
        ),
        Some(summary) if !summary.executors.is_empty() => {
            let execs: Vec<String> = summary
                .executors
                .iter()
                .map(|e| format!("{} on {} is {}", e.id, e.worker_id, e.state))
                .collect();
            format!(
                "The master granted executors ({}) but none has registered with the driver; \
                 see their stderr in the workers' work/{}/ directories.",
                execs.join(", "),
                summary.id
            )
        }
        Some(_) => {
            let room: Vec<String> = roomy
                .iter()
                .filter(|w| free_cores(w) >= cores)
                .map(|w| {
                    format!(
                        "{} has {} core(s) and {} MiB free",
                        w.id,
                        free_cores(w),
                        free_memory(w)
                    )
                })
                .collect();
            format!(
                "Workers have room ({}) but the master has granted no executor yet; check the \
                 master's log.",
                room.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use ember_deploy::description::{AppBinary, BinaryLocation, Command};
    use ember_deploy::ids::{ExecutorId, WorkerId};
    use ember_deploy::messages::{ApplicationSummary, ExecutorSummary};
    use ember_deploy::state::{ApplicationState, ExecutorState, MasterState};
    use ember_rpc::RpcAddress;

    use super::*;

    fn desc(name: &str, memory: u32, cores: Option<u32>) -> ApplicationDescription {
        ApplicationDescription {
            name: name.to_owned(),
            max_cores: None,
            memory_per_executor_mb: memory,
            cores_per_executor: cores,
            initial_executor_limit: None,
            command: Command {
                binary: AppBinary {
                    name: "app".into(),
                    digest: "0".repeat(64),
                    size: 1,
                    location: BinaryLocation::LocalPath("/app".into()),
                },
                arguments: vec![],
                environment: vec![],
            },
            app_ui_url: None,
            user: "me".into(),
        }
    }

    fn worker(
        id: &str,
        cores: u32,
        used: u32,
        mem: u32,
        mem_used: u32,
        state: WorkerState,
    ) -> WorkerSummary {
        WorkerSummary {
            id: WorkerId::from(id),
            host: "h".into(),
            port: 1,
            web_ui_address: String::new(),
            cores,
            cores_used: used,
            memory_mb: mem,
            memory_used_mb: mem_used,
            state,
            last_heartbeat_ms: 0,
        }
    }

    fn app(
        id: &str,
        name: &str,
        cores: u32,
        executors: Vec<ExecutorSummary>,
    ) -> ApplicationSummary {
        ApplicationSummary {
            id: AppId::from(id),
            desc: desc(name, 1024, None),
            start_time_ms: 0,
            end_time_ms: None,
            cores_granted: cores,
            state: ApplicationState::Running,
            executors,
            driver_address: RpcAddress::new("d", 1),
        }
    }

    fn master(workers: Vec<WorkerSummary>, apps: Vec<ApplicationSummary>) -> MasterStateResponse {
        MasterStateResponse {
            host: "m".into(),
            port: 7077,
            rest_port: None,
            web_ui_url: String::new(),
            workers,
            active_apps: apps,
            completed_apps: vec![],
            active_drivers: vec![],
            completed_drivers: vec![],
            status: MasterState::Alive,
        }
    }

    #[test]
    fn names_the_reason() {
        use WorkerState::*;
        let me = AppId::from("app-me");
        let mine = || app("app-me", "me", 0, vec![]);
        let table: Vec<(MasterStateResponse, ApplicationDescription, &str)> = vec![
            (
                master(vec![], vec![]),
                desc("me", 1024, None),
                "has no worker registered",
            ),
            (
                master(vec![worker("w1", 4, 0, 4096, 0, Dead)], vec![]),
                desc("me", 1024, None),
                "No worker is alive at the master at ember://m:7077: w1 is DEAD",
            ),
            (
                master(vec![worker("w1", 4, 0, 512, 0, Alive)], vec![mine()]),
                desc("me", 1024, None),
                "the largest alive worker has 512 MiB in all, below the 1024 MiB",
            ),
            (
                master(
                    vec![
                        worker("w1", 4, 2, 2048, 1536, Alive),
                        worker("w2", 4, 2, 2048, 1100, Alive),
                    ],
                    vec![mine(), app("app-big", "big", 4, vec![])],
                ),
                desc("me", 1024, None),
                "The largest free memory on any alive worker is 948 MiB, below the 1024 MiB",
            ),
            (
                master(
                    vec![worker("w1", 2, 2, 4096, 1024, Alive)],
                    vec![mine(), app("app-hog", "hog", 2, vec![])],
                ),
                desc("me", 1024, None),
                "Every core of the workers with 1024 MiB free is held by other applications: \
                 app-hog (hog) holds 2 core(s)",
            ),
            (
                master(vec![worker("w1", 2, 0, 4096, 0, Alive)], vec![mine()]),
                desc("me", 1024, Some(4)),
                "No worker has 4 cores (ember.executor.cores); the largest alive worker has 2",
            ),
            (
                master(
                    vec![worker("w1", 2, 1, 4096, 1024, Alive)],
                    vec![app(
                        "app-me",
                        "me",
                        1,
                        vec![ExecutorSummary {
                            id: ExecutorId(0),
                            worker_id: WorkerId::from("w1"),
                            worker_host_port: "h:1".into(),
                            worker_web_ui: String::new(),
                            cores: 1,
                            memory_mb: 1024,
                            state: ExecutorState::Launching,
                        }],
                    )],
                ),
                desc("me", 1024, None),
                "granted executors (0 on w1 is LAUNCHING) but none has registered",
            ),
            (
                master(vec![worker("w1", 2, 0, 4096, 0, Alive)], vec![]),
                desc("me", 1024, None),
                "does not list this application as active",
            ),
        ];
        for (state, app_desc, want) in table {
            let got = diagnose(&state, Some(&me), &app_desc);
            assert!(got.contains(want), "want {want:?} in {got:?}");
        }
    }
}
