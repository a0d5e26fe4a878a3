//! Busy-polling a connection for the reply to a request just written.
//!
//! Waiting for a reply the usual way parks the runtime's threads until the I/O driver reports
//! the socket readable. On a virtual machine whose CPUs are otherwise idle, a parked thread
//! lets its virtual CPU halt, and waking a halted virtual CPU is what dominates a loopback round
//! trip (tens of µs, once in each process per round trip). So after writing a batch that holds
//! a request, the connection's writer may watch the socket, without parking, for a short while
//! (`ember.rpc.ask.busyPoll`): it peeks until the reply's first byte is there, then yields, and
//! the runtime hands the socket's readiness to the reader at once. This side's CPU never halts.
//!
//! Polling is not always a win: when the CPUs are busy anyway, a polling thread holds a CPU the
//! peer or other work could use, and round trips get slower. So each connection measures its
//! round trips both ways and polls only while polling is clearly faster:
//!
//! ```text
//!   per written batch holding a request:
//!     one batch in EXPLORE_EVERY ──▶ the mode not in favour (keeps both averages fresh)
//!     otherwise                  ──▶ poll iff avg(polled) < POLL_WIN × avg(not polled)
//!   each reply: its round trip goes into the average of the mode its batch used
//! ```
//!
//! The cost is bounded so that nothing else pays for it:
//!
//! * only after writing a request: a process that only sends or only answers (a master
//!   serving heartbeats, an idle daemon) never polls;
//! * at most the configured time per written batch, ending at the first byte that arrives or
//!   as soon as there is more to write;
//! * one connection of the process at a time, so a fan-out of asks does not tie up every
//!   runtime thread.
//!
//! Spark has no counterpart; Netty's epoll transport has a similar busy-poll option.

use std::mem::MaybeUninit;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// One written batch in this many uses the mode out of favour, to keep measuring it (rarely
/// enough to stay out of the 99th percentile).
const EXPLORE_EVERY: u32 = 128;
/// Polling must make round trips at least this much faster (a ratio) to be worth a CPU.
const POLL_WIN: f64 = 0.9;
/// Weight of a new round trip in its mode's moving average: the mode in favour is measured
/// every time, the other only when explored, so its samples count for more.
const FAVOURED_WEIGHT: f64 = 1.0 / 16.0;
const EXPLORED_WEIGHT: f64 = 1.0 / 4.0;

/// Set while some connection of this process polls.
static POLLING: AtomicBool = AtomicBool::new(false);

/// One connection's polling state.
#[derive(Debug)]
pub(crate) struct BusyPoll {
    budget: Duration,
    /// A request was queued since the writer last looked.
    request_queued: AtomicBool,
    adapt: Mutex<Adapt>,
}

/// Moving averages of round trips with and without polling, and which mode the last written
/// batch used.
#[derive(Debug, Default)]
struct Adapt {
    batches: u32,
    polled_last: bool,
    explored_last: bool,
    /// Round-trip averages in µs, `[not polled, polled]`; `None` until measured.
    average: [Option<f64>; 2],
}

impl Adapt {
    /// The mode for the next written batch.
    fn choose(&mut self) -> bool {
        self.batches = self.batches.wrapping_add(1);
        let favoured = match self.average {
            // Measure each mode before judging: polled first.
            [_, None] => true,
            [None, Some(_)] => false,
            [Some(plain), Some(polled)] => polled < POLL_WIN * plain,
        };
        self.explored_last = self.batches.is_multiple_of(EXPLORE_EVERY);
        self.polled_last = favoured != self.explored_last;
        self.polled_last
    }

    /// A reply to the last written batch came `round_trip` after its request was queued.
    /// Samples are capped at `cap`: one reply held up by the scheduler for milliseconds must
    /// not outweigh a hundred ordinary ones.
    fn record(&mut self, round_trip: Duration, cap: Duration) {
        let sample = round_trip.min(cap).as_secs_f64() * 1e6;
        let weight = if self.explored_last {
            EXPLORED_WEIGHT
        } else {
            FAVOURED_WEIGHT
        };
        let average = &mut self.average[usize::from(self.polled_last)];
        *average = Some(match *average {
            None => sample,
            Some(old) => old + (sample - old) * weight,
        });
    }
}

impl BusyPoll {
    /// Polls for at most `budget` per written batch; a zero budget never polls.
    pub(crate) fn new(budget: Duration) -> Self {
        Self {
            budget,
            request_queued: AtomicBool::new(false),
            adapt: Mutex::new(Adapt::default()),
        }
    }

    /// Whether polling is on at all.
    pub(crate) fn enabled(&self) -> bool {
        !self.budget.is_zero()
    }

    fn adapt(&self) -> std::sync::MutexGuard<'_, Adapt> {
        self.adapt.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that a request was queued for writing.
    pub(crate) fn request_queued(&self) {
        if self.enabled() {
            self.request_queued.store(true, Ordering::Release);
        }
    }

    /// After a write: whether to poll for a reply now.
    pub(crate) fn should_poll_after_write(&self) -> bool {
        self.enabled() && self.request_queued.swap(false, Ordering::AcqRel) && self.adapt().choose()
    }

    /// A reply arrived `round_trip` after its request was queued.
    pub(crate) fn reply_arrived(&self, round_trip: Duration) {
        if self.enabled() {
            self.adapt().record(round_trip, 2 * self.budget);
        }
    }

    /// Waits, without parking, until `socket` has bytes to read (or has closed), the budget
    /// is spent, or `stop` says the connection is closing. Skips when another connection of
    /// the process is polling. Returns whether bytes (or the close) arrived.
    ///
    /// It only peeks: the bytes stay for the reader, whose readiness the runtime's I/O driver
    /// reports as soon as this thread goes back to it.
    pub(crate) fn poll(
        &self,
        socket: &TcpStream,
        stop: impl Fn() -> bool,
    ) -> std::io::Result<bool> {
        if POLLING.swap(true, Ordering::Acquire) {
            // The reply will come the usual way: measure it as such.
            self.adapt().polled_last = false;
            return Ok(false);
        }
        let outcome = self.poll_alone(socket, stop);
        POLLING.store(false, Ordering::Release);
        outcome
    }

    fn poll_alone(&self, socket: &TcpStream, stop: impl Fn() -> bool) -> std::io::Result<bool> {
        let socket = socket2::SockRef::from(socket);
        let mut byte = [MaybeUninit::<u8>::uninit()];
        let started = Instant::now();
        loop {
            match socket.peek(&mut byte) {
                // A byte, or the peer's close (0): either way the reader has news.
                Ok(_) => return Ok(true),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
            if started.elapsed() >= self.budget || stop() {
                return Ok(false);
            }
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// Runs `batches` written batches against round trips of `plain` without polling and
    /// `polled` with it; returns how many polled.
    fn run(poll: &BusyPoll, batches: u32, plain: Duration, polled: Duration) -> u32 {
        let mut count = 0;
        for _ in 0..batches {
            poll.request_queued();
            let polls = poll.should_poll_after_write();
            count += u32::from(polls);
            poll.reply_arrived(if polls { polled } else { plain });
        }
        count
    }

    #[test]
    fn decides_only_after_a_request_was_written() {
        let poll = BusyPoll::new(us(50));
        assert!(!poll.should_poll_after_write());
        poll.request_queued();
        assert!(poll.should_poll_after_write(), "polling is measured first");
        assert!(
            !poll.should_poll_after_write(),
            "one decision per written request"
        );
        let off = BusyPoll::new(Duration::ZERO);
        off.request_queued();
        assert!(!off.should_poll_after_write());
    }

    /// Enough batches for a change of conditions to show, and to measure after it.
    const PHASE: u32 = 10 * EXPLORE_EVERY;
    /// The most batches that poll while not in favour: the explorations.
    const EXPLORED: u32 = PHASE / EXPLORE_EVERY + 1;

    #[test]
    fn polls_while_polling_is_clearly_faster_and_stops_when_it_is_not() {
        let poll = BusyPoll::new(us(50));
        // An idle machine: polling saves a CPU wake-up.
        let polled = run(&poll, PHASE, us(70), us(30));
        assert!(polled >= PHASE - EXPLORED - 1, "{polled}");
        // The CPUs get busy: polling now costs.
        let _ = run(&poll, PHASE, us(23), us(31));
        let polled = run(&poll, PHASE, us(23), us(31));
        assert!(polled <= EXPLORED, "{polled}");
        // Idle again: it notices through the batches it still polls.
        let _ = run(&poll, PHASE, us(70), us(30));
        let polled = run(&poll, PHASE, us(70), us(30));
        assert!(polled >= PHASE - EXPLORED, "{polled}");
    }

    #[test]
    fn a_reply_held_up_for_long_does_not_swing_the_choice() {
        let poll = BusyPoll::new(us(50));
        let _ = run(&poll, PHASE, us(20), us(30));
        // One plain reply delayed by 5 ms, then ordinary ones again.
        poll.request_queued();
        if !poll.should_poll_after_write() {
            poll.reply_arrived(Duration::from_millis(5));
        }
        let polled = run(&poll, EXPLORE_EVERY, us(20), us(30));
        assert!(polled <= 2, "{polled}");
    }

    #[test]
    fn slow_replies_are_not_polled_for() {
        let poll = BusyPoll::new(us(50));
        // A handler that takes a millisecond: polling cannot help.
        let _ = run(&poll, PHASE, us(1000), us(1000));
        let polled = run(&poll, PHASE, us(1000), us(1000));
        assert!(polled <= EXPLORED, "{polled}");
    }

    #[tokio::test]
    async fn sees_bytes_as_they_arrive_and_gives_up_when_none_come() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let poll = BusyPoll::new(us(200));
        let started = Instant::now();
        assert!(!poll.poll(&server, || false).unwrap());
        assert!(started.elapsed() >= us(200));
        let stopped = Instant::now();
        assert!(!poll.poll(&server, || true).unwrap());
        assert!(stopped.elapsed() < us(200), "stop ends the poll");
        let until = |poll: &BusyPoll| (0..1000).any(|_| poll.poll(&server, || false).unwrap());
        client.write_all(b"reply").await.unwrap();
        assert!(until(&poll));
        // Peeked, not taken: the bytes are still there for the reader.
        let mut back = [0u8; 5];
        let mut read = 0;
        while read < 5 {
            server.readable().await.unwrap();
            read += server.try_read(&mut back[read..]).unwrap_or(0);
        }
        assert_eq!(&back, b"reply");
        drop(client);
        assert!(until(&poll), "a close is news too");
    }
}
