//! Message IDs, the window of one outstanding request, retransmission with exponential
//! backoff, the cached last response (RFC 7296 section 2.1 - 2.3) and the queue of
//! exchanges waiting to be initiated.
//!
//! It does not build or interpret messages: the tasks do.

use crate::task::ActiveTask;
use ipsec_types::{Spi, Timestamp};
use std::collections::VecDeque;
use std::time::Duration;

/// First retransmission timeout; doubles on every retransmission.
pub(crate) const RETRANSMIT_BASE: Duration = Duration::from_secs(1);
/// Retransmissions before the exchange (and the IKE SA) is given up.
pub(crate) const RETRANSMIT_LIMIT: u32 = 5;

/// Exchanges queued until the window opens (they become `ActiveTask`s when sent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TaskKind {
    /// DELETE the CHILD SA with this inbound or outbound SPI.
    ChildDelete(Spi),
    /// Rekey the CHILD SA with this inbound SPI.
    ChildRekey(Spi),
    /// Create a CHILD SA from scratch (after CHILD_SA_NOT_FOUND, or when a CHILD SA went
    /// away): for this subnet pair (`ts::pairs`), or `None` for the tunnel's first one.
    ChildCreate(Option<usize>),
    /// Rekey the IKE SA.
    IkeRekey,
    /// An empty INFORMATIONAL request (dead peer detection).
    Liveness,
}

/// The request we wait a response for.
pub(crate) struct Outstanding {
    pub(crate) mid: u32,
    pub(crate) exchange: u8,
    pub(crate) task: ActiveTask,
    /// The request's datagrams: one, or all its fragments (resent together).
    pub(crate) packets: Vec<Vec<u8>>,
    pub(crate) retransmits: u32,
    pub(crate) next_at: Timestamp,
    /// When the request was first sent.
    pub(crate) sent_at: Timestamp,
    /// Give up after the first timeout instead of retransmitting (DELETE on shutdown).
    pub(crate) single_shot: bool,
    /// Retransmit until this time instead of [`RETRANSMIT_LIMIT`] times (liveness checks).
    pub(crate) give_up_at: Option<Timestamp>,
}

/// Per-IKE-SA exchange bookkeeping.
#[derive(Default)]
pub(crate) struct TaskManager {
    /// Message ID of our next request.
    pub(crate) next_mid: u32,
    /// Our outstanding request (window of one).
    pub(crate) outstanding: Option<Outstanding>,
    /// Message ID we expect in the peer's next request.
    pub(crate) peer_next_mid: u32,
    /// The last response we sent: (message id, datagrams), for retransmitted requests.
    pub(crate) cached_response: Option<(u32, Vec<Vec<u8>>)>,
    /// SHA-256 of the last (authenticated) request from the peer: only a byte-identical
    /// retransmission gets the cached response.
    pub(crate) request_hash: Option<[u8; 32]>,
    /// Exchanges waiting for the window to open.
    pub(crate) queue: VecDeque<TaskKind>,
}

/// What `on_timeout` decided.
pub(crate) enum Timeout {
    Nothing,
    /// Resend these datagrams (every fragment of the request).
    Retransmit(Vec<Vec<u8>>),
    GiveUp(ActiveTask),
}

impl TaskManager {
    /// Records a request just sent and returns its message ID.
    pub(crate) fn sent(
        &mut self,
        now: Timestamp,
        task: ActiveTask,
        exchange: u8,
        packets: Vec<Vec<u8>>,
        single_shot: bool,
    ) {
        self.outstanding = Some(Outstanding {
            mid: self.next_mid,
            exchange,
            task,
            packets,
            retransmits: 0,
            next_at: now + RETRANSMIT_BASE,
            sent_at: now,
            single_shot,
            give_up_at: None,
        });
        self.next_mid = self.next_mid.wrapping_add(1);
    }

    /// The outstanding request, if `mid`/`exchange` match it (the response is taken).
    pub(crate) fn take_matching(&mut self, mid: u32, exchange: u8) -> Option<ActiveTask> {
        match &self.outstanding {
            Some(o) if o.mid == mid && o.exchange == exchange => self.outstanding.take().map(|o| o.task),
            _ => None,
        }
    }

    pub(crate) fn deadline(&self) -> Option<Timestamp> {
        self.outstanding.as_ref().map(|o| o.next_at)
    }

    pub(crate) fn on_timeout(&mut self, now: Timestamp) -> Timeout {
        let Some(o) = self.outstanding.as_mut() else { return Timeout::Nothing };
        if now < o.next_at {
            return Timeout::Nothing;
        }
        let exhausted = match o.give_up_at {
            Some(t) => now >= t,
            None => o.retransmits >= RETRANSMIT_LIMIT,
        };
        if o.single_shot || exhausted {
            return match self.outstanding.take() {
                Some(o) => Timeout::GiveUp(o.task),
                None => Timeout::Nothing,
            };
        }
        o.retransmits += 1;
        let factor = 1u32 << o.retransmits.min(16);
        o.next_at = now + RETRANSMIT_BASE * factor;
        if let Some(t) = o.give_up_at {
            o.next_at = o.next_at.min(t);
        }
        Timeout::Retransmit(o.packets.clone())
    }

    /// Queues `kind` unless it is already queued.
    pub(crate) fn queue_once(&mut self, kind: TaskKind) {
        if !self.queue.contains(&kind) {
            self.queue.push_back(kind);
        }
    }

    /// Records the response to the peer's request `mid`.
    pub(crate) fn responded(&mut self, mid: u32, packets: Vec<Vec<u8>>) {
        self.cached_response = Some((mid, packets));
        self.peer_next_mid = mid.wrapping_add(1);
    }

    /// The cached response if `mid` is a retransmission of the last request answered.
    pub(crate) fn cached_for(&self, mid: u32) -> Option<&[Vec<u8>]> {
        match &self.cached_response {
            Some((m, p)) if *m == mid => Some(p),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_gives_up() {
        let mut tm = TaskManager::default();
        tm.sent(Timestamp::ZERO, ActiveTask::Liveness, 37, vec![vec![1]], false);
        assert!(matches!(tm.on_timeout(Timestamp::from_millis(999)), Timeout::Nothing));
        let mut t = Timestamp::from_secs(1);
        let mut gaps = vec![];
        loop {
            match tm.on_timeout(t) {
                Timeout::Retransmit(p) => assert_eq!(p, vec![vec![1]]),
                Timeout::GiveUp(k) => {
                    assert!(matches!(k, ActiveTask::Liveness));
                    break;
                }
                Timeout::Nothing => unreachable!(),
            }
            let next = tm.deadline().unwrap();
            gaps.push(next.saturating_since(t).as_secs());
            t = next;
        }
        assert_eq!(gaps, vec![2, 4, 8, 16, 32]);
        assert_eq!(tm.next_mid, 1);
    }

    #[test]
    fn liveness_retransmits_until_its_deadline() {
        let mut tm = TaskManager::default();
        tm.sent(Timestamp::ZERO, ActiveTask::Liveness, 37, vec![vec![1]], false);
        if let Some(o) = tm.outstanding.as_mut() {
            o.give_up_at = Some(Timestamp::from_secs(150));
        }
        let mut times = vec![];
        let mut t = Timestamp::from_secs(1);
        loop {
            match tm.on_timeout(t) {
                Timeout::Retransmit(_) => times.push(t.saturating_since(Timestamp::ZERO).as_secs()),
                Timeout::GiveUp(_) => break,
                Timeout::Nothing => unreachable!(),
            }
            t = tm.deadline().unwrap();
        }
        assert_eq!(times, vec![1, 3, 7, 15, 31, 63, 127]);
        assert_eq!(t, Timestamp::from_secs(150));
    }
}
