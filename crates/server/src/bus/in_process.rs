//! The in-process bus: one machine, tokio primitives, nothing durable.
//!
//! A work topic is a bounded queue shared by its competing consumers. Its bound counts messages
//! waiting and messages delivered but not yet acknowledged, so a publisher waits (backpressure)
//! while consumers fall behind. A delivery dropped unacknowledged goes back to the front.
//! A fan-out topic gives each subscriber its own bounded channel; publishing waits while any
//! subscriber's channel is full, so a slow subscriber slows publishers rather than missing
//! messages. Nothing survives the process: in single-node mode agents are acknowledged only
//! after their batches are stored, so a crash loses nothing they will not send again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Semaphore, mpsc};

use super::{
    Acker as DeliveryAcker, BusError, Counters, Delivery, FanoutTopic, SharedCounters, WorkTopic,
};

#[derive(Clone)]
pub(super) struct InProcessBus {
    event_batches: Arc<WorkQueue>,
    stored_events: Arc<WorkQueue>,
    alerts: Arc<WorkQueue>,
    policy_updates: Arc<Fanout>,
    commands: Arc<Fanout>,
    counters: SharedCounters,
}

impl InProcessBus {
    pub(super) fn new(capacity: usize) -> InProcessBus {
        // A zero bound would make every publish wait forever.
        let capacity = capacity.max(1);
        InProcessBus {
            event_batches: Arc::new(WorkQueue::new(capacity)),
            stored_events: Arc::new(WorkQueue::new(capacity)),
            alerts: Arc::new(WorkQueue::new(capacity)),
            policy_updates: Arc::new(Fanout::new(capacity)),
            commands: Arc::new(Fanout::new(capacity)),
            counters: Arc::new(Counters::default()),
        }
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(super) async fn publish_work(
        &self,
        topic: WorkTopic,
        payload: Vec<u8>,
    ) -> Result<(), BusError> {
        let queue = self.work_queue(topic);
        take_permit(&queue.space).await?;
        queue.lock().push_back(payload);
        queue.ready.add_permits(1);
        Ok(())
    }

    pub(super) fn consume_work(&self, topic: WorkTopic) -> WorkConsumer {
        WorkConsumer {
            queue: Arc::clone(self.work_queue(topic)),
        }
    }

    pub(super) async fn publish(
        &self,
        topic: FanoutTopic,
        payload: Vec<u8>,
    ) -> Result<(), BusError> {
        let fanout = self.fanout(topic);
        let subscribers = fanout.lock().clone();
        let mut gone = false;
        for subscriber in &subscribers {
            // An error means the subscription was dropped: nobody to deliver to.
            gone |= subscriber.send(payload.clone()).await.is_err();
        }
        if gone {
            fanout.lock().retain(|subscriber| !subscriber.is_closed());
        }
        Ok(())
    }

    pub(super) fn subscribe(&self, topic: FanoutTopic) -> Subscription {
        let fanout = self.fanout(topic);
        let (sender, receiver) = mpsc::channel(fanout.capacity);
        fanout.lock().push(sender);
        Subscription { receiver }
    }

    fn work_queue(&self, topic: WorkTopic) -> &Arc<WorkQueue> {
        match topic {
            WorkTopic::EventBatches => &self.event_batches,
            WorkTopic::StoredEvents => &self.stored_events,
            WorkTopic::Alerts => &self.alerts,
        }
    }

    fn fanout(&self, topic: FanoutTopic) -> &Fanout {
        match topic {
            FanoutTopic::PolicyUpdates => &self.policy_updates,
            FanoutTopic::Commands => &self.commands,
        }
    }
}

pub(super) struct WorkConsumer {
    queue: Arc<WorkQueue>,
}

impl WorkConsumer {
    pub(super) async fn next(&mut self) -> Delivery {
        loop {
            if take_permit(&self.queue.ready).await.is_err() {
                // The semaphores are never closed; should one be, wait like an idle consumer.
                std::future::pending::<()>().await;
            }
            // One `ready` permit is added per message pushed, so the queue is not empty here.
            if let Some(payload) = self.queue.lock().pop_front() {
                return Delivery {
                    payload,
                    ack: Some(DeliveryAcker::InProcess(Acker {
                        queue: Arc::clone(&self.queue),
                    })),
                };
            }
        }
    }
}

/// Settles one delivered message: acknowledging frees its place in the queue's bound; a
/// requeue puts it back at the front.
pub(super) struct Acker {
    queue: Arc<WorkQueue>,
}

impl Acker {
    pub(super) fn ack(self) {
        self.queue.space.add_permits(1);
    }

    pub(super) fn requeue(self, payload: Vec<u8>) {
        self.queue.lock().push_front(payload);
        self.queue.ready.add_permits(1);
    }
}

pub(super) struct Subscription {
    receiver: mpsc::Receiver<Vec<u8>>,
}

impl Subscription {
    pub(super) async fn next(&mut self) -> Result<Vec<u8>, BusError> {
        self.receiver.recv().await.ok_or(BusError::Closed)
    }
}

struct WorkQueue {
    messages: Mutex<VecDeque<Vec<u8>>>,
    /// One permit per message waiting in `messages`.
    ready: Semaphore,
    /// One permit per free place: taken by a publish, given back by an acknowledgement.
    space: Semaphore,
}

impl WorkQueue {
    fn new(capacity: usize) -> WorkQueue {
        WorkQueue {
            messages: Mutex::new(VecDeque::new()),
            ready: Semaphore::new(0),
            space: Semaphore::new(capacity),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Vec<u8>>> {
        // The guarded code cannot panic half-way; a poisoned lock still holds a whole queue.
        self.messages.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Fanout {
    subscribers: Mutex<Vec<mpsc::Sender<Vec<u8>>>>,
    capacity: usize,
}

impl Fanout {
    fn new(capacity: usize) -> Fanout {
        Fanout {
            subscribers: Mutex::new(Vec::new()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::Sender<Vec<u8>>>> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Takes one permit for good (it is given back explicitly, by `add_permits`).
async fn take_permit(semaphore: &Semaphore) -> Result<(), BusError> {
    let permit = semaphore.acquire().await.map_err(|_| BusError::Closed)?;
    permit.forget();
    Ok(())
}
