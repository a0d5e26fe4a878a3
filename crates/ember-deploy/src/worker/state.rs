//! The Worker's registration with its masters, as a pure state machine: time is an input.
//!
//! Spark counterpart: the registration half of `Worker.scala` (`registerWithMaster`,
//! `reregisterWithMaster`, `handleRegisterResponse`, `changeMaster`, `masterDisconnected`, the
//! heartbeat timer). [`Registration::step`] takes an [`Event`] and `now` and returns the
//! [`Effect`]s for the endpoint to perform; [`Registration::retry_deadline`] and
//! [`Registration::heartbeat_deadline`] tell the endpoint when to wake it next. The master handle
//! `R` is opaque here (an `EndpointRef` in the daemon, a plain value in tests).
//!
//! ```text
//!             Start / Reconnect / active master disconnected
//!   ┌──────────────────────────────────────────────────────────────┐
//!   ▼                                                              │
//! REGISTERING ──RegisterWith(all masters) at once, then a retry────┤
//!   │  every initial interval × fuzz (first N retries), then every │
//!   │  prolonged interval × fuzz; retries go to the active master  │
//!   │  once there is one, else to all; after the last → GaveUp     │
//!   │                                                              │
//!   ├──RegisteredWorker──▶ REGISTERED: retries stop, heartbeats ───┘
//!   │                      every timeout/4, WorkerLatestState sent
//!   ├──RegisterWorkerFailed (not registered) ──▶ Refused (the worker exits)
//!   └──MasterInStandby ──▶ ignored (the retries go on)
//!   MasterChanged (any state) ──▶ the new master is active; WorkerSchedulerStateResponse
//! ```

use std::time::{Duration, Instant};

use ember_rpc::RpcAddress;

use super::config::RegistrationConfig;

/// The retry intervals of one worker process, with its fuzz factor applied.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    /// Retries at `initial_interval`.
    pub initial_retries: u32,
    /// Retries in all.
    pub max_retries: u32,
    /// Interval of the first retries, fuzzed.
    pub initial_interval: Duration,
    /// Interval of the later retries, fuzzed.
    pub prolonged_interval: Duration,
}

impl RetrySchedule {
    /// The schedule of `config` with every interval multiplied by `fuzz` (in `[0.5, 1.5)`, drawn
    /// once per process so that workers restarted together spread their retries).
    pub fn new(config: &RegistrationConfig, fuzz: f64) -> Self {
        let fuzz = if fuzz.is_finite() {
            fuzz.clamp(0.5, 1.5)
        } else {
            1.0
        };
        let fuzzed = |d: Duration| d.mul_f64(fuzz).max(Duration::from_millis(1));
        RetrySchedule {
            initial_retries: config.initial_retries,
            max_retries: config.max_retries,
            initial_interval: fuzzed(config.initial_interval),
            prolonged_interval: fuzzed(config.prolonged_interval),
        }
    }

    /// How long after retry number `retries_done` (0 = the first attempt) the next one comes.
    pub fn interval_after(&self, retries_done: u32) -> Duration {
        if retries_done < self.initial_retries {
            self.initial_interval
        } else {
            self.prolonged_interval
        }
    }
}

/// A random factor in `[0.5, 1.5)`, drawn from the OS.
pub fn registration_fuzz() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 1.0;
    }
    let unit = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
    0.5 + unit
}

/// The master the worker currently reports to.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveMaster<R> {
    /// Its handle (endpoint ref).
    pub handle: R,
    /// Where its endpoint lives.
    pub address: RpcAddress,
    /// The address the worker registered through (may differ from `address` behind a proxy).
    pub address_to_connect: RpcAddress,
    /// Its web UI.
    pub web_ui_url: String,
}

/// What happens to the registration.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<R> {
    /// The worker started.
    Start,
    /// The retry timer fired.
    RetryTimer,
    /// The heartbeat timer fired.
    HeartbeatTimer,
    /// A master accepted the registration.
    Registered {
        /// The master.
        master: R,
        /// Its endpoint's address.
        address: RpcAddress,
        /// The address the worker registered through.
        master_address: RpcAddress,
        /// Its web UI.
        web_ui_url: String,
    },
    /// A master refused the registration.
    RegisterFailed {
        /// Why.
        message: String,
    },
    /// A standby master answered.
    MasterInStandby,
    /// A master does not know this worker (any more).
    Reconnect,
    /// The connection to a remote RpcEnv was lost.
    Disconnected(RpcAddress),
    /// A new master took over.
    MasterChanged {
        /// The master.
        master: R,
        /// Its endpoint's address.
        address: RpcAddress,
        /// Its web UI.
        web_ui_url: String,
    },
}

/// Why the worker must exit.
#[derive(Debug, Clone, PartialEq)]
pub enum ExitReason {
    /// No master answered before the retries ran out.
    GaveUp {
        /// Registration attempts made (the first one plus every retry).
        attempts: u32,
    },
    /// A master refused the registration.
    Refused {
        /// The master's reason.
        message: String,
    },
}

/// What the endpoint must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect<R> {
    /// Send `RegisterWorker` to each of these masters.
    RegisterWith(Vec<RpcAddress>),
    /// Send `Heartbeat` to this master.
    Heartbeat(R),
    /// Send `WorkerLatestState` (the executors and drivers this worker runs) to this master.
    SendLatestState(R),
    /// Send `WorkerSchedulerStateResponse` to this (new) master.
    SendSchedulerState(R),
    /// The first registration succeeded: start the periodic work-dir cleanup.
    StartCleanup,
    /// Stop the worker.
    Exit(ExitReason),
}

#[derive(Debug, Clone, PartialEq)]
struct Retry {
    /// Retries done since the last `Start`/re-registration began.
    done: u32,
    next_at: Instant,
}

/// The registration state of one worker.
#[derive(Debug)]
pub struct Registration<R> {
    masters: Vec<RpcAddress>,
    schedule: RetrySchedule,
    heartbeat_interval: Duration,
    registered: bool,
    connected: bool,
    ever_registered: bool,
    exited: bool,
    master: Option<ActiveMaster<R>>,
    retry: Option<Retry>,
    next_heartbeat_at: Option<Instant>,
}

impl<R: Clone> Registration<R> {
    /// A worker that will register with `masters`.
    pub fn new(
        masters: Vec<RpcAddress>,
        schedule: RetrySchedule,
        heartbeat_interval: Duration,
    ) -> Self {
        Registration {
            masters,
            schedule,
            heartbeat_interval: heartbeat_interval.max(Duration::from_millis(1)),
            registered: false,
            connected: false,
            ever_registered: false,
            exited: false,
            master: None,
            retry: None,
            next_heartbeat_at: None,
        }
    }

    /// Handles `event` at `now`.
    pub fn step(&mut self, event: Event<R>, now: Instant) -> Vec<Effect<R>> {
        if self.exited {
            return Vec::new();
        }
        let mut effects = Vec::new();
        match event {
            Event::Start | Event::Reconnect => self.register_with_masters(now, &mut effects),
            Event::RetryTimer => self.on_retry_timer(now, &mut effects),
            Event::HeartbeatTimer => self.on_heartbeat_timer(now, &mut effects),
            Event::Registered {
                master,
                address,
                master_address,
                web_ui_url,
            } => {
                self.registered = true;
                self.change_master(master.clone(), address, master_address, web_ui_url);
                if !self.ever_registered {
                    self.ever_registered = true;
                    effects.push(Effect::StartCleanup);
                }
                effects.push(Effect::SendLatestState(master));
                // Spark starts the fixed-rate heartbeat with no initial delay.
                self.next_heartbeat_at = Some(now);
                self.on_heartbeat_timer(now, &mut effects);
            }
            Event::RegisterFailed { message } => {
                if !self.registered {
                    self.exited = true;
                    self.retry = None;
                    effects.push(Effect::Exit(ExitReason::Refused { message }));
                }
            }
            Event::MasterInStandby => {}
            Event::Disconnected(address) => {
                let is_master = self
                    .master
                    .as_ref()
                    .is_some_and(|m| m.address == address || m.address_to_connect == address);
                if is_master {
                    self.connected = false;
                    self.register_with_masters(now, &mut effects);
                }
            }
            Event::MasterChanged {
                master,
                address,
                web_ui_url,
            } => {
                self.change_master(master.clone(), address.clone(), address, web_ui_url);
                effects.push(Effect::SendSchedulerState(master));
                if self.next_heartbeat_at.is_none() {
                    self.next_heartbeat_at = Some(now);
                    self.on_heartbeat_timer(now, &mut effects);
                }
            }
        }
        effects
    }

    /// When the retry timer must fire next, if it runs.
    pub fn retry_deadline(&self) -> Option<Instant> {
        self.retry.as_ref().map(|r| r.next_at)
    }

    /// When the heartbeat timer must fire next, if it runs.
    pub fn heartbeat_deadline(&self) -> Option<Instant> {
        self.next_heartbeat_at
    }

    /// Whether a master accepted the latest registration.
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// Whether the connection to the active master is believed up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The active master, once one accepted the worker.
    pub fn active_master(&self) -> Option<&ActiveMaster<R>> {
        self.master.as_ref()
    }

    /// The configured masters.
    pub fn masters(&self) -> &[RpcAddress] {
        &self.masters
    }

    /// Spark's `registerWithMaster`: unless retries are already scheduled, register with every
    /// master now and start the retry timer.
    fn register_with_masters(&mut self, now: Instant, effects: &mut Vec<Effect<R>>) {
        if self.retry.is_some() {
            tracing::debug!("not starting another registration: one is already scheduled");
            return;
        }
        self.registered = false;
        effects.push(Effect::RegisterWith(self.masters.clone()));
        self.retry = Some(Retry {
            done: 0,
            next_at: now + self.schedule.interval_after(0),
        });
    }

    /// Spark's `reregisterWithMaster`.
    fn on_retry_timer(&mut self, now: Instant, effects: &mut Vec<Effect<R>>) {
        let Some(retry) = self.retry.as_mut() else {
            return;
        };
        if now < retry.next_at {
            return;
        }
        retry.done += 1;
        if self.registered {
            self.retry = None;
            return;
        }
        if retry.done > self.schedule.max_retries {
            let attempts = retry.done;
            self.retry = None;
            self.exited = true;
            effects.push(Effect::Exit(ExitReason::GaveUp { attempts }));
            return;
        }
        let targets = match &self.master {
            Some(master) => vec![master.address.clone()],
            None => self.masters.clone(),
        };
        retry.next_at = now + self.schedule.interval_after(retry.done);
        effects.push(Effect::RegisterWith(targets));
    }

    fn on_heartbeat_timer(&mut self, now: Instant, effects: &mut Vec<Effect<R>>) {
        let Some(due) = self.next_heartbeat_at else {
            return;
        };
        if now < due {
            return;
        }
        if self.connected
            && let Some(master) = &self.master
        {
            effects.push(Effect::Heartbeat(master.handle.clone()));
        }
        // Fixed rate; ticks missed while the process was stalled are skipped, not bunched.
        let mut next = due + self.heartbeat_interval;
        while next <= now {
            next += self.heartbeat_interval;
        }
        self.next_heartbeat_at = Some(next);
    }

    /// Spark's `changeMaster`: the master is active and connected; retries stop.
    fn change_master(
        &mut self,
        handle: R,
        address: RpcAddress,
        address_to_connect: RpcAddress,
        web_ui_url: String,
    ) {
        self.master = Some(ActiveMaster {
            handle,
            address,
            address_to_connect,
            web_ui_url,
        });
        self.connected = true;
        self.retry = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn addr(i: u16) -> RpcAddress {
        RpcAddress::new(format!("m{i}"), 7077)
    }

    fn schedule(fuzz: f64) -> RetrySchedule {
        RetrySchedule::new(
            &RegistrationConfig {
                initial_retries: 6,
                max_retries: 16,
                initial_interval: 10 * S,
                prolonged_interval: 60 * S,
            },
            fuzz,
        )
    }

    fn machine(fuzz: f64) -> Registration<&'static str> {
        Registration::new(vec![addr(1), addr(2)], schedule(fuzz), 15 * S)
    }

    fn registered(master: &'static str, i: u16) -> Event<&'static str> {
        Event::Registered {
            master,
            address: addr(i),
            master_address: addr(i),
            web_ui_url: format!("http://m{i}:8080"),
        }
    }

    /// Fires the retry timer at each of its deadlines until it stops; returns (seconds since
    /// start, effects) per firing.
    fn run_retries(
        m: &mut Registration<&'static str>,
        t0: Instant,
    ) -> Vec<(f64, Vec<Effect<&'static str>>)> {
        let mut out = Vec::new();
        while let Some(at) = m.retry_deadline() {
            let effects = m.step(Event::RetryTimer, at);
            out.push(((at - t0).as_secs_f64(), effects));
        }
        out
    }

    // Spark parity: Worker.registerWithMaster / reregisterWithMaster timeline with FUZZ = 1.
    #[test]
    fn retry_schedule_matches_spark_and_gives_up() {
        let t0 = Instant::now();
        let mut m = machine(1.0);
        assert_eq!(
            m.step(Event::Start, t0),
            vec![Effect::RegisterWith(vec![addr(1), addr(2)])]
        );
        let firings = run_retries(&mut m, t0);
        let times: Vec<f64> = firings.iter().map(|(t, _)| *t).collect();
        let mut expected: Vec<f64> = (1..=6).map(|i| 10.0 * i as f64).collect();
        expected.extend((2..=12).map(|i| 60.0 * i as f64));
        assert_eq!(times, expected);
        for (_, effects) in &firings[..16] {
            assert_eq!(effects, &vec![Effect::RegisterWith(vec![addr(1), addr(2)])]);
        }
        assert_eq!(
            firings[16].1,
            vec![Effect::Exit(ExitReason::GaveUp { attempts: 17 })]
        );
        // Exited: nothing more happens.
        assert!(m.step(registered("a", 1), t0 + 800 * S).is_empty());
        assert_eq!(m.retry_deadline(), None);
    }

    #[test]
    fn fuzz_scales_every_interval() {
        for (fuzz, first, give_up) in [(0.5, 5.0, 360.0), (1.499, 14.99, 1079.28)] {
            let t0 = Instant::now();
            let mut m = machine(fuzz);
            m.step(Event::Start, t0);
            let firings = run_retries(&mut m, t0);
            assert!(
                (firings[0].0 - first).abs() < 1e-6,
                "{fuzz}: {:?}",
                firings[0]
            );
            let last = firings.last().unwrap();
            assert!((last.0 - give_up).abs() < 1e-3, "{fuzz}: {}", last.0);
        }
        let f = registration_fuzz();
        assert!((0.5..1.5).contains(&f), "{f}");
    }

    #[test]
    fn registration_stops_retries_and_starts_heartbeats_every_quarter_timeout() {
        let t0 = Instant::now();
        let mut m = machine(1.0);
        m.step(Event::Start, t0);
        // A standby master answers first: nothing changes.
        assert!(m.step(Event::MasterInStandby, t0 + S).is_empty());
        assert!(m.retry_deadline().is_some());
        let effects = m.step(registered("m2", 2), t0 + 2 * S);
        assert_eq!(
            effects,
            vec![
                Effect::StartCleanup,
                Effect::SendLatestState("m2"),
                Effect::Heartbeat("m2"),
            ]
        );
        assert!(m.is_registered() && m.is_connected());
        assert_eq!(m.retry_deadline(), None);
        assert_eq!(m.active_master().unwrap().web_ui_url, "http://m2:8080");

        // Heartbeats at 2 + 15k seconds; an early or stale tick does nothing.
        assert!(m.step(Event::HeartbeatTimer, t0 + 10 * S).is_empty());
        assert!(m.step(Event::RetryTimer, t0 + 10 * S).is_empty());
        let mut beats = Vec::new();
        for _ in 0..4 {
            let at = m.heartbeat_deadline().unwrap();
            assert_eq!(
                m.step(Event::HeartbeatTimer, at),
                vec![Effect::Heartbeat("m2")]
            );
            beats.push((at - t0).as_secs());
        }
        assert_eq!(beats, vec![17, 32, 47, 62]);
        // A stall of a minute: one heartbeat, then back on the 15 s grid.
        assert_eq!(
            m.step(Event::HeartbeatTimer, t0 + 140 * S),
            vec![Effect::Heartbeat("m2")]
        );
        assert_eq!(m.heartbeat_deadline(), Some(t0 + 152 * S));
    }

    #[test]
    fn losing_the_active_master_re_registers_with_all_then_retries_it_alone() {
        let t0 = Instant::now();
        let mut m = machine(1.0);
        m.step(Event::Start, t0);
        m.step(registered("m1", 1), t0);
        // Another peer going away is not the master.
        assert!(m.step(Event::Disconnected(addr(9)), t0 + S).is_empty());
        assert_eq!(
            m.step(Event::Disconnected(addr(1)), t0 + 2 * S),
            vec![Effect::RegisterWith(vec![addr(1), addr(2)])]
        );
        assert!(!m.is_registered() && !m.is_connected());
        // No heartbeats while disconnected, but the timer keeps its grid.
        let at = m.heartbeat_deadline().unwrap();
        assert!(m.step(Event::HeartbeatTimer, at).is_empty());
        // A second disconnect event does not start a second retry loop.
        assert!(m.step(Event::Disconnected(addr(1)), t0 + 3 * S).is_empty());
        // Retries go to the active master only.
        let at = m.retry_deadline().unwrap();
        assert_eq!(at, t0 + 12 * S);
        assert_eq!(
            m.step(Event::RetryTimer, at),
            vec![Effect::RegisterWith(vec![addr(1)])]
        );
        // It comes back.
        let effects = m.step(registered("m1", 1), at + S);
        assert_eq!(
            effects,
            vec![Effect::SendLatestState("m1"), Effect::Heartbeat("m1")]
        );
        assert_eq!(m.retry_deadline(), None);
    }

    #[test]
    fn reconnect_worker_re_registers_once() {
        let t0 = Instant::now();
        let mut m = machine(1.0);
        m.step(Event::Start, t0);
        m.step(registered("m1", 1), t0);
        assert_eq!(
            m.step(Event::Reconnect, t0 + S),
            vec![Effect::RegisterWith(vec![addr(1), addr(2)])]
        );
        assert!(m.step(Event::Reconnect, t0 + 2 * S).is_empty());
        assert!(!m.is_registered());
        // The worker is still connected: heartbeats go on (the master answers them with
        // ReconnectWorker, which is ignored while the retry runs).
        let at = m.heartbeat_deadline().unwrap();
        assert_eq!(
            m.step(Event::HeartbeatTimer, at),
            vec![Effect::Heartbeat("m1")]
        );
    }

    #[test]
    fn refused_registration_exits_only_before_registration() {
        let t0 = Instant::now();
        let mut m = machine(1.0);
        m.step(Event::Start, t0);
        m.step(registered("m1", 1), t0);
        let refuse = || Event::RegisterFailed {
            message: "Duplicate worker ID".into(),
        };
        assert!(m.step(refuse(), t0 + S).is_empty());

        let mut fresh = machine(1.0);
        fresh.step(Event::Start, t0);
        assert_eq!(
            fresh.step(refuse(), t0 + S),
            vec![Effect::Exit(ExitReason::Refused {
                message: "Duplicate worker ID".into()
            })]
        );
        assert_eq!(fresh.retry_deadline(), None);
    }

    #[test]
    fn master_changed_switches_and_reports_state() {
        let t0 = Instant::now();
        let mut m = machine(1.0);
        m.step(Event::Start, t0);
        m.step(registered("m1", 1), t0);
        let effects = m.step(
            Event::MasterChanged {
                master: "m2",
                address: addr(2),
                web_ui_url: "http://m2:8080".into(),
            },
            t0 + S,
        );
        assert_eq!(effects, vec![Effect::SendSchedulerState("m2")]);
        assert_eq!(m.active_master().unwrap().handle, "m2");
        let at = m.heartbeat_deadline().unwrap();
        assert_eq!(
            m.step(Event::HeartbeatTimer, at),
            vec![Effect::Heartbeat("m2")]
        );
        // The old master going away no longer matters.
        assert!(m.step(Event::Disconnected(addr(1)), at).is_empty());
    }

    #[test]
    fn master_changed_during_retries_cancels_them() {
        let t0 = Instant::now();
        let mut m = machine(1.0);
        m.step(Event::Start, t0);
        m.step(registered("m1", 1), t0);
        m.step(Event::Disconnected(addr(1)), t0 + S);
        assert!(m.retry_deadline().is_some());
        m.step(
            Event::MasterChanged {
                master: "m2",
                address: addr(2),
                web_ui_url: String::new(),
            },
            t0 + 2 * S,
        );
        assert_eq!(m.retry_deadline(), None);
        assert!(m.is_connected());
    }
}
