//! Quota windows: a UTC day, a calendar month (the default billing period) or the key's
//! lifetime. Every window boundary is computed from Unix seconds, so a fake clock drives them.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

/// The period a counter covers; it starts from zero when the period rolls over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    /// 00:00 to 24:00 UTC.
    Day,
    /// The calendar month, UTC.
    Month,
    /// Never resets.
    Lifetime,
}

fn date(now: i64) -> NaiveDate {
    DateTime::from_timestamp(now, 0)
        .map(|dt| dt.date_naive())
        .unwrap_or_default()
}

fn midnight(d: NaiveDate) -> i64 {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
        .timestamp()
}

impl Window {
    /// Unix second at which the window containing `now` started (0 for `Lifetime`).
    pub fn start(self, now: i64) -> i64 {
        let d = date(now);
        match self {
            Window::Day => midnight(d),
            Window::Month => midnight(d.with_day(1).unwrap_or(d)),
            Window::Lifetime => 0,
        }
    }

    /// Unix second at which the window containing `now` ends, if it ever does.
    pub fn end(self, now: i64) -> Option<i64> {
        let d = date(now);
        match self {
            Window::Day => d.succ_opt().map(midnight),
            Window::Month => {
                let (y, m) = if d.month() == 12 {
                    (d.year() + 1, 1)
                } else {
                    (d.year(), d.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, 1).map(midnight)
            }
            Window::Lifetime => None,
        }
    }

    /// Seconds from `now` until the window resets (`Retry-After`), if it ever does.
    pub fn retry_after(self, now: i64) -> Option<u64> {
        self.end(now).map(|end| (end - now).max(1) as u64)
    }

    /// The stored name of the window containing `now`: `2026-11-23`, `2026-11` or `lifetime`.
    pub fn label(self, now: i64) -> String {
        let d = date(now);
        match self {
            Window::Day => d.format("%Y-%m-%d").to_string(),
            Window::Month => d.format("%Y-%m").to_string(),
            Window::Lifetime => "lifetime".to_string(),
        }
    }
}

/// The same windows in a fixed offset from UTC (`offset` seconds east), so a "day" or "month"
/// can follow the operator's business calendar instead of UTC.
impl Window {
    /// `start` in the calendar `offset` seconds east of UTC.
    pub fn start_in(self, offset: i64, now: i64) -> i64 {
        match self {
            Window::Lifetime => 0,
            _ => self.start(now + offset) - offset,
        }
    }

    /// `end` in the calendar `offset` seconds east of UTC.
    pub fn end_in(self, offset: i64, now: i64) -> Option<i64> {
        self.end(now + offset).map(|end| end - offset)
    }

    /// `retry_after` in the calendar `offset` seconds east of UTC.
    pub fn retry_after_in(self, offset: i64, now: i64) -> Option<u64> {
        self.end_in(offset, now)
            .map(|end| (end - now).max(1) as u64)
    }

    /// `label` in the calendar `offset` seconds east of UTC.
    pub fn label_in(self, offset: i64, now: i64) -> String {
        self.label(now + offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-23 12:00:00 UTC
    const NOW: i64 = 1_795_435_200;

    #[test]
    fn day_bounds() {
        assert_eq!(Window::Day.start(NOW), 1_795_392_000);
        assert_eq!(Window::Day.end(NOW), Some(1_795_478_400));
        assert_eq!(Window::Day.retry_after(NOW), Some(43_200));
        assert_eq!(Window::Day.label(NOW), "2026-11-23");
        // The last second of the day still belongs to it; the next one starts a new window.
        assert_eq!(Window::Day.label(1_795_478_399), "2026-11-23");
        assert_eq!(Window::Day.label(1_795_478_400), "2026-11-24");
    }

    #[test]
    fn month_bounds_including_december() {
        assert_eq!(Window::Month.label(NOW), "2026-11");
        assert_eq!(Window::Month.start(NOW), 1_793_491_200); // 2026-11-01
        assert_eq!(Window::Month.end(NOW), Some(1_796_083_200)); // 2026-12-01
        let dec = 1_797_811_200; // 2026-12-21
        assert_eq!(Window::Month.end(dec), Some(1_798_761_600)); // 2027-01-01
    }

    #[test]
    fn windows_follow_a_configured_offset() {
        let tokyo = 9 * 3600;
        // 2026-11-23 12:00 UTC is 21:00 in UTC+9: the local day ends at 15:00 UTC.
        assert_eq!(Window::Day.label_in(tokyo, NOW), "2026-11-23");
        assert_eq!(Window::Day.end_in(tokyo, NOW), Some(1_795_478_400 - tokyo));
        assert_eq!(Window::Day.retry_after_in(tokyo, NOW), Some(3 * 3600));
        assert_eq!(Window::Day.label_in(tokyo, NOW + 3 * 3600), "2026-11-24");
        assert_eq!(Window::Day.start_in(tokyo, NOW + 3 * 3600), NOW + 3 * 3600);
        assert_eq!(
            Window::Month.start_in(-5 * 3600, NOW),
            1_793_491_200 + 5 * 3600
        );
        assert_eq!(Window::Lifetime.start_in(tokyo, NOW), 0);
        assert_eq!(Window::Day.start_in(0, NOW), Window::Day.start(NOW));
    }

    #[test]
    fn lifetime_never_resets() {
        assert_eq!(Window::Lifetime.start(NOW), 0);
        assert_eq!(Window::Lifetime.end(NOW), None);
        assert_eq!(Window::Lifetime.retry_after(NOW), None);
        assert_eq!(Window::Lifetime.label(NOW), "lifetime");
    }
}
