//! Rolling spend counters, persisted in the store (they survive restarts) and checked in the
//! same transaction that records the signature: a limit can never be overshot by two
//! concurrent requests, and an unreadable counter refuses (fail closed).

use rusqlite::{Connection, params};

use super::{Conflict, Result, StoreError, now_ms};

/// An amount counted against a rolling spend limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spend {
    /// `rule_id/SYMBOL`: the counter key.
    pub counter: String,
    /// Amount in the asset's smallest unit.
    pub amount: i64,
    /// The limit in the same unit.
    pub max: i64,
    /// Window in seconds.
    pub window_secs: u64,
}

/// `units` of the counter's asset as an amount (`1.500 HIVE`).
pub fn show(counter: &str, units: i64) -> String {
    let symbol = counter.rsplit('/').next().unwrap_or("");
    let precision = if symbol == "VESTS" { 6 } else { 3 };
    let scale = 10i64.pow(precision);
    format!(
        "{}.{:0width$} {symbol}",
        units / scale,
        (units % scale).abs(),
        width = precision as usize
    )
}

/// Amount spent on `counter` by `account` during the last `window_secs`.
pub fn spent(conn: &Connection, counter: &str, account: &str, window_secs: u64) -> Result<i64> {
    let since = now_ms() - (window_secs as i64) * 1000;
    let v: Option<i64> = conn
        .prepare_cached(
            "SELECT SUM(amount) FROM spend WHERE counter = ?1 AND account = ?2 AND time > ?3",
        )?
        .query_row(params![counter, account, since], |r| r.get(0))?;
    Ok(v.unwrap_or(0))
}

/// Checks every limit and records the amounts; a limit that would be exceeded is a
/// [`StoreError::Conflict`] naming it.
pub fn check_and_record(
    conn: &Connection,
    account: &str,
    uuid: &str,
    spends: &[Spend],
) -> Result<()> {
    for s in spends {
        let already = spent(conn, &s.counter, account, s.window_secs)?;
        if already.saturating_add(s.amount) > s.max {
            return Err(StoreError::Conflict(Conflict::SpendLimit(format!(
                "spend limit {}: {} already spent + {} requested exceeds {} per {} h",
                s.counter,
                show(&s.counter, already),
                show(&s.counter, s.amount),
                show(&s.counter, s.max),
                s.window_secs / 3600
            ))));
        }
    }
    let now = now_ms();
    // Limits of one rule on one asset share a counter (`rule/SYMBOL`): the amount is
    // recorded once, whatever the number of windows it is checked against.
    let mut recorded = std::collections::HashSet::new();
    for s in spends {
        if !recorded.insert(s.counter.as_str()) {
            continue;
        }
        conn.prepare_cached(
            "INSERT INTO spend(counter, account, amount, time, uuid) VALUES (?1,?2,?3,?4,?5)",
        )?
        .execute(params![s.counter, account, s.amount, now, uuid])?;
    }
    Ok(())
}

/// Remaining headroom per (counter, account) for the given limits (for /metrics).
pub fn headroom(
    conn: &Connection,
    account: &str,
    counter: &str,
    max: i64,
    window_secs: u64,
) -> Result<i64> {
    Ok(max - spent(conn, counter, account, window_secs)?)
}
