//! The agent hub: work for agent programs (bids and tasks of `kind = "agent"` executors),
//! handed to whichever program polls first, and their answers handed back.
//!
//! The actor queues an item with [`AgentHub::queue`] and waits (in a job, never in its loop)
//! on the receiver it gets, with the item's time limit; the control API's long poll takes
//! items with [`AgentHub::next`] and posts answers with [`AgentHub::answer`]. Bounded: at most
//! [`MAX_QUEUED`] items wait per capability and [`MAX_TAKEN`] are out with programs; an item
//! past its `answer_by_ms` is dropped from the queue, and a taken one is forgotten when its
//! waiter gives up ([`AgentHub::forget`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use pvl_api::{BidAnswer, TaskAnswer, VoteAnswer, Work, WorkItem};
use pvl_protocol::ObjectId;
use tokio::sync::{Notify, oneshot};

/// Most items waiting for a program, per capability.
pub const MAX_QUEUED: usize = 1024;

/// Most items taken by programs and not answered yet.
pub const MAX_TAKEN: usize = 4096;

/// The queue of proposals for voter programs (not a capability name: `#` is not allowed in
/// one, SPEC.md §4).
pub const VOTES: &str = "#votes";

/// A program's answer to an item.
#[derive(Debug)]
pub enum Answer {
    /// To a bid.
    Bid(BidAnswer),
    /// To a task.
    Task(TaskAnswer),
    /// To a proposal.
    Vote(VoteAnswer),
}

/// Why an answer or a report was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    /// No item with that id is out with a program (answered already, or too late).
    #[error("no work item {0} is waiting for an answer (answered already, or too late)")]
    Unknown(u64),
    /// The answer does not fit the item (a bid answer to a task, or the reverse).
    #[error("work item {0} is a {1}: that answer does not fit it")]
    Mismatch(u64, &'static str),
    /// Too much work is waiting.
    #[error("too much work waiting for agent programs of `{0}`")]
    Full(String),
}

struct Item {
    item: WorkItem,
    reply: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct State {
    queued: HashMap<String, VecDeque<Item>>,
    taken: HashMap<u64, Item>,
    next_id: u64,
}

/// Work for agent programs and their answers.
#[derive(Default)]
pub struct AgentHub {
    state: Mutex<State>,
    arrived: Notify,
}

impl AgentHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues work for the programs of `capability`: its id and where the answer will come.
    pub fn queue(
        &self,
        capability: &str,
        work: Work,
        answer_by_ms: u64,
    ) -> Result<(u64, oneshot::Receiver<Answer>), HubError> {
        let (reply, answer) = oneshot::channel();
        let id = {
            let mut state = self.lock();
            let now = pvl_net::now_ms();
            let queue = state.queued.entry(capability.to_owned()).or_default();
            queue.retain(|i| i.item.answer_by_ms > now && !i.reply.is_closed());
            if queue.len() >= MAX_QUEUED {
                return Err(HubError::Full(capability.to_owned()));
            }
            state.next_id += 1;
            let id = state.next_id;
            let item = WorkItem {
                id,
                capability: capability.to_owned(),
                answer_by_ms,
                work,
            };
            state
                .queued
                .entry(capability.to_owned())
                .or_default()
                .push_back(Item { item, reply });
            id
        };
        self.arrived.notify_waiters();
        Ok((id, answer))
    }

    /// The next item for `capability`, waiting up to `wait` for one.
    pub async fn next(&self, capability: &str, wait: Duration) -> Option<WorkItem> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so an item queued in between wakes this poll.
            let arrived = self.arrived.notified();
            if let Some(item) = self.take(capability) {
                return Some(item);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }

    fn take(&self, capability: &str) -> Option<WorkItem> {
        let mut state = self.lock();
        if state.taken.len() >= MAX_TAKEN {
            return None;
        }
        let now = pvl_net::now_ms();
        let queue = state.queued.get_mut(capability)?;
        while let Some(item) = queue.pop_front() {
            if item.item.answer_by_ms <= now || item.reply.is_closed() {
                continue;
            }
            let work = item.item.clone();
            state.taken.insert(work.id, item);
            return Some(work);
        }
        None
    }

    /// A program's answer to item `id`.
    pub fn answer(&self, id: u64, answer: Answer) -> Result<(), HubError> {
        let mut state = self.lock();
        let Some(item) = state.taken.get(&id) else {
            return Err(HubError::Unknown(id));
        };
        match (&item.item.work, &answer) {
            (Work::Bid(_), Answer::Bid(_))
            | (Work::Task(_), Answer::Task(_))
            | (Work::Vote(_), Answer::Vote(_)) => {}
            (Work::Bid(_), _) => return Err(HubError::Mismatch(id, "bid")),
            (Work::Task(_), _) => return Err(HubError::Mismatch(id, "task")),
            (Work::Vote(_), _) => return Err(HubError::Mismatch(id, "vote")),
        }
        let item = state.taken.remove(&id).ok_or(HubError::Unknown(id))?;
        item.reply.send(answer).map_err(|_| HubError::Unknown(id))
    }

    /// The task of item `id`, while a program runs it.
    pub fn task_of(&self, id: u64) -> Result<ObjectId, HubError> {
        match self.lock().taken.get(&id).map(|i| &i.item.work) {
            Some(Work::Task(t)) => Ok(t.task),
            Some(Work::Bid(_)) => Err(HubError::Mismatch(id, "bid")),
            Some(Work::Vote(_)) => Err(HubError::Mismatch(id, "vote")),
            None => Err(HubError::Unknown(id)),
        }
    }

    /// Drops item `id` wherever it is (its waiter gave up).
    pub fn forget(&self, id: u64) {
        let mut state = self.lock();
        state.taken.remove(&id);
        for queue in state.queued.values_mut() {
            queue.retain(|i| i.item.id != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(n: u8) -> Work {
        Work::Task(pvl_api::TaskRequest {
            task: ObjectId::of_content(&[n]),
            input: Some("x".into()),
            input_hex: None,
            deadline_ms: None,
        })
    }

    #[tokio::test]
    async fn items_go_to_one_program_each_and_answers_come_back() {
        let hub = AgentHub::default();
        let later = pvl_net::now_ms() + 60_000;
        let (a, mut answer_a) = hub.queue("echo", task(1), later).unwrap();
        let (b, _answer_b) = hub.queue("echo", task(2), later).unwrap();
        assert!(hub.next("other", Duration::from_millis(10)).await.is_none());
        assert_eq!(hub.next("echo", Duration::ZERO).await.unwrap().id, a);
        assert_eq!(hub.next("echo", Duration::ZERO).await.unwrap().id, b);
        assert!(hub.next("echo", Duration::from_millis(10)).await.is_none());
        assert_eq!(hub.task_of(a).unwrap(), ObjectId::of_content(&[1]));
        let bid = Answer::Bid(BidAnswer::Decline {
            reason: "no".into(),
        });
        assert_eq!(hub.answer(a, bid), Err(HubError::Mismatch(a, "task")));
        let done = || {
            Answer::Task(TaskAnswer::Done {
                output: Some("y".into()),
                output_hex: None,
            })
        };
        hub.answer(a, done()).unwrap();
        assert!(matches!(answer_a.try_recv(), Ok(Answer::Task(_))));
        assert_eq!(hub.answer(a, done()), Err(HubError::Unknown(a)));
        hub.forget(b);
        assert_eq!(hub.answer(b, done()), Err(HubError::Unknown(b)));
    }

    #[tokio::test]
    async fn a_poll_wakes_when_work_arrives_and_late_work_is_dropped() {
        let hub = std::sync::Arc::new(AgentHub::default());
        let poll = {
            let hub = hub.clone();
            tokio::spawn(async move { hub.next("echo", Duration::from_secs(10)).await })
        };
        tokio::task::yield_now().await;
        let (id, _answer) = hub
            .queue("echo", task(3), pvl_net::now_ms() + 60_000)
            .unwrap();
        assert_eq!(poll.await.unwrap().unwrap().id, id);
        let (_, _late) = hub.queue("echo", task(4), pvl_net::now_ms()).unwrap();
        assert!(hub.next("echo", Duration::from_millis(10)).await.is_none());
    }
}
