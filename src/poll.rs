//! Waiting for slow remote work (retrievals, inventories) without hammering the service.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The longest pause between two checks: Glacier jobs take hours, and each check is a request.
const MAX_PAUSE: Duration = Duration::from_secs(300);

/// Calls `check` after pauses of 1 s, 2 s, 4 s... (at most five minutes) until it gives a value
/// or an error; `Ok(None)` when the next pause would pass `limit`. `before_pause` hears of each
/// pause before it starts, so a display can say when the next check is.
pub async fn with_backoff<T, E, F, Fut>(
    limit: Duration,
    mut before_pause: impl FnMut(Duration),
    mut check: F,
) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
{
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_secs(1);
    loop {
        if Instant::now() + pause > deadline {
            return Ok(None);
        }
        before_pause(pause);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
        if let Some(value) = check().await? {
            return Ok(Some(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backs_off_and_gives_up_at_the_limit() {
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        let mut pauses = Vec::new();
        let never: Result<Option<()>, ()> = with_backoff(
            Duration::from_secs(20),
            |pause| pauses.push(pause.as_secs()),
            || {
                calls += 1;
                async { Ok(None) }
            },
        )
        .await;
        assert_eq!(never, Ok(None));
        assert_eq!(pauses, [1, 2, 4, 8]);
        // 1 + 2 + 4 + 8 = 15 s; the next pause (16 s) would pass the limit.
        assert_eq!(calls, 4);
        assert_eq!(started.elapsed(), Duration::from_secs(15));

        let mut calls = 0;
        let third = with_backoff(
            Duration::from_secs(60),
            |_| {},
            || {
                calls += 1;
                let done = calls == 3;
                async move { Ok::<_, ()>(done.then_some(calls)) }
            },
        )
        .await;
        assert_eq!(third, Ok(Some(3)));
    }
}
