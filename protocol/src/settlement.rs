//! The receipt / done / offer rule: which object is authoritative for what about one task.
//!
//! Three signed objects speak about the result of one task, and they overlap:
//!
//! | question | authoritative | fallback | never from |
//! |---|---|---|---|
//! | status (ok / failed + reason) | the receipt | the `task_done` | the offer |
//! | timings (started, finished) | the receipt | the `task_done` | the offer |
//! | cost | the receipt's `cost` | the offer's `cost` (the price agreed at award: an upper bound) | the `task_done` (it has none) |
//! | output bytes | the `task_done`'s `output` (the receipt carries only its hash and size) | none | the offer |
//!
//! A receipt **agrees** with a `task_done` of the same task when both state the same status,
//! the same timings, and the receipt's `output_sha256` / `output_size` are the SHA-256 and size
//! of the done's output (`null` / 0 for no output); and with the offer when its `cost` is at
//! most the offer's. A requester countersigns only a receipt that agrees; a reader that finds a
//! receipt that does not agree reports [`SettlementError`] and must not take the output bytes
//! of that `task_done` as the task's result.
//!
//! [`Settlement`] applies the rule to whatever subset of the three a reader holds.

use crate::body::{Offer, Payload, Receipt, TaskDone, TaskStatus};

/// Where a settled cost comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// The receipt's `cost`: what the provider charged, countersigned by the requester.
    Receipt,
    /// The offer's `cost`: the price agreed at award (no receipt yet, or none will come).
    Offer,
}

/// How a receipt disagrees with the `task_done` or the offer of its task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    /// Receipt and done are about different tasks.
    #[error("the receipt and the task_done are about different tasks")]
    OtherTask,
    /// Receipt and done state different statuses.
    #[error("the receipt's status differs from the task_done's")]
    Status,
    /// Receipt and done state different timings.
    #[error("the receipt's timings differ from the task_done's")]
    Timings,
    /// The receipt's output hash or size is not that of the done's output.
    #[error("the receipt's output hash or size differs from the task_done's output")]
    Output,
    /// The receipt charges more than the offer asked.
    #[error("the receipt charges {charged}, the offer asked {offered}")]
    Overcharged {
        /// The receipt's cost.
        charged: u64,
        /// The offer's cost.
        offered: u64,
    },
}

/// The objects known about one task, and the rule applied to them (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Settlement<'a> {
    /// The awarded offer.
    pub offer: Option<&'a Offer>,
    /// The provider's done report.
    pub done: Option<&'a TaskDone>,
    /// The receipt (countersigned or not).
    pub receipt: Option<&'a Receipt>,
}

impl<'a> Settlement<'a> {
    /// How the task ended: the receipt's status, else the done's; `None` while running.
    pub fn status(&self) -> Option<&'a TaskStatus> {
        self.receipt
            .map(|r| &r.status)
            .or(self.done.map(|d| &d.status))
    }

    /// `(started_at_ms, finished_at_ms)`: the receipt's, else the done's.
    pub fn timings(&self) -> Option<(u64, u64)> {
        self.receipt
            .map(|r| (r.started_at_ms, r.finished_at_ms))
            .or(self.done.map(|d| (d.started_at_ms, d.finished_at_ms)))
    }

    /// The cost and where it comes from: the receipt's, else the offer's.
    pub fn cost(&self) -> Option<(u64, CostSource)> {
        self.receipt
            .map(|r| (r.cost, CostSource::Receipt))
            .or(self.offer.map(|o| (o.cost, CostSource::Offer)))
    }

    /// The output: the done's payload, unless a receipt is known that does not agree with it.
    pub fn output(&self) -> Option<&'a Payload> {
        let done = self.done?;
        if self.receipt.is_some() && self.check().is_err() {
            return None;
        }
        done.output.as_ref()
    }

    /// Whether the receipt (if any) agrees with the done and the offer (if known).
    pub fn check(&self) -> Result<(), SettlementError> {
        let Some(r) = self.receipt else {
            return Ok(());
        };
        if let Some(d) = self.done {
            if r.task != d.task {
                return Err(SettlementError::OtherTask);
            }
            if r.status != d.status {
                return Err(SettlementError::Status);
            }
            if (r.started_at_ms, r.finished_at_ms) != (d.started_at_ms, d.finished_at_ms) {
                return Err(SettlementError::Timings);
            }
            let (sha, size) = d
                .output
                .as_ref()
                .map_or((None, 0), |p| (Some(p.sha256()), p.size()));
            if r.output_sha256 != sha || r.output_size != size {
                return Err(SettlementError::Output);
            }
        }
        if let Some(o) = self.offer
            && r.cost > o.cost
        {
            return Err(SettlementError::Overcharged {
                charged: r.cost,
                offered: o.cost,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Body;

    #[test]
    fn the_rule_on_the_sample_trace() {
        let objects = crate::fixtures::sample_objects().unwrap();
        let pick = |kind: crate::Kind| {
            objects
                .iter()
                .find(|o| o.kind() == kind)
                .map(|o| o.body().clone())
                .unwrap()
        };
        let (Body::TaskDone(done), Body::Receipt(receipt)) =
            (pick(crate::Kind::TaskDone), pick(crate::Kind::Receipt))
        else {
            panic!("no done or receipt");
        };
        let start = pick(crate::Kind::TaskStart);
        let Body::TaskStart(start) = start else {
            panic!()
        };
        let offer = objects
            .iter()
            .find(|o| o.id() == start.offer)
            .map(|o| o.body().clone())
            .unwrap();
        let Body::Offer(offer) = offer else { panic!() };
        let full = Settlement {
            offer: Some(&offer),
            done: Some(&done),
            receipt: Some(&receipt),
        };
        assert_eq!(full.check(), Ok(()));
        assert_eq!(full.cost(), Some((receipt.cost, CostSource::Receipt)));
        assert_eq!(full.output(), done.output.as_ref());
        let no_receipt = Settlement {
            receipt: None,
            ..full
        };
        assert_eq!(no_receipt.cost(), Some((offer.cost, CostSource::Offer)));
        assert_eq!(no_receipt.status(), Some(&done.status));
        let mut greedy = receipt.clone();
        greedy.cost = offer.cost + 1;
        let over = Settlement {
            receipt: Some(&greedy),
            ..full
        };
        assert!(matches!(
            over.check(),
            Err(SettlementError::Overcharged { .. })
        ));
        assert_eq!(over.output(), None);
        assert_eq!(Settlement::default().status(), None);
    }
}
