//! A notification queue in memory, with its dead-letter queue.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::model::error::SeamError;
use crate::seams::{NotificationQueue, QueueMessage};

#[derive(Default)]
struct State {
    next: u64,
    /// Visible messages: (id, body, receive count).
    visible: VecDeque<(String, String, u32)>,
    /// Received and not deleted, by receipt.
    in_flight: BTreeMap<String, (String, String, u32)>,
    dead: Vec<(String, String)>,
}

/// Receives what [`MemoryQueue::send`] put, in order; a received message
/// comes back only through [`MemoryQueue::expire`] (its visibility ran out).
#[derive(Default)]
pub struct MemoryQueue {
    state: Mutex<State>,
    pub deletes: AtomicU64,
    pub extensions: AtomicU64,
    /// Every receive fails with this error (fault injection).
    pub failing: Mutex<Option<SeamError>>,
}

impl MemoryQueue {
    pub fn send(&self, body: &str) -> String {
        let mut state = self.lock();
        state.next += 1;
        let id = format!("m-{}", state.next);
        state.visible.push_back((id.clone(), body.to_string(), 0));
        id
    }

    /// Messages received and not deleted become visible again.
    pub fn expire(&self) {
        let mut state = self.lock();
        let back: Vec<_> = std::mem::take(&mut state.in_flight).into_values().collect();
        state.visible.extend(back);
    }

    /// Visible plus in flight.
    pub fn pending(&self) -> usize {
        let state = self.lock();
        state.visible.len() + state.in_flight.len()
    }

    /// The dead-letter queue: (body, reason).
    pub fn dead(&self) -> Vec<(String, String)> {
        self.lock().dead.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl NotificationQueue for MemoryQueue {
    async fn receive(
        &self,
        max_messages: u32,
        wait: Duration,
        _visibility: Duration,
    ) -> Result<Vec<QueueMessage>, SeamError> {
        if let Some(error) = self
            .failing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
        {
            return Err(error);
        }
        let out: Vec<QueueMessage> = {
            let mut state = self.lock();
            let mut out = Vec::new();
            while out.len() < max_messages as usize {
                let Some((id, body, count)) = state.visible.pop_front() else {
                    break;
                };
                state.next += 1;
                let receipt = format!("r-{}", state.next);
                state
                    .in_flight
                    .insert(receipt.clone(), (id.clone(), body.clone(), count + 1));
                out.push(QueueMessage {
                    id,
                    receipt,
                    body,
                    receive_count: count + 1,
                });
            }
            out
        };
        if out.is_empty() {
            tokio::time::sleep(wait).await;
        }
        Ok(out)
    }

    async fn extend_visibility(
        &self,
        receipt: &str,
        _visibility: Duration,
    ) -> Result<(), SeamError> {
        self.extensions.fetch_add(1, Ordering::Relaxed);
        if self.lock().in_flight.contains_key(receipt) {
            Ok(())
        } else {
            Err(SeamError::Permanent(format!(
                "receipt {receipt} is not in flight"
            )))
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), SeamError> {
        self.deletes.fetch_add(1, Ordering::Relaxed);
        self.lock().in_flight.remove(receipt);
        Ok(())
    }

    async fn dead_letter(&self, message: &QueueMessage, reason: &str) -> Result<(), SeamError> {
        let mut state = self.lock();
        state.dead.push((message.body.clone(), reason.to_string()));
        state.in_flight.remove(&message.receipt);
        Ok(())
    }
}
