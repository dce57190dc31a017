//! Progress under an upload limit. A candidate's progress counts its parts as the backend takes
//! them, which is as they are sent when sending is as fast as reading; under a limit the parts
//! in flight wait their turn for seconds, and a bar counting them at once would run ahead of
//! the line and promise too early an end. So while a limited archive of several parts goes up
//! (alone: such an archive fills the run's memory budget), its progress follows the bytes the
//! run's upload throttle has let through instead.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use glacier_backup_archiver::bandwidth::Throttle;

use crate::progress::ItemProgress;

/// How often the progress is brought up to what has gone through.
const TICK: Duration = Duration::from_millis(200);

/// One archive's progress, shown as its bytes pass the limit.
pub(super) struct Paced {
    throttle: Throttle,
    /// The throttle's count when the archive started.
    start: u64,
    item: Arc<dyn ItemProgress>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Stored bytes taken by the backend so far.
    taken: u64,
    /// What those bytes are worth in the item's own measure (source bytes).
    worth: u64,
    /// What the item has been advanced by.
    shown: u64,
}

impl Paced {
    pub(super) fn new(throttle: &Throttle, item: Arc<dyn ItemProgress>) -> Self {
        Paced {
            throttle: throttle.clone(),
            start: throttle.bytes_through(),
            item,
            state: Mutex::default(),
        }
    }

    /// The backend took `stored` more bytes, worth `worth` in all so far.
    pub(super) fn took(&self, stored: u64, worth: u64) {
        let mut state = self.state();
        state.taken += stored;
        state.worth = state.worth.max(worth);
    }

    /// Advances the item to what has gone through the limit: what was taken, less what still
    /// waits, valued at the archive's own ratio of source to stored bytes.
    pub(super) fn show(&self) {
        let through = self.throttle.bytes_through().saturating_sub(self.start);
        let mut state = self.state();
        let waiting = state.taken.saturating_sub(through);
        let target = match state.taken {
            0 => 0,
            taken => {
                let unsent = u128::from(waiting) * u128::from(state.worth) / u128::from(taken);
                state.worth.saturating_sub(unsent as u64)
            }
        };
        self.advance_to(&mut state, target);
    }

    /// Everything taken is stored: the item reaches its whole worth.
    pub(super) fn finish(&self) {
        let mut state = self.state();
        let worth = state.worth;
        self.advance_to(&mut state, worth);
    }

    /// Runs `upload`, bringing the progress up every [`TICK`] until it ends.
    pub(super) async fn follow<T>(&self, upload: impl std::future::Future<Output = T>) -> T {
        let mut upload = std::pin::pin!(upload);
        loop {
            tokio::select! {
                result = &mut upload => return result,
                _ = tokio::time::sleep(TICK) => self.show(),
            }
        }
    }

    fn advance_to(&self, state: &mut State, target: u64) {
        if target > state.shown {
            self.item.advance(target - state.shown);
            state.shown = target;
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
